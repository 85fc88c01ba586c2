"""``fedlab sr``: super-resolve one image by any scale with the diffusion prior.

``fedlab sr --in photo.png --scale 2.5 --out out/`` writes ``out/photo_x2.5.png`` (the input
size times the scale, rounded) and ``out/photo_x2.5_grid.png`` (input, bicubic and result side
by side). ``--model DIR`` takes any local diffusers ``UNet2DModel`` folder (default: the
shipped federated prior); ``--method`` picks prf (default), sdedit (with ``--t``), ilvr, ddnm
or bicubic. Sampling shows a progress bar.

Every argument and the input file are checked before anything is loaded or written: the input
through :func:`fedlab.image_io.read_pixels` (a regular file, an allowed format, at most
``--max-pixels`` pixels, default :data:`fedlab.limits.MAX_INPUT_PIXELS`), the output size
against the same ``--max-pixels`` (default :data:`fedlab.limits.MAX_OUTPUT_PIXELS`) so that
``--scale`` cannot exhaust memory, and existing output files are refused unless
``--overwrite``. ``--check`` stops after the checks (and loading the model).
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from fedlab.clients.sr.config import FITTED_KAPPA

from fedlab.command_args import add_safety_flags, float_flag, int_flag, max_pixels_flag
from fedlab.errors import FedlabError
from fedlab.image_io import png_bytes, read_image
from fedlab.limits import MAX_INPUT_PIXELS, MAX_MODEL_PARAMETERS, MAX_OUTPUT_PIXELS, SEED_LIMIT
from fedlab.outputs import output_files, write_output

log = logging.getLogger("fedlab.sr")

CLI_METHODS = ("prf", "sdedit", "ilvr", "ddnm", "bicubic")
#: Timesteps of the prior's schedule (``fedlab.diffusion.SCHEDULER_CONFIG``): ``--t`` < this.
TIMESTEPS = 1000
#: Most DDIM steps: one per timestep; more would visit no other step.
MAX_STEPS = TIMESTEPS
#: Largest --tile side (a window this large already holds a whole typical photo).
MAX_TILE = 4096


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sr`` to the ``fedlab`` console script."""
    p = subparsers.add_parser("sr", help="Diff-SR: super-resolve an image by any scale >= 1")
    # Numbers are taken as text and checked by check_sr: one-line errors that say what is
    # allowed (argparse's own say only "invalid float value").
    p.add_argument("--in", dest="input", required=True, help="input image (PNG, JPEG, ...)")
    p.add_argument("--scale", required=True, help="upscaling factor >= 1, e.g. 2.5")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", default="", help="local UNet2DModel folder (default: shipped prior)")
    p.add_argument("--method", choices=CLI_METHODS, default="prf")
    p.add_argument("--t", default=150, help=f"start step of --method sdedit, 0..{TIMESTEPS - 1}")
    p.add_argument("--steps", default=20, help=f"DDIM steps, 1..{MAX_STEPS} (default 20)")
    p.add_argument(
        "--kappa",
        default=FITTED_KAPPA,
        help=f"PRF kappa > 0 (default {FITTED_KAPPA:g}: fitted with the shipped prior)",
    )
    p.add_argument("--seed", default=0, help="sampling seed, 0 <= seed < 2**63")
    p.add_argument(
        "--tile",
        default="auto",
        help="window side for large images: auto (the prior's training crop), 0 (the whole "
        "image at once: time and memory grow with its square) or a multiple of the UNet's "
        "downsampling factor",
    )
    add_safety_flags(p)
    p.set_defaults(func=sr_command)


@dataclass(frozen=True)
class SRJob:
    """A checked ``fedlab sr`` call: its arguments, the input image and the output files."""

    lr: torch.Tensor
    size: tuple[int, int]
    scale: float
    method: str
    t: int
    steps: int
    kappa: float
    seed: int
    model: str
    result_path: Path
    grid_path: Path
    max_parameters: int = MAX_MODEL_PARAMETERS
    tile: int | None = None  # None: the prior's training crop


def check_sr(
    path: str | Path, scale: object, out: str | Path, *, model: str = "", method: str = "prf",
    t: object = 150, steps: object = 20, kappa: object = FITTED_KAPPA, seed: object = 0,
    overwrite: bool = False, max_pixels: object = None, create_out: bool = True,
    max_parameters: int = MAX_MODEL_PARAMETERS, tile: object = "auto",
) -> SRJob:  # fmt: skip
    """Every check of ``fedlab sr`` that needs no model, in the order a refusal costs least.

    Numbers may be given as text (the flags') or as numbers. ``max_pixels`` (None: the
    defaults of :mod:`fedlab.limits`) caps the input and the output pixels. ``create_out``
    false (``--check``) leaves a missing ``out`` folder uncreated.

    Raises
    ------
    FedlabError
        One line naming the flag or file at fault.
    """
    scale = float_flag(scale, "--scale", 1.0, what="an upscaling factor, e.g. 2 or 2.5")
    if method not in CLI_METHODS:
        raise FedlabError(f"--method {method!r} is not one of {', '.join(CLI_METHODS)}")
    t = int_flag(t, "--t", 0, TIMESTEPS - 1, "the start step of --method sdedit")
    steps = int_flag(steps, "--steps", 1, MAX_STEPS, "DDIM steps")
    kappa = float_flag(kappa, "--kappa", 0.0, low_open=True, what=f"default {FITTED_KAPPA:g}")
    seed = int_flag(seed, "--seed", 0, SEED_LIMIT - 1)
    tile = None if tile == "auto" else int_flag(tile, "--tile", 0, MAX_TILE, "auto, 0 or a side")
    in_cap = max_pixels_flag(max_pixels, MAX_INPUT_PIXELS)
    out_cap = max_pixels_flag(max_pixels, MAX_OUTPUT_PIXELS)
    lr = read_image(path, flag="--in", max_pixels=in_cap)
    size = _output_size(tuple(lr.shape[-2:]), scale, out_cap)
    stem = f"{Path(path).stem}_x{scale:g}"
    result_path, grid_path = output_files(
        out, [f"{stem}.png", f"{stem}_grid.png"], overwrite=overwrite, create=create_out
    )
    return SRJob(lr, size, scale, method, t, steps, kappa, seed, model, result_path, grid_path,
                 max_parameters, tile)  # fmt: skip


def _output_size(lr: tuple[int, int], scale: float, cap: int) -> tuple[int, int]:
    """The output size, refused past ``cap`` pixels before anything of that size exists."""
    from fedlab.clients.sr.degrade import sr_size

    h, w = (side * scale for side in lr)
    if not math.isfinite(h * w) or h * w > 2 * cap:  # far past the cap: no rounding to do
        pixels = f"{h * w:.3g}" if math.isfinite(h * w) else "more than 1e308"
        raise FedlabError(
            f"--scale {scale:g} makes a {lr[0]}x{lr[1]} input {pixels} pixels, over the cap "
            f"of {cap:,}; lower --scale or raise --max-pixels"
        )
    size = sr_size(lr, scale)
    if size[0] * size[1] > cap:
        raise FedlabError(
            f"--scale {scale:g} makes a {lr[0]}x{lr[1]} input {size[0]}x{size[1]} = "
            f"{size[0] * size[1]:,} pixels, over the cap of {cap:,}; lower --scale or pass "
            f"--max-pixels {size[0] * size[1]}"
        )
    return size


def _load_checked(job: SRJob, progress: bool = False) -> Any:
    """The model of ``job`` as a :class:`DiffSR`, with the checks that need it."""
    from fedlab.clients.sr.config import SHIPPED_PRIOR
    from fedlab.clients.sr.methods import DiffSR

    from fedlab.diffusion import load_unet, make_scheduler

    unet = load_unet(job.model or SHIPPED_PRIOR, max_parameters=job.max_parameters)
    crop = unet.config.sample_size
    crop = crop if isinstance(crop, int) else min(crop)
    tile = crop if job.tile is None else job.tile
    sr = DiffSR(unet, make_scheduler(), steps=job.steps, progress=progress, tile=tile)
    if min(job.size) < crop:
        h, w = job.lr.shape[-2:]
        raise FedlabError(
            f"--scale {job.scale:g} makes the {h}x{w} input {job.size[0]}x{job.size[1]}, "
            f"smaller than the prior's training crop ({crop} px); use a larger --scale or image"
        )
    return sr


def super_resolve_file(
    path: str | Path, scale: object, out: str | Path, *, model: str = "", method: str = "prf",
    t: object = 150, steps: object = 20, kappa: object = FITTED_KAPPA, seed: object = 0,
    progress: bool = True, overwrite: bool = False, max_pixels: object = None,
    max_parameters: int = MAX_MODEL_PARAMETERS, tile: object = "auto",
) -> tuple[Path, Path]:  # fmt: skip
    """Super-resolve ``path``; write the result and a comparison grid into ``out``.

    ``model`` empty: the shipped prior; ``kappa``: the PRF's (default :data:`FITTED_KAPPA`).
    Everything is checked first (:func:`check_sr`); existing outputs are refused unless
    ``overwrite``.
    """
    from fedlab.clients.sr.degrade import upsample
    from fedlab.clients.sr.evaluate import calibrated_prf

    job = check_sr(path, scale, out, model=model, method=method, t=t, steps=steps, kappa=kappa,
                   seed=seed, overwrite=overwrite, max_pixels=max_pixels,
                   max_parameters=max_parameters, tile=tile)  # fmt: skip
    sr = _load_checked(job, progress)
    lr, size, method = job.lr, job.size, job.method
    gen = torch.Generator().manual_seed(job.seed)
    if method == "bicubic":
        result, t_used = sr.bicubic(lr, size), 0
    elif method == "sdedit":
        result, t_used = sr.sdedit(lr, size, job.t, generator=gen), job.t
    else:
        prf = calibrated_prf(kappa=job.kappa)
        t_used = prf.start_step(job.scale, sr.alphas_cumprod)
        if method == "prf":
            result = sr.run(lr, size, t_used, generator=gen)
        else:
            result = sr.run(lr, size, t_used, guidance=method, generator=gen)
    if not bool(torch.isfinite(result).all()):  # never write a corrupted image
        raise FedlabError(
            f"{method} produced non-finite pixels; try another --method, --kappa or --model"
        )
    log.info(
        "%s x%g: %dx%d -> %dx%d, start step t=%d", method, job.scale, *lr.shape[-2:], *size,
        t_used,
    )  # fmt: skip
    data = png_bytes(result)
    result_path = write_output(job.result_path, lambda p: p.write_bytes(data))
    panels = [("input (nearest)", torch.nn.functional.interpolate(lr, size=size, mode="nearest")),
              ("bicubic", upsample(lr, size)), (f"{method} (t={t_used})", result)]  # fmt: skip
    grid_path = write_output(job.grid_path, lambda p: _grid(panels, p))
    return result_path, grid_path


def _grid(panels: list[tuple[str, torch.Tensor]], path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    fig = Figure(figsize=(3.2 * len(panels), 3.4))
    axes = fig.subplots(1, len(panels))
    for ax, (title, img) in zip(axes, panels, strict=True):
        ax.imshow(img[0].clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)


def sr_command(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    kw = {"model": args.model, "method": args.method, "t": args.t, "steps": args.steps,
          "kappa": args.kappa, "seed": args.seed, "overwrite": args.overwrite,
          "max_pixels": args.max_pixels, "max_parameters": args.max_parameters,
          "tile": args.tile}  # fmt: skip
    if args.check:
        job = check_sr(args.input, args.scale, args.out, create_out=False, **kw)
        _load_checked(job)
        h, w = job.lr.shape[-2:]
        print(
            f"ok: {args.input} {h}x{w} -> {job.size[0]}x{job.size[1]} by {job.method}; would "
            f"write {job.result_path} and {job.grid_path}"
        )
        return 0
    result, grid = super_resolve_file(args.input, args.scale, args.out, **kw)
    print(f"wrote {result} and {grid}")  # the command's result, not a log line
    return 0

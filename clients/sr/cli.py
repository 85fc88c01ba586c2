"""``fedlab sr``: super-resolve one image by any scale with the diffusion prior.

``fedlab sr --in photo.png --scale 2.5 --out out/`` writes ``out/photo_x2.5.png`` (the input
size times the scale, rounded) and ``out/photo_x2.5_grid.png`` (input, bicubic and result side
by side). ``--model DIR`` takes any local diffusers ``UNet2DModel`` folder (default: the
shipped federated prior); ``--method`` picks prf (default), sdedit (with ``--t``), ilvr, ddnm
or bicubic. Sampling shows a progress bar.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from fedlab.clients.sr.config import FITTED_KAPPA

from fedlab.errors import FedlabError
from fedlab.image_io import png_bytes, read_image

log = logging.getLogger("fedlab.sr")

CLI_METHODS = ("prf", "sdedit", "ilvr", "ddnm", "bicubic")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sr`` to the ``fedlab`` console script."""
    p = subparsers.add_parser("sr", help="Diff-SR: super-resolve an image by any scale >= 1")
    p.add_argument("--in", dest="input", required=True, help="input image (PNG, JPEG, ...)")
    p.add_argument("--scale", type=float, required=True, help="upscaling factor >= 1, e.g. 2.5")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", default="", help="local UNet2DModel folder (default: shipped prior)")
    p.add_argument("--method", choices=CLI_METHODS, default="prf")
    p.add_argument("--t", type=int, default=150, help="start step of --method sdedit")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps (default 20)")
    p.add_argument(
        "--kappa",
        type=float,
        default=FITTED_KAPPA,
        help=f"PRF kappa (default {FITTED_KAPPA:g}: fitted with the shipped prior)",
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.set_defaults(func=sr_command)


def super_resolve_file(
    path: str | Path, scale: float, out: str | Path, *, model: str = "", method: str = "prf",
    t: int = 150, steps: int = 20, kappa: float = FITTED_KAPPA, seed: int = 0,
    progress: bool = True,
) -> tuple[Path, Path]:  # fmt: skip
    """Super-resolve ``path``; write the result and a comparison grid into ``out``.

    ``model`` empty: the shipped prior; ``kappa``: the PRF's (default :data:`FITTED_KAPPA`).
    """
    from fedlab.clients.sr.config import SHIPPED_PRIOR
    from fedlab.clients.sr.degrade import check_scale, sr_size, upsample
    from fedlab.clients.sr.evaluate import calibrated_prf
    from fedlab.clients.sr.methods import DiffSR

    from fedlab.atomic import atomic_write, atomic_write_bytes
    from fedlab.diffusion import load_unet, make_scheduler

    scale = check_scale(scale)
    if steps < 1:
        raise FedlabError(f"--steps must be >= 1, got {steps}")
    if not kappa > 0:
        raise FedlabError(f"--kappa must be > 0, got {kappa:g} (default {FITTED_KAPPA:g})")
    unet = load_unet(model or SHIPPED_PRIOR)
    lr = read_image(path)
    size = sr_size(tuple(lr.shape[-2:]), scale)
    sr = DiffSR(unet, make_scheduler(), steps=steps, progress=progress)
    sr.check_size(size)
    gen = torch.Generator().manual_seed(seed)
    if method == "bicubic":
        result, t_used = sr.bicubic(lr, size), 0
    elif method == "sdedit":
        result, t_used = sr.sdedit(lr, size, t, generator=gen), t
    else:
        prf = calibrated_prf(kappa=kappa)
        t_used = prf.start_step(scale, sr.alphas_cumprod)
        if method == "prf":
            result = sr.run(lr, size, t_used, generator=gen)
        else:
            result = sr.run(lr, size, t_used, guidance=method, generator=gen)
    log.info(
        "%s x%g: %dx%d -> %dx%d, start step t=%d", method, scale, *lr.shape[-2:], *size, t_used
    )
    out = Path(out)
    stem = f"{Path(path).stem}_x{scale:g}"
    result_path = atomic_write_bytes(out / f"{stem}.png", png_bytes(result))
    panels = [("input (nearest)", torch.nn.functional.interpolate(lr, size=size, mode="nearest")),
              ("bicubic", upsample(lr, size)), (f"{method} (t={t_used})", result)]  # fmt: skip
    grid_path = atomic_write(out / f"{stem}_grid.png", lambda p: _grid(panels, p))
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
    result, grid = super_resolve_file(
        args.input, args.scale, args.out, model=args.model, method=args.method, t=args.t,
        steps=args.steps, kappa=args.kappa, seed=args.seed,
    )  # fmt: skip
    print(f"wrote {result} and {grid}")  # the command's result, not a log line
    return 0

"""``fedlab harmonize --fg IMAGE --mask MASK --bg IMAGE --out DIR``: FreePIH on image files.

``--fg`` holds the object where ``--mask`` is white (non-zero); ``--bg`` is the painting; all
three have the same size (a multiple of the UNet's downsampling factor, 4 for the shipped
prior). The composite is the object pasted onto the painting; FreePIH harmonizes it to the
style ``--style`` (default: the style the prior finds most likely for the background, the
label with the lowest denoising error on it). Writes ``<out>/<bg>_freepih.png`` (its
background is the input's, bit for bit) and ``<out>/<bg>_grid.png`` (composite, Reinhard,
SDEdit, FreePIH side by side). ``--model`` takes a style-conditioned UNet folder (default:
the shipped federated prior).

Every argument and the three files are checked before anything is loaded or written: each
image through :func:`fedlab.image_io.read_pixels` (a regular file, an allowed format, at most
``--max-pixels`` pixels, default :data:`fedlab.limits.MAX_INPUT_PIXELS`), every number for
range and finiteness, and existing output files are refused unless ``--overwrite``.
``--check`` stops after the checks (and loading the model).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fedlab.command_args import add_safety_flags, float_flag, int_flag, max_pixels_flag
from fedlab.errors import FedlabError
from fedlab.image_io import read_image, read_pixels
from fedlab.limits import MAX_INPUT_PIXELS, MAX_MODEL_PARAMETERS, SEED_LIMIT
from fedlab.outputs import output_files

log = logging.getLogger("fedlab.harmonization")

#: Timesteps of the prior's schedule (``fedlab.diffusion.SCHEDULER_CONFIG``): ``--t`` < this.
TIMESTEPS = 1000
#: Most DDIM steps: one per timestep; more would visit no other step.
MAX_STEPS = TIMESTEPS
#: Largest ``--guidance``: the guidance gradients are scaled to unit RMS, so a weight of 100
#: already swamps the noise estimate; larger ones only overflow.
MAX_GUIDANCE = 100.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Numbers are taken as text and checked by check_harmonize: one-line errors that say what
    # is allowed (argparse's own say only "invalid float value").
    p.add_argument("--fg", required=True, help="image holding the object (same size as --bg)")
    p.add_argument("--mask", required=True, help="mask image: non-zero pixels are the object")
    p.add_argument("--bg", required=True, help="the painting to harmonize the object into")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--style", default="", help="style name of the painting (default: inferred)")
    p.add_argument("--model", default="", help="style-conditioned UNet folder (default: shipped)")
    p.add_argument(
        "--t", default=300, help=f"start step of FreePIH, 0..{TIMESTEPS - 1} (default 300)"
    )
    p.add_argument("--steps", default=10, help=f"DDIM steps, 1..{MAX_STEPS} (default 10)")
    p.add_argument(
        "--guidance",
        default=1.0,
        help=f"guidance weight in [0, {MAX_GUIDANCE:g}] (0: plain DDIM; default 1)",
    )
    p.add_argument("--seed", default=0, help="start-noise seed, 0 <= seed < 2**63")
    add_safety_flags(
        p, "most pixels of each image (default 4096x4096); raise it for larger images if the "
        "memory is there",
    )  # fmt: skip
    p.set_defaults(func=harmonize_command)


def read_mask(path: str | Path, *, max_pixels: int = MAX_INPUT_PIXELS) -> torch.Tensor:
    """A mask file as ``(H, W)`` bool (non-zero grey = object), read by
    :func:`fedlab.image_io.read_pixels` like every other image."""
    return torch.from_numpy(read_pixels(path, mode="L", flag="--mask", max_pixels=max_pixels) > 0)


def _same_size(name: str, flag: str, path: str | Path, image: torch.Tensor,
               size: tuple[int, int]) -> None:  # fmt: skip
    if tuple(image.shape[-2:]) != size:
        h, w = image.shape[-2:]
        raise FedlabError(
            f"{flag} {str(path)!r}: the {name} is {h}x{w} but the background is "
            f"{size[0]}x{size[1]}; give a {name} of the same size"
        )


def infer_style(unet: torch.nn.Module, scheduler: object, background: torch.Tensor,
                mask: torch.Tensor, *, seed: int = 0) -> int:  # fmt: skip
    """The label whose noise prediction fits the background best (outside the mask), over
    fixed steps 50, 100, 200, 300 and fixed noise: a diffusion classifier."""
    from fedlab.diffusion import noise_to

    x0 = background * 2 - 1
    keep = (~mask)[:, None].float()
    gen = torch.Generator().manual_seed(seed)
    classes = int(unet.config.num_class_embeds)
    errors = torch.zeros(classes)
    with torch.no_grad():
        for t in (50, 100, 200, 300):
            noise = torch.randn(x0.shape, generator=gen)
            xt = noise_to(x0, t, noise, scheduler.alphas_cumprod)
            tt = torch.full((x0.shape[0],), t, dtype=torch.long)
            for k in range(classes):
                pred = unet(xt, tt, class_labels=torch.full_like(tt, k)).sample
                errors[k] += float((((pred - noise) ** 2) * keep).sum())
    return int(errors.argmin())


@dataclass(frozen=True)
class HarmonizeJob:
    """A checked ``fedlab harmonize`` call: its arguments, images and output files."""

    bg: Path
    background: torch.Tensor
    source: torch.Tensor
    mask: torch.Tensor
    style: str
    model: str
    t: int
    steps: int
    guidance: float
    seed: int
    result_path: Path
    grid_path: Path
    max_parameters: int = MAX_MODEL_PARAMETERS

    @property
    def composite(self) -> torch.Tensor:
        return torch.where(self.mask[None, None], self.source, self.background)


def check_harmonize(
    fg: str | Path, mask: str | Path, bg: str | Path, out: str | Path, *, style: str = "",
    model: str = "", t: object = 300, steps: object = 10, guidance: object = 1.0,
    seed: object = 0, overwrite: bool = False, max_pixels: object = None,
    create_out: bool = True, max_parameters: int = MAX_MODEL_PARAMETERS,
) -> HarmonizeJob:  # fmt: skip
    """Every check of ``fedlab harmonize`` that needs no model, in the order a refusal costs
    least. Numbers may be given as text (the flags') or as numbers; ``max_pixels`` None is
    :data:`fedlab.limits.MAX_INPUT_PIXELS`; ``create_out`` false (``--check``) leaves a
    missing ``out`` folder uncreated.

    Raises
    ------
    FedlabError
        One line naming the flag or file at fault.
    """
    from fedlab.clients.harmonization.freepih import check_inputs

    t = int_flag(t, "--t", 0, TIMESTEPS - 1, "the start step of FreePIH")
    steps = int_flag(steps, "--steps", 1, MAX_STEPS, "DDIM steps")
    guidance = float_flag(guidance, "--guidance", 0.0, MAX_GUIDANCE, what="0: plain DDIM")
    seed = int_flag(seed, "--seed", 0, SEED_LIMIT - 1)
    cap = max_pixels_flag(max_pixels, MAX_INPUT_PIXELS)
    background = read_image(bg, flag="--bg", max_pixels=cap)
    source = read_image(fg, flag="--fg", max_pixels=cap)
    m = read_mask(mask, max_pixels=cap)
    size = tuple(background.shape[-2:])
    _same_size("mask", "--mask", mask, m, size)
    _same_size("foreground image", "--fg", fg, source, size)
    try:  # an empty or full mask, refused before any model is loaded
        check_inputs(torch.where(m[None, None], source, background), m[None], torch.tensor([0]), 1)
    except FedlabError as exc:
        raise FedlabError(f"--mask {str(mask)!r}: {exc}") from None
    stem = Path(bg).stem
    result_path, grid_path = output_files(
        out, [f"{stem}_freepih.png", f"{stem}_grid.png"], overwrite=overwrite, create=create_out
    )
    return HarmonizeJob(Path(bg), background, source, m, style, model, t, steps, guidance, seed,
                        result_path, grid_path, max_parameters)  # fmt: skip


def _load_checked(job: HarmonizeJob) -> tuple[Any, list[str]]:
    """The prior of ``job`` and its style names, with the checks that need them."""
    from fedlab.clients.harmonization.config import SHIPPED_PRIOR
    from fedlab.clients.harmonization.workload import prior_styles

    from fedlab.diffusion import load_unet

    folder = job.model or SHIPPED_PRIOR
    unet = load_unet(folder, max_parameters=job.max_parameters)
    names = prior_styles(unet, folder)
    factor = 2 ** (len(unet.config.down_block_types) - 1)
    size = tuple(job.background.shape[-2:])
    if size[0] % factor or size[1] % factor:
        raise FedlabError(
            f"--bg {str(job.bg)!r}: the images are {size[0]}x{size[1]}; this prior needs sides "
            f"that are multiples of {factor}: crop or pad them"
        )
    if job.style and job.style not in names:
        raise FedlabError(
            f"--style {job.style!r} was not trained on; this prior knows: {', '.join(names)}"
        )
    return unet, names


def harmonize_files(
    fg: str | Path, mask: str | Path, bg: str | Path, out: str | Path, *, style: str = "",
    model: str = "", t: object = 300, steps: object = 10, guidance: object = 1.0,
    seed: object = 0, progress: bool = True, overwrite: bool = False, max_pixels: object = None,
    max_parameters: int = MAX_MODEL_PARAMETERS,
) -> tuple[Path, Path]:  # fmt: skip
    """Harmonize the object of ``fg`` inside ``mask`` into ``bg``; write result and grid.

    Everything is checked first (:func:`check_harmonize`); existing outputs are refused
    unless ``overwrite``.
    """
    from fedlab.clients.harmonization.baselines import reinhard
    from fedlab.clients.harmonization.freepih import FreePIHParams, freepih, sdedit

    from fedlab.diffusion import make_scheduler
    from fedlab.image_io import png_bytes
    from fedlab.outputs import write_output

    job = check_harmonize(fg, mask, bg, out, style=style, model=model, t=t, steps=steps,
                          guidance=guidance, seed=seed, overwrite=overwrite,
                          max_pixels=max_pixels, max_parameters=max_parameters)  # fmt: skip
    unet, names = _load_checked(job)
    t, steps, seed = job.t, job.steps, job.seed
    params = FreePIHParams(t_start=t, steps=steps, guidance=job.guidance)
    scheduler = make_scheduler()
    composite, mask_b = job.composite, job.mask[None]
    if job.style:
        label = names.index(job.style)
    else:
        label = infer_style(unet, scheduler, job.background, mask_b, seed=seed)
        log.info("inferred style: %s", names[label])
    labels = torch.tensor([label])
    result = freepih(unet, scheduler, composite, mask_b, labels, params, seed=seed,
                     progress=progress)  # fmt: skip
    if not bool(torch.isfinite(result).all()):  # never write a corrupted image
        raise FedlabError(
            f"FreePIH produced non-finite pixels at --guidance {job.guidance:g}; lower it"
        )
    data = png_bytes(result)
    result_path = write_output(job.result_path, lambda p: p.write_bytes(data))
    panels = [
        ("cut-and-paste", composite),
        ("Reinhard", reinhard(composite[0], job.mask)[None]),
        (f"SDEdit t={t}", sdedit(unet, scheduler, composite, labels, t, steps=steps, seed=seed)),
        (f"FreePIH t={t} g={job.guidance:g} ({names[label]})", result),
    ]
    grid_path = write_output(job.grid_path, lambda p: _grid(panels, p))
    return result_path, grid_path


def _grid(panels: list[tuple[str, torch.Tensor]], path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    fig = Figure(figsize=(3.0 * len(panels), 3.3))
    axes = fig.subplots(1, len(panels))
    for ax, (title, img) in zip(axes, panels, strict=True):
        ax.imshow(img[0].clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)


def harmonize_command(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    kw = {"style": args.style, "model": args.model, "t": args.t, "steps": args.steps,
          "guidance": args.guidance, "seed": args.seed, "overwrite": args.overwrite,
          "max_pixels": args.max_pixels, "max_parameters": args.max_parameters}  # fmt: skip
    if args.check:
        job = check_harmonize(args.fg, args.mask, args.bg, args.out, create_out=False, **kw)
        _load_checked(job)
        h, w = job.background.shape[-2:]
        print(f"ok: {h}x{w} images; would write {job.result_path} and {job.grid_path}")
        return 0
    result, grid = harmonize_files(args.fg, args.mask, args.bg, args.out, **kw)
    print(f"wrote {result} and {grid}")  # the command's result, not a log line
    return 0

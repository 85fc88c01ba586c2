"""``fedlab harmonize --fg IMAGE --mask MASK --bg IMAGE --out DIR``: FreePIH on image files.

``--fg`` holds the object where ``--mask`` is white (non-zero); ``--bg`` is the painting; all
three have the same size (a multiple of the UNet's downsampling factor, 4 for the shipped
prior). The composite is the object pasted onto the painting; FreePIH harmonizes it to the
style ``--style`` (default: the style the prior finds most likely for the background, the
label with the lowest denoising error on it). Writes ``<out>/<bg>_freepih.png`` (its
background is the input's, bit for bit) and ``<out>/<bg>_grid.png`` (composite, Reinhard,
SDEdit, FreePIH side by side). ``--model`` takes a style-conditioned UNet folder (default:
the shipped federated prior).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from fedlab.errors import FedlabError

log = logging.getLogger("fedlab.harmonization")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fg", required=True, help="image holding the object (same size as --bg)")
    p.add_argument("--mask", required=True, help="mask image: non-zero pixels are the object")
    p.add_argument("--bg", required=True, help="the painting to harmonize the object into")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--style", default="", help="style name of the painting (default: inferred)")
    p.add_argument("--model", default="", help="style-conditioned UNet folder (default: shipped)")
    p.add_argument("--t", type=int, default=300, help="start step of FreePIH (default 300)")
    p.add_argument("--steps", type=int, default=10, help="DDIM steps (default 10)")
    p.add_argument("--guidance", type=float, default=1.0, help="guidance weight (0: plain DDIM)")
    p.add_argument("--seed", type=int, default=0, help="start-noise seed")
    p.set_defaults(func=harmonize_command)


def read_mask(path: str | Path) -> torch.Tensor:
    """A mask file as ``(H, W)`` bool (non-zero grey = object)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FedlabError(f"mask {str(path)!r} does not exist; give an image file path")
    try:
        with Image.open(path) as img:
            return torch.from_numpy(np.asarray(img.convert("L")) > 0)
    except (UnidentifiedImageError, OSError) as exc:
        raise FedlabError(f"cannot read {str(path)!r} as an image ({exc})") from None


def _same_size(name: str, image: torch.Tensor, size: tuple[int, int]) -> None:
    if tuple(image.shape[-2:]) != size:
        h, w = image.shape[-2:]
        raise FedlabError(
            f"{name} is {h}x{w} but the background is {size[0]}x{size[1]}; give a {name} of "
            "the same size"
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


def harmonize_files(
    fg: str | Path, mask: str | Path, bg: str | Path, out: str | Path, *, style: str = "",
    model: str = "", t: int = 300, steps: int = 10, guidance: float = 1.0, seed: int = 0,
    progress: bool = True,
) -> tuple[Path, Path]:  # fmt: skip
    """Harmonize the object of ``fg`` inside ``mask`` into ``bg``; write result and grid."""
    from fedlab.clients.harmonization.baselines import reinhard
    from fedlab.clients.harmonization.config import SHIPPED_PRIOR
    from fedlab.clients.harmonization.freepih import FreePIHParams, freepih, sdedit
    from fedlab.clients.harmonization.workload import prior_styles

    from fedlab.atomic import atomic_write, atomic_write_bytes
    from fedlab.diffusion import load_unet, make_scheduler
    from fedlab.image_io import png_bytes, read_image

    background, source, m = read_image(bg), read_image(fg), read_mask(mask)
    size = tuple(background.shape[-2:])
    _same_size("mask", m, size)
    _same_size("foreground image", source, size)
    params = FreePIHParams(t_start=t, steps=steps, guidance=guidance)
    if not 0 <= t < 1000:
        raise FedlabError(f"--t must be in 0..999, got {t}")
    folder = model or SHIPPED_PRIOR
    unet = load_unet(folder)
    names = prior_styles(unet, folder)
    factor = 2 ** (len(unet.config.down_block_types) - 1)
    if size[0] % factor or size[1] % factor:
        raise FedlabError(
            f"the images are {size[0]}x{size[1]}; this prior needs sides that are multiples of "
            f"{factor}: crop or pad them"
        )
    scheduler = make_scheduler()
    composite = torch.where(m[None, None], source, background)
    mask_b = m[None]
    if style:
        if style not in names:
            raise FedlabError(
                f"style {style!r} was not trained on; this prior knows: {', '.join(names)}"
            )
        label = names.index(style)
    else:
        from fedlab.clients.harmonization.freepih import check_inputs

        check_inputs(composite, mask_b, torch.tensor([0]), len(names))
        label = infer_style(unet, scheduler, background, mask_b, seed=seed)
        log.info("inferred style: %s", names[label])
    labels = torch.tensor([label])
    result = freepih(unet, scheduler, composite, mask_b, labels, params, seed=seed,
                     progress=progress)  # fmt: skip
    out = Path(out)
    stem = Path(bg).stem
    result_path = atomic_write_bytes(out / f"{stem}_freepih.png", png_bytes(result))
    panels = [
        ("cut-and-paste", composite),
        ("Reinhard", reinhard(composite[0], m)[None]),
        (f"SDEdit t={t}", sdedit(unet, scheduler, composite, labels, t, steps=steps, seed=seed)),
        (f"FreePIH t={t} g={guidance:g} ({names[label]})", result),
    ]
    grid_path = atomic_write(out / f"{stem}_grid.png", lambda p: _grid(panels, p))
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
    result, grid = harmonize_files(
        args.fg, args.mask, args.bg, args.out, style=args.style, model=args.model, t=args.t,
        steps=args.steps, guidance=args.guidance, seed=args.seed,
    )  # fmt: skip
    print(f"wrote {result} and {grid}")  # the command's result, not a log line
    return 0

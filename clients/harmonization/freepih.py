"""FreePIH on the project's diffusion module: noise the composite to a small t, denoise with
content and style guidance conditioned on the background's style, background re-imposed.

FreePIH (arXiv 2311.14926) noises foreground and background to a late step (the last steps of
the reverse process carry style) and denoises with multi-scale content consistency and style
alignment. Here, on a small style-conditioned UNet (the style label stands in for the paper's
text prompt), every DDIM step of :func:`fedlab.diffusion.reverse` (the project's one
denoising loop) is changed in two places:

- **guided noise** (the ``eps_fn`` handed to ``reverse``): with gradients enabled, the UNet's
  noise estimate ``eps`` and clean estimate ``x0 = (x - sqrt(1 - abar) eps) / sqrt(abar)``
  give two losses inside the mask:

  * content: the grey level (BT.601 luma) of ``x0`` and of the source foreground, each
    standardised inside the mask, compared in low-frequency bands (box means over
    ``content_scales`` pixels);
  * style: per-channel mean and standard deviation of the UNet's own intermediate features
    (forward hooks on the first ResNet of every down and up block) inside the mask matched to
    those outside it (the background's, held fixed);

  each loss's gradient with respect to ``x_t`` is scaled to unit RMS inside the mask and
  ``eps + guidance * (content_weight * g_c + style_weight * g_s) * mask`` is returned;
- **background re-imposed** (the ``guidance`` hook of ``reverse``): outside the mask each
  step's output is replaced by the background noised to that step with the start noise, and
  by the background itself at the end.

With ``guidance = 0`` no gradient is taken and the method is plain conditional DDIM from the
same start with the background re-imposed (tested). The result's background is the input
background bit for bit (the last replacement is an exact selection; tested).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fedlab import image_quality
from fedlab.diffusion import noise_to, reverse
from fedlab.diffusion.sampling import EpsFn, Guidance, unet_eps
from fedlab.errors import FedlabError


@dataclass(frozen=True)
class FreePIHParams:
    """FreePIH's settings (``t_start`` in 0..T-1; the paper keeps ``t/T`` <= about 0.3)."""

    t_start: int = 200
    steps: int = 10
    guidance: float = 1.0
    content_weight: float = 1.0
    style_weight: float = 1.0
    content_scales: tuple[int, ...] = (1, 2, 4)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise FedlabError(f"steps must be >= 1, got {self.steps}")
        if self.guidance < 0 or self.content_weight < 0 or self.style_weight < 0:
            raise FedlabError(
                f"guidance {self.guidance}, content weight {self.content_weight} and style "
                f"weight {self.style_weight} must all be >= 0"
            )


def check_inputs(
    composite: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, num_labels: int
) -> None:
    """One-line errors for a mask of another size, an empty or full mask, an unknown label.

    ``composite`` is ``(B, 3, H, W)``, ``mask`` ``(B, H, W)`` bool, ``labels`` ``(B,)``.
    """
    if composite.ndim != 4 or composite.shape[1] != 3:
        raise FedlabError(f"images must be (B, 3, H, W), got {tuple(composite.shape)}")
    if tuple(mask.shape) != (composite.shape[0], *composite.shape[-2:]):
        raise FedlabError(
            f"mask is {'x'.join(map(str, mask.shape[-2:]))} but the images are "
            f"{composite.shape[-2]}x{composite.shape[-1]}; give a mask of the same size"
        )
    area = mask.flatten(1).sum(1)
    if bool((area == 0).any()):
        raise FedlabError(
            "the mask is empty (no foreground pixel); white (non-zero) pixels mark the object"
        )
    if bool((area == mask[0].numel()).any()):
        raise FedlabError(
            "the mask covers the whole image (no background pixel); black (zero) pixels mark "
            "the background the object is harmonized to"
        )
    bad = [int(v) for v in labels if not 0 <= int(v) < num_labels]
    if bad:
        raise FedlabError(
            f"style label {bad[0]} was not trained on: the prior knows labels 0..{num_labels - 1}"
        )


def _masked_stats(feat: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel weighted mean and std of ``(B, C, h, w)`` with weights ``(B, 1, h, w)``."""
    total = weight.sum((2, 3)).clamp_min(1e-6)
    mean = (feat * weight).sum((2, 3)) / total
    var = ((feat - mean[..., None, None]) ** 2 * weight).sum((2, 3)) / total
    return mean, (var + 1e-6).sqrt()


def style_loss(features: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """Per-sample sum over layers of the squared gap between the features' per-channel mean/std
    inside ``mask`` (``(B, 1, H, W)`` float) and outside it (held fixed)."""
    loss = torch.zeros(mask.shape[0], dtype=mask.dtype, device=mask.device)
    for feat in features:
        m = F.interpolate(mask, size=feat.shape[-2:], mode="area")
        mu_f, sd_f = _masked_stats(feat, m)
        mu_b, sd_b = _masked_stats(feat, 1 - m)
        loss = loss + ((mu_f - mu_b.detach()) ** 2 + (sd_f - sd_b.detach()) ** 2).mean(1)
    return loss


def _standardised_grey(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    grey = image_quality.luma(x)
    mean, std = _masked_stats(grey, mask)
    return (grey - mean[..., None, None]) / std[..., None, None]


def content_loss(
    x0: torch.Tensor, source: torch.Tensor, mask: torch.Tensor, scales: tuple[int, ...]
) -> torch.Tensor:
    """Per-sample sum over ``scales`` of the mean squared low-frequency band (box mean over
    ``s`` px) of the standardised grey difference between ``x0`` and ``source`` inside
    ``mask`` (``(B, 1, H, W)`` float)."""
    diff = (_standardised_grey(x0, mask) - _standardised_grey(source, mask)) * mask
    loss = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device)
    for s in scales:
        band = F.avg_pool2d(diff, s) if s > 1 else diff
        loss = loss + band.pow(2).flatten(1).mean(1)
    return loss


def feature_layers(unet: torch.nn.Module) -> list[torch.nn.Module]:
    """The first ResNet of every down and up block: the features style guidance matches."""
    blocks = [*unet.down_blocks, *unet.up_blocks]
    return [b.resnets[0] for b in blocks]


@contextmanager
def capture_features(unet: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Forward hooks on :func:`feature_layers`; the list holds the last forward's outputs."""
    store: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, out: store.append(out))
               for m in feature_layers(unet)]  # fmt: skip
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def _unit_rms(grad: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    power = (grad.pow(2) * mask).sum((1, 2, 3), keepdim=True)
    count = (mask.sum((1, 2, 3), keepdim=True) * grad.shape[1]).clamp_min(1.0)
    return grad / ((power / count).sqrt() + 1e-12)


def guided_eps(
    unet: torch.nn.Module, labels: torch.Tensor, source: torch.Tensor, mask: torch.Tensor,
    alphas_cumprod: torch.Tensor, params: FreePIHParams,
) -> EpsFn:  # fmt: skip
    """The guided noise estimate (see the module docstring); plain ``eps`` if guidance is 0."""
    plain = unet_eps(unet, labels)
    if params.guidance == 0:
        return plain
    m = mask[:, None].to(source.dtype)

    def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad(), capture_features(unet) as feats:
            xg = x.detach().requires_grad_(True)
            eps = unet(xg, t, class_labels=labels).sample
            a = alphas_cumprod[t].to(x.dtype).view(-1, 1, 1, 1)
            x0 = (xg - (1 - a).sqrt() * eps) / a.sqrt()
            step = torch.zeros_like(x)
            if params.content_weight > 0:
                lc = content_loss(x0, source, m, params.content_scales).sum()
                (gc,) = torch.autograd.grad(lc, xg, retain_graph=params.style_weight > 0)
                step = step + params.content_weight * _unit_rms(gc, m)
            if params.style_weight > 0:
                (gs,) = torch.autograd.grad(style_loss(feats, m).sum(), xg)
                step = step + params.style_weight * _unit_rms(gs, m)
        return eps.detach() + params.guidance * step * m

    return eps_fn


def background_hook(
    background: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor,
    alphas_cumprod: torch.Tensor,
) -> Guidance:  # fmt: skip
    """``reverse``'s per-step hook: outside the mask, the background noised to the step's level
    with the start noise (the background itself after the last step)."""
    inside = mask[:, None]

    def hook(x_prev: torch.Tensor, _x0: torch.Tensor, _t: int, t_prev: int, _w: float):
        if t_prev < 0:
            return torch.where(inside, x_prev, background)
        return torch.where(inside, x_prev, noise_to(background, t_prev, noise, alphas_cumprod))

    return hook


def start_noise(shape: torch.Size, seed: int) -> torch.Tensor:
    """One ``(3, H, W)`` noise image from ``seed``, the same for every image of the batch (so a
    composite gets the same start whether it is harmonized alone or in a batch)."""
    one = torch.randn((1, *shape[1:]), generator=torch.Generator().manual_seed(seed))
    return one.expand(shape).contiguous()


def freepih(
    unet: torch.nn.Module, scheduler: object, composite: torch.Tensor,
    mask: torch.Tensor, labels: torch.Tensor, params: FreePIHParams, *, seed: int = 0,
    progress: bool = False,
) -> torch.Tensor:  # fmt: skip
    """Harmonize ``composite`` (``(B, 3, H, W)`` in [0, 1]; the object inside ``mask``, the
    painting outside) to the style ``labels`` with the UNet and its training ``scheduler``
    (a DDPMScheduler); returns ``(B, 3, H, W)`` in [0, 1] whose pixels outside the mask are
    ``composite``'s, bit for bit."""
    num_labels = int(unet.config.get("num_class_embeds") or 0)
    check_inputs(composite, mask, labels, num_labels)
    abar = scheduler.alphas_cumprod
    x_in = composite * 2 - 1
    noise = start_noise(x_in.shape, seed)
    x = noise_to(x_in, params.t_start, noise, abar)
    out = reverse(
        guided_eps(unet, labels, x_in, mask, abar, params), scheduler.config, x, params.t_start,
        steps=params.steps, guidance=background_hook(x_in, mask, noise, abar),
        progress=progress, desc="freepih",
    )  # fmt: skip
    return torch.where(mask[:, None], ((out + 1) / 2).clamp(0, 1), composite)


def sdedit(
    unet: torch.nn.Module, scheduler: object, composite: torch.Tensor,
    labels: torch.Tensor, t_start: int, *, steps: int = 10, seed: int = 0,
) -> torch.Tensor:  # fmt: skip
    """SDEdit of the whole composite: noise to ``t_start``, conditional DDIM to 0 (nothing
    re-imposed: the background changes too)."""
    abar = scheduler.alphas_cumprod
    x_in = composite * 2 - 1
    x = noise_to(x_in, t_start, start_noise(x_in.shape, seed), abar)
    out = reverse(unet_eps(unet, labels), scheduler.config, x, t_start, steps=steps)
    return ((out + 1) / 2).clamp(0, 1)

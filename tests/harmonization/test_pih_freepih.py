"""FreePIH on a tiny seeded class-conditional UNet: background bit-exact, guidance 0 is plain
conditional DDIM, one-line errors."""

from __future__ import annotations

import pytest
import torch
from fedlab.clients.harmonization.freepih import (
    FreePIHParams,
    content_loss,
    freepih,
    sdedit,
    start_noise,
)

from fedlab.diffusion import build_unet, make_scheduler, noise_to, reverse
from fedlab.diffusion.sampling import unet_eps
from fedlab.errors import FedlabError


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    unet = build_unet("tiny", num_class_embeds=3).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 16, 16, generator=gen)
    mask = torch.zeros(2, 16, 16, dtype=torch.bool)
    mask[0, 4:10, 5:12] = True
    mask[1, 8:14, 2:9] = True
    return unet, make_scheduler(), x, mask, torch.tensor([0, 2])


@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_background_is_kept_bit_exact(setup, guidance):
    unet, sched, x, mask, labels = setup
    out = freepih(unet, sched, x, mask, labels, FreePIHParams(t_start=150, steps=3,
                                                              guidance=guidance))  # fmt: skip
    outside = ~mask[:, None].expand_as(x)
    assert torch.equal(out[outside], x[outside])
    assert not torch.equal(out[~outside], x[~outside])  # the foreground did change
    assert out.min() >= 0 and out.max() <= 1


def test_guidance_zero_is_plain_conditional_ddim_from_the_same_start(setup):
    unet, sched, x, mask, labels = setup
    t, steps, seed = 200, 4, 5
    out = freepih(unet, sched, x, mask, labels,
                  FreePIHParams(t_start=t, steps=steps, guidance=0.0), seed=seed)  # fmt: skip
    # the reference: conditional DDIM from the same start, background pasted each step
    abar = sched.alphas_cumprod
    x_in, noise = x * 2 - 1, start_noise(x.shape, seed)
    inside = mask[:, None]

    def paste(xp, _x0, _t, t_prev, _w):
        bg = x_in if t_prev < 0 else noise_to(x_in, t_prev, noise, abar)
        return torch.where(inside, xp, bg)

    ref = reverse(unet_eps(unet, labels), sched.config, noise_to(x_in, t, noise, abar), t,
                  steps=steps, guidance=paste)  # fmt: skip
    expected = torch.where(inside, ((ref + 1) / 2).clamp(0, 1), x)
    assert torch.equal(out, expected)
    guided = freepih(unet, sched, x, mask, labels,
                     FreePIHParams(t_start=t, steps=steps, guidance=1.0), seed=seed)  # fmt: skip
    assert not torch.equal(guided, out)


def test_content_guidance_alone_moves_the_foreground_towards_the_source(setup):
    unet, sched, x, mask, labels = setup
    m = mask[:, None].float()
    runs = {g: freepih(unet, sched, x, mask, labels, FreePIHParams(
        t_start=300, steps=4, guidance=g, style_weight=0.0)) for g in (0.0, 3.0)}  # fmt: skip
    losses = {g: float(content_loss(o, x, m, (1, 2, 4)).sum()) for g, o in runs.items()}
    assert losses[3.0] < losses[0.0]


def test_sdedit_changes_the_whole_composite(setup):
    unet, sched, x, mask, labels = setup
    out = sdedit(unet, sched, x, labels, 150, steps=3)
    assert out.shape == x.shape and not torch.equal(out[:, :, ~mask[0]], x[:, :, ~mask[0]])


def test_mask_of_another_size_empty_mask_and_unknown_label_are_one_line_errors(setup):
    unet, sched, x, mask, labels = setup
    p = FreePIHParams(steps=1)
    with pytest.raises(FedlabError, match="mask is 8x16 but the images are 16x16"):
        freepih(unet, sched, x, mask[:, :8], labels, p)
    with pytest.raises(FedlabError, match="mask is empty"):
        freepih(unet, sched, x, torch.zeros_like(mask), labels, p)
    with pytest.raises(FedlabError, match="whole image"):
        freepih(unet, sched, x, torch.ones_like(mask), labels, p)
    with pytest.raises(FedlabError, match="style label 3 was not trained on"):
        freepih(unet, sched, x, mask, torch.tensor([0, 3]), p)
    with pytest.raises(FedlabError, match="must all be >= 0"):
        FreePIHParams(guidance=-1)

"""Large images in overlapping windows: the blend is exact, close to whole-image and seamless."""

from __future__ import annotations

import pytest
import torch
from fedlab.clients.sr.cli import check_sr
from fedlab.clients.sr.config import SHIPPED_PRIOR
from fedlab.clients.sr.methods import DiffSR
from skimage import data

from fedlab.diffusion import build_unet, load_unet, make_scheduler
from fedlab.diffusion.sampling import _starts, tiled_eps
from fedlab.errors import FedlabError
from fedlab.image_quality import psnr


@pytest.mark.parametrize(("height", "width", "tile", "overlap"),
                         [(40, 56, 16, 4), (33, 16, 16, 0), (100, 20, 32, 8)])  # fmt: skip
def test_windows_cover_the_image_and_the_blend_is_exact_for_a_pointwise_model(
    height, width, tile, overlap
):
    def pointwise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.tanh(3 * x) + t.view(-1, 1, 1, 1) / 1000

    x = torch.randn(2, 3, height, width, dtype=torch.float64)
    t = torch.tensor([7, 7])
    tiled = tiled_eps(pointwise, tile, overlap, batch=3)(x, t)
    assert torch.allclose(tiled, pointwise(x, t), atol=1e-12)
    for length in (height, width):
        starts = _starts(length, min(tile, length), overlap)
        assert starts[0] == 0 and starts[-1] + min(tile, length) == length
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))


def test_bad_tiles_are_refused_in_one_line(tmp_path):
    with pytest.raises(FedlabError, match="tile overlap 16 must be in 0..15"):
        tiled_eps(lambda x, t: x, 16, 16)
    with pytest.raises(FedlabError, match="tile 31 must be 0 .* multiple of the UNet.s"):
        DiffSR(build_unet("tiny"), make_scheduler(), tile=31)
    with pytest.raises(FedlabError, match="--tile"):
        check_sr(tmp_path / "missing.png", 2, tmp_path, tile="big")


@pytest.fixture(scope="module")
def astronaut() -> tuple[torch.Tensor, torch.Tensor]:
    hr = torch.from_numpy(data.astronaut()[100:228, 150:278]).permute(2, 0, 1)[None] / 255.0
    return hr.float(), torch.nn.functional.interpolate(hr.float(), size=(32, 32), mode="area")


def test_tiled_sr_is_closer_to_whole_image_sr_than_another_seed_and_has_no_seams(astronaut):
    """The shipped prior at x4 (32 -> 128 px, windows of its 32 px crop): tiling changes the
    output far less than the sampling seed does, and the window edges leave no step."""
    torch.manual_seed(0)
    hr, lr = astronaut
    unet = load_unet(SHIPPED_PRIOR)

    def run(tile: int, seed: int) -> torch.Tensor:
        sr = DiffSR(unet, make_scheduler(), steps=8, tile=tile)
        return sr.run(lr, (128, 128), 100, generator=torch.Generator().manual_seed(seed))

    whole, tiled, other_seed = run(0, 0), run(32, 0), run(0, 1)
    assert psnr(tiled, whole) > psnr(other_seed, whole) + 6
    edges = sorted({e for s in _starts(128, 32, 8) for e in (s, s + 32)} - {0, 128})

    def step_at(img: torch.Tensor, cols: list[int]) -> float:
        jumps = (img[..., :, 1:] - img[..., :, :-1]).abs().mean(dim=(0, 1, 2))
        return float(jumps[[c - 1 for c in cols]].mean())

    assert step_at(tiled, edges) < 1.2 * step_at(whole, edges)

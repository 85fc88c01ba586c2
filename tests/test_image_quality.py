"""fedlab.image_quality: PSNR, SSIM and BT.601 luma by their definitions; HaarPSI and GMSD
against piq's own figures.

REFERENCE holds what piq 0.8.0 (torch 2.13.0+cpu, scikit-image 0.26.0, numpy 2.4.6, scipy
1.17.1) returned on the inputs of :func:`cases` with its default arguments (and
``data_range=255`` for ``camera-64-noise-255``), in float32 and in float64;
``python simulations/image_metrics_reference.py`` recomputes and prints them where piq is
installed. This test does not import piq.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.fft import dctn, idctn
from scipy.ndimage import gaussian_filter
from skimage import data
from skimage.metrics import structural_similarity

from fedlab import image_quality
from fedlab.errors import FedlabError
from fedlab.image_quality import gmsd, haarpsi, luma, psnr, rgb2yiq, ssim

# piq 0.8.0 on cases(): name -> (haarpsi float32, gmsd float32, haarpsi float64, gmsd float64)
REFERENCE: dict[str, tuple[float, float, float, float]] = {
    "astronaut-64-identical": (
        1.000002384185791,
        0.0,
        0.9999999999999958,
        0.0,
    ),
    "astronaut-64-noise": (
        0.9041277766227722,
        0.02661058120429516,
        0.9041284792975861,
        0.026610559806804913,
    ),
    "astronaut-64-blur": (
        0.9221968650817871,
        0.040080368518829346,
        0.9221961617789614,
        0.04008036118186773,
    ),
    "astronaut-64-jpeg": (
        0.9227773547172546,
        0.02234545908868313,
        0.922781660812655,
        0.022345458229107544,
    ),
    "astronaut-64-tint": (
        0.9000273942947388,
        0.00778563879430294,
        0.9000254719268017,
        0.007785633775563539,
    ),
    "camera-64-noise": (
        0.6902346611022949,
        0.11259698122739792,
        0.6902356162670442,
        0.1125969818201759,
    ),
    "camera-64-blur": (
        0.5967839360237122,
        0.1449524313211441,
        0.5967836362329579,
        0.14495243104480984,
    ),
    "camera-37x53-blur": (
        0.9693240523338318,
        0.007672638166695833,
        0.9693210402463128,
        0.007672638468664914,
    ),
    "camera-128x96-jpeg": (
        0.7542813420295715,
        0.07410813868045807,
        0.7542813002331445,
        0.0741081575109663,
    ),
    "coffee-45x70-noise": (
        0.9501839876174927,
        0.018471000716090202,
        0.9501836563915046,
        0.018471008949641217,
    ),
    "coffee-100x150-jpeg": (
        0.9628562331199646,
        0.014360480010509491,
        0.9628572366526793,
        0.014360477463396653,
    ),
    "coffee-16-noise": (
        0.8250123262405396,
        0.07597680389881134,
        0.825012073024036,
        0.07597677479837696,
    ),
    "chelsea-33x48-tint-blur": (
        0.9072462320327759,
        0.03233397752046585,
        0.9072473991529331,
        0.03233399448495955,
    ),
    "camera-64-noise-255": (
        0.6902337670326233,
        0.11259698122739792,
        0.6902356162670442,
        0.1125969818201759,
    ),
}

RTOL_32, RTOL_64 = 1e-5, 1e-10


def _noise(x: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    return np.clip(x + np.random.default_rng(seed).normal(0.0, sigma, x.shape), 0.0, 1.0)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return gaussian_filter(x, sigma=(sigma, sigma, 0)[: x.ndim], mode="reflect")


def _jpeg_like(x: np.ndarray, step: float) -> np.ndarray:
    """8x8 block DCT of the [0, 255] image, coefficients rounded to multiples of ``step``."""
    h, w = x.shape[:2]
    pad = [(0, -h % 8), (0, -w % 8)] + [(0, 0)] * (x.ndim - 2)
    p = np.pad(x * 255.0, pad, mode="edge")
    blocks = p.reshape(p.shape[0] // 8, 8, p.shape[1] // 8, 8, *p.shape[2:])
    coeffs = dctn(blocks, axes=(1, 3), norm="ortho")
    back = idctn(np.round(coeffs / step) * step, axes=(1, 3), norm="ortho").reshape(p.shape)
    return np.clip(back[:h, :w] / 255.0, 0.0, 1.0)


def _tint(x: np.ndarray) -> np.ndarray:
    return np.clip(x * np.array([1.12, 0.95, 0.85]), 0.0, 1.0)


def _crop(image: np.ndarray, top: int, left: int, h: int, w: int) -> np.ndarray:
    return image[top : top + h, left : left + w].astype(np.float64) / 255.0


def cases() -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """name -> (distorted, reference, data_range): HWC (colour) or HW (grey) float64 arrays.

    64-px crops as in the Diff-SR study, odd and non-power-of-two sizes, the 16-px minimum,
    grey and colour, noise, blur, JPEG-like quantisation, a colour cast, identity.
    """
    astro, camera, coffee, chelsea = data.astronaut(), data.camera(), data.coffee(), data.chelsea()
    a64 = _crop(astro, 100, 180, 64, 64)
    c64 = _crop(camera, 200, 240, 64, 64)
    out = {
        "astronaut-64-identical": (a64, a64, 1.0),
        "astronaut-64-noise": (_noise(a64, 0.05, 0), a64, 1.0),
        "astronaut-64-blur": (_blur(a64, 1.2), a64, 1.0),
        "astronaut-64-jpeg": (_jpeg_like(a64, 40.0), a64, 1.0),
        "astronaut-64-tint": (_tint(a64), a64, 1.0),
        "camera-64-noise": (_noise(c64, 0.08, 1), c64, 1.0),
        "camera-64-blur": (_blur(c64, 2.0), c64, 1.0),
        "camera-37x53-blur": (
            _blur(_crop(camera, 250, 180, 37, 53), 1.0),
            _crop(camera, 250, 180, 37, 53),
            1.0,
        ),
        "camera-128x96-jpeg": (
            _jpeg_like(_crop(camera, 120, 150, 128, 96), 60.0),
            _crop(camera, 120, 150, 128, 96),
            1.0,
        ),
        "coffee-45x70-noise": (
            _noise(_crop(coffee, 150, 200, 45, 70), 0.03, 2),
            _crop(coffee, 150, 200, 45, 70),
            1.0,
        ),
        "coffee-100x150-jpeg": (
            _jpeg_like(_crop(coffee, 100, 250, 100, 150), 25.0),
            _crop(coffee, 100, 250, 100, 150),
            1.0,
        ),
        "coffee-16-noise": (
            _noise(_crop(coffee, 200, 300, 16, 16), 0.1, 3),
            _crop(coffee, 200, 300, 16, 16),
            1.0,
        ),
        "chelsea-33x48-tint-blur": (
            _tint(_blur(_crop(chelsea, 80, 150, 33, 48), 0.8)),
            _crop(chelsea, 80, 150, 33, 48),
            1.0,
        ),
        "camera-64-noise-255": (_noise(c64, 0.08, 1) * 255.0, c64 * 255.0, 255.0),
    }
    return out


def to_tensor(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """HWC or HW float64 array -> ``(1, C, H, W)`` tensor of ``dtype``."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    t = t[None] if t.dim() == 2 else t.permute(2, 0, 1)
    return t[None].to(dtype)


def _close(got: float, want: float, rtol: float) -> bool:
    return got == pytest.approx(want, rel=rtol, abs=1e-12)


@pytest.fixture(scope="module")
def inputs() -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    return cases()


def test_reference_covers_every_case(inputs):
    assert set(REFERENCE) == set(inputs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_haarpsi_and_gmsd_match_piq(inputs, dtype):
    column, rtol = (0, RTOL_32) if dtype == torch.float32 else (2, RTOL_64)
    worst = {}
    for name, (x, y, data_range) in inputs.items():
        a, b = to_tensor(x, dtype), to_tensor(y, dtype)
        got_h = float(haarpsi(a, b, data_range=data_range))
        got_g = float(gmsd(a, b, data_range=data_range))
        want_h, want_g = REFERENCE[name][column], REFERENCE[name][column + 1]
        assert _close(got_h, want_h, rtol), (name, "haarpsi", got_h, want_h)
        assert _close(got_g, want_g, rtol), (name, "gmsd", got_g, want_g)
        worst[name] = (got_h, got_g)
    assert worst["astronaut-64-identical"] == (pytest.approx(1.0, abs=1e-5), 0.0)


def test_a_batch_gives_each_image_its_own_score(inputs):
    names = [n for n in inputs if n.startswith("astronaut-64")]
    x = torch.cat([to_tensor(inputs[n][0], torch.float32) for n in names])
    y = torch.cat([to_tensor(inputs[n][1], torch.float32) for n in names])
    h = haarpsi(x, y, reduction="none")
    g = gmsd(x, y, reduction="none")
    assert h.shape == g.shape == (len(names),)
    for i, name in enumerate(names):
        assert _close(float(h[i]), REFERENCE[name][0], RTOL_32)
        assert _close(float(g[i]), REFERENCE[name][1], RTOL_32)
    assert float(haarpsi(x, y)) == pytest.approx(float(h.mean()))
    assert float(gmsd(x, y, reduction="sum")) == pytest.approx(float(g.sum()))


def test_worse_images_score_worse(inputs):
    score = {n: REFERENCE[n] for n in inputs}
    for name in ("astronaut-64-noise", "astronaut-64-blur", "astronaut-64-jpeg"):
        assert score[name][0] < score["astronaut-64-identical"][0]
        assert score[name][1] > score["astronaut-64-identical"][1]


def test_bad_inputs_are_refused_in_one_line():
    x = torch.rand(1, 3, 32, 32)
    bad = {
        "must be batches": (x[0], x[0]),
        "of one shape": (x, x[..., :16]),
        "1 \\(grey\\) or 3 \\(RGB\\) channels": (torch.rand(1, 4, 32, 32),) * 2,
        "values must lie in \\[0, 1.0\\]": (x * 2, x),
    }
    for message, (a, b) in bad.items():
        for metric in (haarpsi, gmsd):
            with pytest.raises(FedlabError, match=message) as err:
                metric(a, b)
            assert "\n" not in str(err.value)
    with pytest.raises(FedlabError, match="below HaarPSI's minimum of 16 px"):
        haarpsi(x[..., :15, :], x[..., :15, :])
    with pytest.raises(FedlabError, match="unknown reduction"):
        gmsd(x, x, reduction="max")


def test_psnr_is_ten_log10_of_peak_over_mse_capped_at_100_db():
    a = torch.zeros(3, 8, 8)
    b = torch.full((3, 8, 8), 0.1, dtype=torch.float64)
    assert psnr(a, b) == pytest.approx(20.0, rel=1e-12)
    assert psnr(b, a) == psnr(a, b)
    assert psnr(a, a) == 100.0 and psnr(a, a + 1e-9) == 100.0
    assert psnr(a * 255, b * 255, data_range=255.0) == pytest.approx(20.0, rel=1e-12)
    assert psnr(a - 1, b) == psnr(a, b)  # clipped to [0, data_range] first


def test_psnr_of_a_clip_pools_the_mse_over_all_frames():
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(4, 3, 16, 16, generator=g, dtype=torch.float64)
    out = (ref + 0.02 * torch.arange(1, 5, dtype=torch.float64).view(4, 1, 1, 1)).clamp(0, 1)
    mse = float(((out - ref) ** 2).mean())
    assert psnr(out, ref) == pytest.approx(10 * np.log10(1 / mse), rel=1e-12)
    per_frame = np.mean([psnr(o, r) for o, r in zip(out, ref, strict=True)])
    assert per_frame > psnr(out, ref)  # the mean of logs is not the log of the mean


def test_ssim_is_wang_et_al_with_the_gaussian_window(inputs):
    x, y, _ = inputs["astronaut-64-noise"]
    a, b = to_tensor(x, torch.float64)[0], to_tensor(y, torch.float64)[0]
    want = structural_similarity(x, y, data_range=1.0, channel_axis=2, gaussian_weights=True,
                                 sigma=1.5, use_sample_covariance=False)  # fmt: skip
    assert ssim(a, b) == pytest.approx(want, rel=1e-12)
    assert ssim(b, a) == pytest.approx(ssim(a, b), rel=1e-12)
    assert ssim(a, a) == 1.0
    grey = luma(a)[0]
    assert ssim(grey, grey) == 1.0 and ssim(grey, luma(b)[0]) < 1.0
    small = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert ssim(small, small) == 1.0 and ssim(torch.zeros(3, 8, 8), small) < 0.5


def test_ssim_in_a_mask_is_the_mean_of_the_map_there(inputs):
    x, y, _ = inputs["camera-64-blur"]
    mask = np.zeros((64, 64), bool)
    mask[10:40, 5:30] = True
    _, smap = structural_similarity(x, y, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, full=True)  # fmt: skip
    got = ssim(torch.from_numpy(x), torch.from_numpy(y), mask=torch.from_numpy(mask))
    assert got == pytest.approx(float(smap[mask].mean()), rel=1e-12)
    with pytest.raises(FedlabError, match="non-empty"):
        ssim(torch.from_numpy(x), torch.from_numpy(y), mask=torch.zeros(64, 64, dtype=torch.bool))


def test_luma_is_bt601_and_the_y_of_yiq():
    x = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    want = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert torch.allclose(luma(x)[:, 0], want, rtol=0, atol=1e-15)
    assert torch.allclose(luma(x), rgb2yiq(x)[:, :1], rtol=0, atol=1e-15)
    assert luma(x[0]).shape == (1, 5, 7)
    grey = torch.full((3, 2, 2), 0.5, dtype=torch.float64)
    assert torch.allclose(luma(grey), grey[:1], rtol=0, atol=1e-15)  # the weights sum to 1


def test_psnr_ssim_and_luma_refuse_bad_inputs_in_one_line():
    x = torch.rand(3, 16, 16)
    cases = [
        (lambda: psnr(x, x[:, :8]), "one shape"),
        (lambda: psnr(x.numpy(), x), "torch tensors"),
        (lambda: psnr(x, x, data_range=0), "data_range must be > 0"),
        (lambda: ssim(x[None], x[None]), "one image"),
        (lambda: luma(torch.rand(4, 16, 16)), "RGB"),
    ]
    for call, message in cases:
        with pytest.raises(FedlabError, match=message) as err:
            call()
        assert "\n" not in str(err.value)


def _coffee(rows: slice) -> torch.Tensor:
    from skimage import data

    return torch.from_numpy(data.coffee()[rows, 200:328] / 255.0).permute(2, 0, 1)[None].float()


def test_spectral_detail_error_grows_with_blur_and_noise_and_ignores_phase():
    from skimage.filters import gaussian

    ref = _coffee(slice(100, 228))
    image = ref[0].permute(1, 2, 0).numpy()

    def blurred(sigma: float) -> torch.Tensor:
        out = gaussian(image, sigma=sigma, channel_axis=-1)
        return torch.from_numpy(out).permute(2, 0, 1)[None].float()

    def error(x: torch.Tensor) -> float:
        return float(image_quality.spectral_detail_error(x, ref)[0])

    assert error(ref) == 0.0
    errors = [error(blurred(s)) for s in (0.5, 1.0, 2.0)]
    assert 1.0 < errors[0] < errors[1] < errors[2]
    noise = torch.from_numpy(np.random.default_rng(0).normal(0, 0.05, ref.shape)).float()
    assert error((ref + noise).clamp(0, 1)) > 3.0
    # The same detail elsewhere in the picture: far closer than a blur PSNR calls better.
    shifted = torch.roll(ref, 5, dims=-1)
    assert error(shifted) < 0.5 < errors[1]
    assert image_quality.psnr(blurred(1.0), ref) > image_quality.psnr(shifted, ref)


def test_spectral_detail_error_refuses_bad_input_in_one_line():
    ref = _coffee(slice(100, 228))
    with pytest.raises(FedlabError, match="one shape"):
        image_quality.spectral_detail_error(ref[..., :64], ref)
    with pytest.raises(FedlabError, match="band"):
        image_quality.spectral_detail_error(ref, ref, band=(0.3, 0.7))
    with pytest.raises(FedlabError, match="H, W >= 8"):
        image_quality.radial_power_spectrum(ref[..., :4, :4])


def test_full_range_ycbcr_inverts_exactly_and_grey_has_neutral_chroma():
    rgb = torch.rand(4, 5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rgb = rgb * 255
    back = image_quality.ycbcr_to_rgb(image_quality.rgb_to_ycbcr(rgb))
    assert torch.allclose(back, rgb, atol=1e-9)
    grey = torch.full((2, 3), 77.0, dtype=torch.float64)
    ycc = image_quality.rgb_to_ycbcr(grey)
    assert torch.allclose(ycc, torch.tensor([77.0, 128.0, 128.0], dtype=torch.float64))

"""Diff-SR: the one downsampler, PRF, the methods, metrics, the apps' configs and errors."""

from __future__ import annotations

import pytest
import torch
from fedlab.clients.sr.config import DiffSRConfig
from fedlab.clients.sr.data import HELDOUT_IMAGES, TRAIN_IMAGES, client_images, fixed_crops
from fedlab.clients.sr.degrade import downsample, lr_size, sr_size, upsample
from fedlab.clients.sr.evaluate import calibrated_prf, calibration_crops, heldout_crops
from fedlab.clients.sr.methods import DiffSR
from fedlab.clients.sr.prf import PRF, fit_kappa

from fedlab.diffusion import build_unet, make_scheduler
from fedlab.errors import FedlabError


def tiny_sr(steps: int = 4) -> DiffSR:
    torch.manual_seed(0)
    return DiffSR(build_unet("tiny"), make_scheduler(), steps=steps)


@pytest.fixture(scope="module")
def prf() -> PRF:
    return PRF.calibrate(fixed_crops(TRAIN_IMAGES[:4], 32, 1, seed=0))


def test_one_downsampler_sizes_and_scale_errors():
    x = torch.rand(1, 3, 64, 64)
    assert downsample(x, 1.5).shape[-2:] == (43, 43) and downsample(x, 6).shape[-2:] == (11, 11)
    assert lr_size((64, 64), 2.5) == (26, 26) and sr_size((40, 48), 2.5) == (100, 120)
    assert 0 <= float(downsample(x, 3).min()) and float(downsample(x, 3).max()) <= 1
    for bad in (0.5, float("nan"), float("inf")):
        with pytest.raises(FedlabError, match="must be a finite number >= 1") as err:
            downsample(x, bad)
        assert "\n" not in str(err.value)


def test_heldout_images_are_never_training_or_calibration_images():
    assert not set(HELDOUT_IMAGES) & set(TRAIN_IMAGES) and "cat" not in TRAIN_IMAGES
    assert sorted(sum((client_images(k, 4) for k in range(4)), ())) == sorted(TRAIN_IMAGES)
    cal = calibration_crops(0, 4, 2, 64)
    own = fixed_crops(client_images(0, 4), 64, 1, seed=4051)
    assert torch.equal(cal[0], own[0]) and torch.equal(cal[1], own[1])
    assert heldout_crops(1, 6, 64).shape == (6, 3, 64, 64)


def test_prf_t_is_monotone_in_scale_and_zero_at_scale_one(prf):
    ac = make_scheduler().alphas_cumprod
    scales = [1 + 0.1 * i for i in range(71)]
    for kappa in (0.25, 1.0, 8.0):
        ts = [prf.with_kappa(kappa).start_step(s, ac) for s in scales]
        assert ts == sorted(ts) and ts[0] == 0 and ts[-1] > ts[5]
    assert prf.with_kappa(8.0).start_step(4, ac) > prf.start_step(4, ac)
    with pytest.raises(FedlabError, match="scale 0.9"):
        prf.start_step(0.9, ac)


def test_kappa_fit_recovers_the_oracle(prf):
    ac = make_scheduler().alphas_cumprod
    oracle = {s: prf.with_kappa(4.0).start_step(s, ac) for s in (1.5, 2, 3, 4, 6)}
    assert fit_kappa(prf, oracle, ac) == pytest.approx(4.0)


def test_t_zero_returns_the_upsampled_input():
    sr = tiny_sr()
    lr = torch.rand(2, 3, 8, 8)
    assert torch.equal(sr.run(lr, (16, 16), 0), upsample(lr, (16, 16)))
    assert not torch.equal(sr.run(lr, (16, 16), 100), upsample(lr, (16, 16)))


def test_image_smaller_than_the_crop_is_refused():
    sr = tiny_sr()  # tiny UNet: 8-px training crop
    with pytest.raises(FedlabError, match="smaller than the prior's training crop") as err:
        sr.run(torch.rand(1, 3, 3, 3), (6, 6), 50)
    assert "\n" not in str(err.value)


def test_guidance_pulls_the_output_onto_the_lr_input():
    sr = tiny_sr()
    hr = fixed_crops(HELDOUT_IMAGES[:1], 16, 2, seed=0)
    lr = downsample(hr, 2)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731

    def lr_error(out):
        return float((downsample(out, 2) - lr).pow(2).mean())

    free = lr_error(sr.run(lr, (16, 16), 400, generator=gen()))
    assert lr_error(sr.run(lr, (16, 16), 400, guidance="ddnm", generator=gen())) < free / 3
    assert lr_error(sr.run(lr, (16, 16), 400, guidance="ilvr", generator=gen())) < free / 3
    odd = sr.run(downsample(torch.rand(1, 3, 17, 13), 1.0), (17, 13), 50, guidance="ilvr")
    assert odd.shape[-2:] == (17, 13)  # reflect-padded to the UNet's factor and cropped back


def test_metrics_on_identical_and_degraded_images():
    from fedlab.clients.sr.metrics import image_metrics

    hr = fixed_crops(HELDOUT_IMAGES[:1], 32, 2, seed=1)
    lr = downsample(hr, 2)
    same = image_metrics(hr, hr, lr)
    blur = image_metrics(upsample(lr, (32, 32)), hr, lr)
    assert same["psnr"] == [100.0, 100.0] and same["gmsd"] == [0.0, 0.0]
    assert min(same["haarpsi"]) > 0.9999
    assert all(b < s for b, s in zip(blur["haarpsi"], same["haarpsi"], strict=True))
    assert max(blur["psnr"]) < 100 and min(blur["lr-psnr"]) > 20


def test_config_errors_are_one_line():
    base = {"init-from": "", "unet": "tiny", "crop-size": 8}
    cases = {
        "scales": ("0.5", "must all be >= 1"),
        "methods": ("prf,magic", "'magic' is not one of"),
        "fixed-t": ("1200", "0, 999"),
        "sample-seeds": ("", "sample-seeds must name at least one value"),
    }
    for key, (value, message) in cases.items():
        with pytest.raises(FedlabError, match=message) as err:
            DiffSRConfig.from_mapping({**base, key: value})
        assert "\n" not in str(err.value)


def test_missing_folders_are_refused_before_the_run():
    from fedlab.clients.diffusion_prior import check_prior_app as check_sr_app

    config = DiffSRConfig.from_mapping({"init-from": "/no/such/prior", "methods": "bicubic"})
    with pytest.raises(FedlabError, match="init-from folder '/no/such/prior' does not exist"):
        check_sr_app(config, 4)
    config = DiffSRConfig.from_mapping({"init-from": "", "cnn": "/no/cnn", "methods": "cnn"})
    with pytest.raises(FedlabError, match="cnn folder '/no/cnn' does not exist"):
        config.check_paths()


def test_calibrated_prf_is_cached_and_uses_kappa():
    a, b = calibrated_prf(1, 32, 1.0), calibrated_prf(1, 32, 2.0)
    assert a.energy == b.energy and b.kappa == 2.0 and a is calibrated_prf(1, 32, 1.0)


def test_fedlab_sr_command_errors(tmp_path, capsys):
    from fedlab.cli import fedlab_main
    from fedlab.image_io import png_bytes

    image = tmp_path / "in.png"
    image.write_bytes(png_bytes(torch.rand(1, 3, 12, 12)))
    for args, message in (
        (["--scale", "0.5"], "--scale must be a finite number >= 1"),
        (["--scale", "2", "--model", str(tmp_path / "nope")], "does not exist"),
    ):
        code = fedlab_main(["sr", "--in", str(image), "--out", str(tmp_path / "o"), *args])
        err = capsys.readouterr().err.strip()
        assert code != 0 and message in err and len(err.splitlines()) == 1


def test_fedlab_sr_writes_the_scaled_image_and_grid(tmp_path):
    from fedlab.clients.sr.cli import super_resolve_file
    from PIL import Image

    from fedlab.image_io import png_bytes

    torch.manual_seed(0)
    build_unet("tiny").save_pretrained(tmp_path / "m", safe_serialization=True)
    image = tmp_path / "in.png"
    image.write_bytes(png_bytes(torch.rand(1, 3, 10, 7)))
    result, grid = super_resolve_file(image, 2.5, tmp_path / "o", model=str(tmp_path / "m"),
                                      steps=3, kappa=1.0, progress=False)  # fmt: skip
    assert Image.open(result).size == (18, 25) and grid.is_file()  # (W, H) = round(7, 10 x 2.5)
    with pytest.raises(FedlabError, match="smaller than the prior's training crop"):
        super_resolve_file(image, 1.0, tmp_path / "o", model=str(tmp_path / "m"), kappa=1.0,
                           progress=False)  # fmt: skip

"""The Diff-SR weights and kappa the defaults use ship with the package (issue 28)."""

from __future__ import annotations

import torch
from fedlab.clients.sr import config as sr_config
from fedlab.clients.sr.cnn import load_cnn
from fedlab.clients.sr.config import FITTED_KAPPA, SHIPPED_CNN, SHIPPED_PRIOR, DiffSRConfig

from fedlab.diffusion import load_unet


def test_shipped_prior_and_cnn_load_with_their_loaders() -> None:
    unet = load_unet(SHIPPED_PRIOR)
    assert unet.config.sample_size == 32
    assert load_cnn(SHIPPED_CNN) is not None
    config = DiffSRConfig()
    assert config.prior_folder() == str(SHIPPED_PRIOR)
    assert config.cnn_folder() == str(SHIPPED_CNN)


def test_fedlab_sr_without_kappa_or_study_uses_the_shipped_constant(
    tmp_path, monkeypatch, capsys
) -> None:
    # No --kappa and no study outputs anywhere: the command used to read the kappa from
    # simulations/results/diffsr/study.json and fell back to 1 without a word when it was not
    # there (a wheel install); now the fitted value ships as a constant.
    from fedlab.clients.sr import evaluate

    from fedlab.cli import fedlab_main
    from fedlab.image_io import png_bytes

    monkeypatch.setattr(sr_config, "SHIPPED_DIR", tmp_path / "no-study", raising=False)
    monkeypatch.chdir(tmp_path)
    used = []
    real = evaluate.calibrated_prf

    def recording(*args, **kwargs):
        used.append(kwargs.get("kappa", args[2] if len(args) > 2 else None))
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "calibrated_prf", recording)
    image = tmp_path / "in.png"
    image.write_bytes(
        png_bytes(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    )
    code = fedlab_main(["sr", "--in", str(image), "--scale", "2", "--out", "out", "--steps", "1"])
    assert code == 0, capsys.readouterr().err
    assert used == [FITTED_KAPPA] and FITTED_KAPPA == 16.0
    assert (tmp_path / "out" / "in_x2.png").is_file()


def test_fedlab_sr_refuses_a_kappa_that_is_not_positive(tmp_path, capsys) -> None:
    from fedlab.cli import fedlab_main
    from fedlab.image_io import png_bytes

    image = tmp_path / "in.png"
    image.write_bytes(png_bytes(torch.rand(1, 3, 16, 16)))
    code = fedlab_main(["sr", "--in", str(image), "--scale", "2", "--out", str(tmp_path / "o"),
                        "--kappa", "0"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code != 0 and "--kappa must be a finite number > 0" in err and len(err.splitlines()) == 1

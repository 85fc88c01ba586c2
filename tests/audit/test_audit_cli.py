"""``fedlab audit`` end to end on the tiny preset, its resume, and its one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fedlab.attacks.audit.config import from_mapping
from fedlab.attacks.audit.presets import PRESETS
from fedlab.attacks.audit.runner import run_audit
from fedlab.clients.dpfedavg.app import dpfedavg

from fedlab.cli import fedlab_main
from fedlab.errors import FedlabError


@pytest.fixture(scope="module")
def tiny_audit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("audit") / "tiny"
    assert fedlab_main(["audit", "--preset", "tiny", "--out", str(out)]) == 0
    return out, json.loads((out / "audit.json").read_text())


def test_no_dp_leaks_and_is_reconstructed(tiny_audit: tuple[Path, dict]) -> None:
    _, data = tiny_audit
    s = data["settings"]["no-dp"]
    assert s["accountant"]["epsilon"] is None
    # the server sees each canary's reply exactly, and the aggregates carry it
    assert s["estimates"]["per-release"]["epsilon"] >= 40
    assert s["estimates"]["all-iterates"]["epsilon"] > 10
    cell = s["attacks"]["trace:idlg:none"]
    assert cell["n"] == 1 and cell["succeeds"]
    assert cell["psnr-median"] > s["psnr-threshold"] + 20
    assert 0 < data["attack-seconds"] < data["seconds"]


def test_local_dp_small_epsilon_holds(tiny_audit: tuple[Path, dict]) -> None:
    _, data = tiny_audit
    s = data["settings"]["local-eps1"]
    cell = s["attacks"]["trace:idlg:none"]
    assert cell["n"] == 1 and cell["psnr-median"] < s["psnr-threshold"]
    for stat in ("final", "all-iterates", "per-release"):
        est = s["estimates"][stat]
        assert est["accountant"] is not None
        assert not est["exceeds"], (stat, est)  # within its spread of the accountant
    assert s["canaries"] == [18, 19]  # 10 % of 20 clients


def test_report_is_self_contained_and_resume_reruns_nothing(tiny_audit: tuple[Path, dict]) -> None:
    out, data = tiny_audit
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4  # 3 plots + a reconstruction grid
    assert "http://" not in page and "https://" not in page
    assert "estimate, not a bound" in page
    stamp = (out / "settings" / "no-dp" / "setting.json").stat().st_mtime_ns
    assert fedlab_main(["audit", "--preset", "tiny", "--out", str(out)]) == 0
    assert (out / "settings" / "no-dp" / "setting.json").stat().st_mtime_ns == stamp
    with pytest.raises(FedlabError, match="another config"):
        run_audit(dpfedavg, from_mapping({**PRESETS["tiny"], "targets": 2}), out, "dpfedavg")


def _toml(folder: Path, text: str) -> Path:
    path = folder / "audit.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('attacks = ["idlg", "nope"]\n', "unknown attack 'nope'"),
        ('denoisers = ["none", "bm3d"]\n', "unknown denoiser 'bm3d'"),
        ('[[settings]]\nmode = "secure-aggregation"\nepsilon = 1.0\n', "unknown mode"),
        ("canary-share = 0.2\n", "at most 10 %"),
        ("bogus = 1\n", "unknown key 'bogus'"),
        ('[[settings]]\nmode = "central"\nepsilon = 0.0001\n', "unreachable"),
    ],
)
def test_bad_config_is_refused_in_one_line_before_any_run(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = fedlab_main(
        ["audit", "--preset", "tiny", "--config", str(_toml(tmp_path, text)), "--out", str(out)]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and "\n" not in err, err
    assert not out.exists()


def test_an_app_that_cannot_record_traces_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = fedlab_main(["audit", "--app", "fedfoa", "--preset", "tiny", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "cannot record gradient traces" in err
    assert not out.exists()

"""simulations/pgla_bench.py end to end with tiny denoisers (seconds, not a measurement)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from fedlab.attacks.pgla.train import resolve_config, train_denoiser
from fedlab.attacks.pgla.training import DenoiserTrainConfig

SCRIPT = Path(__file__).resolve().parents[3] / "simulations" / "pgla_bench.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("pgla_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.extended  # 31 s: the fast tier's budget is 5 minutes (issue 29)
def test_bench_script_writes_every_table(tmp_path) -> None:
    tiny = resolve_config("tiny")
    train_denoiser(tiny, tmp_path / "pgla")
    cond = DenoiserTrainConfig.from_dict({**tiny.__dict__, "denoiser": "pgla-cond", "max_steps": 2})
    train_denoiser(cond, tmp_path / "cond")
    out = tmp_path / "out"
    bench = _load_script()
    code = bench.main(
        [
            "--out", str(out), "--pgla", str(tmp_path / "pgla"),
            "--pgla-cond", str(tmp_path / "cond"), "--victims", "2", "--ddim-steps", "2",
            "--denoisers", "none,gaussian,pgla,pgla-fixed,pgla-cond,pgla-cond-sr3",
            "--timing-steps", "1",
            "--no-ddpm", "--attack", "ig", "--attack-iterations", "3", "--attack-victims", "1",
            "--recon-levels", "0.01",
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["levels"]) == 7
    assert set(results["gradient"]["gaussian:0.1"]) == {
        "none", "gaussian", "pgla", "pgla-fixed", "pgla-cond", "pgla-cond-sr3"
    }  # fmt: skip
    assert set(results["reconstruction"]) == {"clean", "gaussian:0.01"}
    assert len(results["reconstruction"]["gaussian:0.01"]["none"]["per_victim"]["psnr"]) == 1
    assert {r["denoiser"] for r in results["timing"]} == {"pgla", "pgla-cond"}
    table = (out / "table.md").read_text()
    assert "where each denoiser stops helping" in table and "| pgla-cond |" in table
    assert "| gaussian:0.01 | pgla | " in table.split("gain over no denoising**")[1]
    assert (out / "gradient_denoising.png").exists()

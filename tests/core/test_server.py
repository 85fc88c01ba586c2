"""The server path end to end, in process (no Ray): run folder, determinism, failures."""

import json
import logging

import pytest
from safetensors.numpy import load_file

from fedlab.apps import fedavg
from fedlab.inprocess import run_in_process

SMALL = {"num-server-rounds": 2, "num-supernodes": 3, "local-epochs": 1, "model": "mlp",
         "device": "cpu"}  # fmt: skip


def run(tmp_path, name, **overrides):
    cfg = fedavg.resolve_config({**SMALL, **overrides, "out-dir": str(tmp_path / name)})
    return cfg, run_in_process(fedavg, cfg)


def metrics_only(history):
    return [{k: v for k, v in r.items() if k != "seconds" and "seconds" not in str(k)}
            | {"train": {k: v for k, v in r["train"].items() if "seconds" not in k}}
            for r in history]  # fmt: skip


def test_run_folder_contents(tmp_path):
    cfg, summary = run(tmp_path, "a")
    folder = tmp_path / "a"
    config = json.loads((folder / "config.json").read_text())
    assert config["app"] == "fedavg" and config["run-config"]["seed"] == 0
    assert "torch" in config["versions"] and config["run-config"]["model"] == "mlp"
    history = json.loads((folder / "history.json").read_text())
    assert [r["round"] for r in history] == [1, 2]
    assert all(r["replies"] == 3 and r["failures"] == 0 for r in history)
    assert {"loss", "accuracy"} <= set(history[-1]["evaluate"])
    assert "train-loss" in history[-1]["train"]
    weights = load_file(folder / "model.safetensors")
    assert weights and all(v.dtype.name == "float32" for v in weights.values())
    assert (folder / "history.png").stat().st_size > 1000
    assert summary["rounds-finished"] == 2 and summary["stopped-early"] is None


def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    run(tmp_path, "a", seed=7, **{"fraction-train": 0.67})
    run(tmp_path, "b", seed=7, **{"fraction-train": 0.67})
    run(tmp_path, "c", seed=8, **{"fraction-train": 0.67})
    hist = {n: json.loads((tmp_path / n / "history.json").read_text()) for n in "abc"}
    assert metrics_only(hist["a"]) == metrics_only(hist["b"])
    assert metrics_only(hist["a"]) != metrics_only(hist["c"])


def test_failing_client_is_counted_and_round_goes_on(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="fedlab"):
        _, summary = run(tmp_path, "a", **{"fail-partitions": "1", "min-replies": 2})
    history = json.loads((tmp_path / "a" / "history.json").read_text())
    assert [(r["replies"], r["failures"]) for r in history] == [(2, 1), (2, 1)]
    assert summary["stopped-early"] is None
    # the reason is logged, not only the count
    failed = [r.getMessage() for r in caplog.records if "clients failed" in r.getMessage()]
    assert len(failed) == 2 and all("first reason:" in m and len(m) > 60 for m in failed)


def test_too_few_replies_stops_cleanly_keeping_nothing_unfinished(tmp_path):
    _, summary = run(tmp_path, "a", **{"fail-partitions": "0,1", "min-replies": 2})
    assert summary["rounds-finished"] == 0
    assert "fewer than min-replies=2" in summary["stopped-early"]
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["rounds-finished"] == 0


def test_custom_strategy_by_module_path(tmp_path):
    _, summary = run(tmp_path, "a", strategy="flwr.serverapp.strategy:FedMedian")
    assert summary["rounds-finished"] == 2


@pytest.mark.parametrize("strategy", ["fedavgm", "fedprox", "fedadam"])
def test_registered_flower_strategies_run(tmp_path, strategy):
    _, summary = run(tmp_path, strategy, strategy=strategy, **{"num-server-rounds": 1})
    assert summary["final"]["evaluate"]["accuracy"] >= 0.0

"""End to end under Ray through the console script (slow tier: `pytest -m slow`)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def simulate(out: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [str(BIN / "flower-simulation"), "--app", "fedlab.apps:fedavg", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=out.parent,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def history(out: Path) -> list[dict]:
    return json.loads((out / "history.json").read_text())


def without_timings(hist):
    def strip(value):
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if "seconds" not in k}
        return value

    return [{k: strip(v) for k, v in r.items() if k != "seconds"} for r in hist]


def test_default_run_reaches_90_percent_and_writes_run_folder(tmp_path):
    out = tmp_path / "default"
    proc = simulate(out)
    assert f"run folder: {out}" in proc.stdout
    assert proc.stdout.count("round ") >= 10 and "done: 10/10 rounds" in proc.stdout
    hist = history(out)
    assert len(hist) == 10 and hist[-1]["evaluate"]["accuracy"] >= 0.90
    for name in ("config.json", "model.safetensors", "history.png", "summary.json"):
        assert (out / name).is_file(), name


@pytest.mark.extended  # 37 s; tests/core/test_server.py checks the same seed in process
def test_same_seed_twice_identical_metrics_under_ray(tmp_path):
    args = ["--seed", "3", "--run-config", "num-server-rounds=2", "fraction-train=0.5",
            "local-epochs=1"]  # fmt: skip
    simulate(tmp_path / "a", *args)
    simulate(tmp_path / "b", *args)
    assert without_timings(history(tmp_path / "a")) == without_timings(history(tmp_path / "b"))


def test_custom_strategy_from_tests_module_with_a_failing_client(tmp_path):
    """One Ray run for two claims: a user's strategy class loads by path, and a client that
    raises costs one reply, not the round."""
    out = tmp_path / "custom"
    simulate(out, "--num-supernodes", "4", "--run-config", "num-server-rounds=2",
             "strategy=tests.core.custom_strategy:MarkedFedAvg", "fail-partitions=2",
             "min-replies=3")  # fmt: skip
    hist = history(out)
    assert all(r["train"]["custom-strategy"] == 1.0 for r in hist)
    assert [(r["replies"], r["failures"]) for r in hist] == [(3, 1), (3, 1)]


@pytest.mark.extended  # 23 s; tests/core/test_server.py checks the same stop in process
def test_too_few_replies_stops_cleanly_under_ray(tmp_path):
    out = tmp_path / "stop"
    proc = simulate(out, "--num-supernodes", "3", "--run-config", "num-server-rounds=3",
                    "fail-partitions=0,1", "min-replies=2")  # fmt: skip
    assert "stopped early" in proc.stdout
    assert json.loads((out / "summary.json").read_text())["rounds-finished"] == 0


@pytest.mark.extended  # 32 s: the slow tier's budget is 12 minutes (issue 29)
@pytest.mark.skipif(shutil.which("ray", path=str(BIN)) is None, reason="ray CLI not installed")
def test_join_existing_ray_cluster_on_loopback(tmp_path):
    ray = str(BIN / "ray")
    env = {**os.environ, "RAY_ADDRESS": ""}
    subprocess.run([ray, "stop", "--force"], capture_output=True, env=env, timeout=60)
    start = subprocess.run(
        [ray, "start", "--head", "--node-ip-address=127.0.0.1", "--port=6390", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert start.returncode == 0, start.stderr
    try:
        out = tmp_path / "joined"
        simulate(out, "--num-supernodes", "3", "--ray-address", "127.0.0.1:6390",
                 "--run-config", "num-server-rounds=2")  # fmt: skip
        assert len(history(out)) == 2
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=env, timeout=60)


def test_record_traces_under_ray_then_fedlab_attack(tmp_path):
    out = tmp_path / "traced"
    simulate(out, "--num-supernodes", "3", "--run-config", "num-server-rounds=1",
             "model=lenet", "dataset=patches", "record-traces=true")  # fmt: skip
    attack_out = tmp_path / "attack"
    proc = subprocess.run(
        [str(BIN / "fedlab"), "attack", "--trace", str(out / "server-private" / "traces"),
         "--attack", "idlg", "--max-iterations", "20", "--out", str(attack_out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    targets = json.loads((attack_out / "results.json").read_text())["targets"]
    assert sorted(targets) == [f"round-1/client-{i}" for i in range(3)]
    assert all(t["status"] == "ok" and t["label_accuracy"] == 1.0 for t in targets.values())

"""Resuming a run from its checkpoints, in process: a crash right after round k's checkpoint,
then a resume with fresh clients (as after a restart), gives the uninterrupted run's history,
model and epsilons. Under Ray and SIGKILL: test_resume_slow.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict
from flwr.serverapp.strategy import FedAdam, FedAvgM
from flwr.serverapp.strategy.fedopt import FedOpt
from safetensors.numpy import load_file

from fedlab.apps import dpfedavg, fedavg, fedfoa
from fedlab.checkpoint import (
    FLOWER_STATE,
    Checkpointer,
    checkpoint_dir,
    checkpoint_path,
    latest_checkpoint,
    read_checkpoint,
    restore_strategy_state,
    strategy_state,
    write_checkpoint,
)
from fedlab.cli import flower_simulation_main
from fedlab.client_state import ClientStateStore
from fedlab.errors import FedlabError
from fedlab.inprocess import run_in_process


class Crash(BaseException):
    """Stands for the process dying: nothing in the run catches it."""


def crash_after(monkeypatch, crash_round: int) -> None:
    """The run dies right after checkpointing ``crash_round``, before publishing it."""
    write = Checkpointer.write

    def write_then_crash(self, server_round, *args, **kwargs):
        write(self, server_round, *args, **kwargs)
        if server_round == crash_round:
            raise Crash

    monkeypatch.setattr(Checkpointer, "write", write_then_crash)


def without_timings(value):
    """A history without its timing fields (they differ between any two runs)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def run_and_resume(spec, settings: dict, out: Path, monkeypatch, crash_round: int) -> None:
    config = spec.resolve_config(settings, {"out-dir": str(out)})
    with monkeypatch.context() as patch:
        crash_after(patch, crash_round)
        with pytest.raises(Crash):
            run_in_process(spec, config)
    assert len(json.loads((out / "history.json").read_text())) == crash_round - 1
    checkpoint = latest_checkpoint(out)
    assert checkpoint.round == crash_round
    run_in_process(spec, config, resume_from=checkpoint)


def assert_same_run(a: Path, b: Path) -> None:
    history_a = json.loads((a / "history.json").read_text())
    history_b = json.loads((b / "history.json").read_text())
    assert without_timings(history_a) == without_timings(history_b)
    model_a, model_b = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert model_a.keys() == model_b.keys()
    for key in model_a:
        np.testing.assert_array_equal(model_a[key], model_b[key])


FEDADAM = {"num-server-rounds": 4, "num-supernodes": 3, "local-epochs": 1, "model": "mlp",
           "strategy": "fedadam", "fraction-train": 0.67, "device": "cpu", "seed": 5}  # fmt: skip


def test_fedadam_crash_and_resume_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    run_in_process(fedavg, fedavg.resolve_config(FEDADAM, {"out-dir": str(tmp_path / "ref")}))
    run_and_resume(fedavg, FEDADAM, tmp_path / "resumed", monkeypatch, crash_round=2)
    assert_same_run(tmp_path / "ref", tmp_path / "resumed")
    summary = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert summary["resumes"] == [{"after-round": 2}]
    assert summary["checkpoint"]["rounds"] == 2 and summary["checkpoint"]["bytes"] > 0
    # A finished run keeps its last checkpoint only (what extending it needs).
    assert sorted(p.name for p in checkpoint_dir(tmp_path / "resumed").iterdir()) == [
        "round-000004.safetensors"
    ]


def test_flower_strategy_state_round_trips_through_a_checkpoint_file(tmp_path):
    momentum = FedAvgM(server_momentum=0.9)
    momentum.momentum_vector = [np.arange(3.0), np.ones((2, 2), np.float32)]
    momentum.current_arrays = ArrayRecord({"w": Array(np.zeros(3, np.float32))})
    adam = FedAdam()
    adam.m_t, adam.v_t = {"w": np.full(3, 0.5)}, {"w": np.full(3, 0.25)}
    for strategy, fresh in ((momentum, FedAvgM(server_momentum=0.9)), (adam, FedAdam())):
        path = checkpoint_path(tmp_path, 1)
        document = {"round": 1, "arrays": ArrayRecord(), "history": [], "private-history": [],
                    "strategy": strategy_state(strategy)}  # fmt: skip
        write_checkpoint(path, document)
        restore_strategy_state(fresh, read_checkpoint(path).document["strategy"], path)
        for name in FLOWER_STATE[FedAvgM if strategy is momentum else FedOpt]:
            before, after = getattr(strategy, name), getattr(fresh, name)
            if isinstance(before, ArrayRecord):
                before, after = before.to_numpy_ndarrays(), after.to_numpy_ndarrays()
            pairs = zip(before, after, strict=True) if isinstance(before, list) else \
                ((before[k], after[k]) for k in before)  # fmt: skip
            for x, y in pairs:
                np.testing.assert_array_equal(x, y)
                assert x.dtype == y.dtype
    with pytest.raises(FedlabError, match="FedAdam"):
        restore_strategy_state(FedAvgM(), read_checkpoint(path).document["strategy"], path)


FEDFOA = {"num-supernodes": 2, "num-server-rounds": 3, "local-steps": 2, "batch-size": 16,
          "encoders": "cnn:4,resnet:4", "probe-size": 200, "probe-every": 1,
          "device": "cpu"}  # fmt: skip


def test_fedfoa_private_models_come_back_from_the_client_state_store(tmp_path, monkeypatch):
    run_in_process(fedfoa, fedfoa.resolve_config(FEDFOA, {"out-dir": str(tmp_path / "ref")}))
    run_and_resume(fedfoa, FEDFOA, tmp_path / "resumed", monkeypatch, crash_round=2)
    assert_same_run(tmp_path / "ref", tmp_path / "resumed")
    store = ClientStateStore(tmp_path / "resumed" / "client-state")
    assert store.rounds(0) == [2, 3] and store.rounds(1) == [2, 3]


def test_fedfoa_without_its_client_state_differs(tmp_path, monkeypatch):
    """Positive control: the store is what makes the resume exact."""
    run_in_process(fedfoa, fedfoa.resolve_config(FEDFOA, {"out-dir": str(tmp_path / "ref")}))
    out = tmp_path / "amnesia"
    config = fedfoa.resolve_config(FEDFOA, {"out-dir": str(out)})
    with monkeypatch.context() as patch:
        crash_after(patch, 2)
        with pytest.raises(Crash):
            run_in_process(fedfoa, config)
    for file in (out / "client-state").rglob("*.safetensors"):
        file.unlink()
    run_in_process(fedfoa, config, resume_from=latest_checkpoint(out))
    a = json.loads((tmp_path / "ref" / "history.json").read_text())
    b = json.loads((out / "history.json").read_text())
    assert without_timings(a[:2]) == without_timings(b[:2])
    assert a[2]["evaluate"] != b[2]["evaluate"]


DP_ALL = {"num-server-rounds": 4, "num-supernodes": 4, "sample-rate": 0.5, "sampling": "fixed",
          "dp-mode": "central-server", "noise-multiplier": 1.2, "adaptive-clipping": True,
          "local-epsilon": 8.0, "dp-accounted": "central", "dp-sgd": True,
          "dp-seeded-noise": True, "local-epochs": 1, "device": "cpu", "seed": 2}  # fmt: skip
#: Under local noise the clients release nothing but the mechanism's public figures, so the
#: DP-SGD (sample-level) epsilon is checked from the clients' own ledgers (client_ledgers).
EPSILONS = ("dp-client-epsilon", "dp-local-epsilon-total-max", "dp-clip-norm")


def client_ledgers(run: Path) -> dict[int, dict]:
    """Each client's privacy ledgers (``dp-*`` records of its newest state) and the DP-SGD
    epsilon its Opacus accountant gives."""
    from opacus.accountants import RDPAccountant

    store = ClientStateStore(run / "client-state")
    out = {}
    for folder in sorted((run / "client-state").iterdir()):
        if not folder.is_dir():
            continue
        client = int(folder.name)
        state = store.load(client, before_round=10**6)
        ledgers = {k: dict(v) for k, v in state.items() if k.startswith("dp-")}
        sgd = ledgers["dp-sgd-accountant"]
        accountant = RDPAccountant()
        accountant.history = list(zip(sgd["noise-multipliers"], sgd["sample-rates"],
                                      sgd["steps"], strict=True))  # fmt: skip
        out[client] = {**ledgers, "sample-epsilon": accountant.get_epsilon(1e-5)}
    return out


def test_dp_run_resumed_reports_the_uninterrupted_epsilons(tmp_path, monkeypatch):
    """Central DP with adaptive clipping, local noise and DP-SGD at once: the server's
    accountant, the adaptive clip norm and both client-side ledgers continue exactly."""
    run_in_process(dpfedavg, dpfedavg.resolve_config(DP_ALL, {"out-dir": str(tmp_path / "ref")}))
    run_and_resume(dpfedavg, DP_ALL, tmp_path / "resumed", monkeypatch, crash_round=3)
    for name in ("history.json", "server-private/rounds.json"):
        a = json.loads((tmp_path / "ref" / name).read_text())
        b = json.loads((tmp_path / "resumed" / name).read_text())
        assert without_timings(a) == without_timings(b), name
    rounds = json.loads((tmp_path / "resumed" / "server-private" / "rounds.json").read_text())
    final = rounds[-1]["train"]
    assert all(final[key] > 0 for key in EPSILONS), final
    ledgers = client_ledgers(tmp_path / "resumed")
    assert ledgers == client_ledgers(tmp_path / "ref")
    assert len(ledgers) >= 2 and all(c["sample-epsilon"] > 0 for c in ledgers.values())
    assert max(c["dp-local"]["releases"] for c in ledgers.values()) >= 2
    released = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert "resumes" not in released and "checkpoint" not in released  # server-private
    private = json.loads((tmp_path / "resumed" / "server-private" / "summary.json").read_text())
    assert private["resumes"] == [{"after-round": 3}]


def test_local_dp_run_resumed_reports_the_uninterrupted_epsilons(tmp_path, monkeypatch):
    settings = {"num-server-rounds": 4, "num-supernodes": 4, "sample-rate": 0.5,
                "sampling": "fixed", "dp-mode": "local", "local-epsilon": 4.0, "clip-norm": 0.5,
                "dp-seeded-noise": True, "local-epochs": 1, "device": "cpu", "seed": 3}  # fmt: skip
    run_in_process(dpfedavg, dpfedavg.resolve_config(settings, {"out-dir": str(tmp_path / "ref")}))
    run_and_resume(dpfedavg, settings, tmp_path / "resumed", monkeypatch, crash_round=2)
    a = json.loads((tmp_path / "ref" / "history.json").read_text())
    b = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert without_timings(a) == without_timings(b)
    assert b[-1]["train"]["dp-local-epsilon-total-max"] >= 8.0  # some client released twice
    store_a = ClientStateStore(tmp_path / "ref" / "client-state")
    store_b = ClientStateStore(tmp_path / "resumed" / "client-state")
    for client in range(4):
        ledger_a, ledger_b = store_a.load(client, 10), store_b.load(client, 10)
        assert (ledger_a is None) == (ledger_b is None)
        if ledger_a is not None:
            assert dict(ledger_a["dp-local"]) == dict(ledger_b["dp-local"])


def test_a_reply_in_flight_counts_as_released_but_the_model_rolls_back(tmp_path):
    store = ClientStateStore(tmp_path)
    for server_round in (1, 3, 4):  # round 4 was in flight when the run stopped after round 3
        state = RecordDict({
            "model": ArrayRecord({"w": Array(np.full(2, float(server_round), np.float32))}),
            "dp-local": ConfigRecord({"releases": server_round}),
        })  # fmt: skip
        store.save(7, server_round, state)
    assert store.rounds(7) == [3, 4]  # at most two kept
    assert store.roll_back(3) == 1
    assert store.rounds(7) == [3]
    state = store.load(7, before_round=4)
    np.testing.assert_array_equal(state["model"]["w"].numpy(), [3.0, 3.0])
    assert state["dp-local"]["releases"] == 4


def finished_run(tmp_path: Path, **settings) -> Path:
    out = tmp_path / "run"
    config = fedavg.resolve_config(
        {**FEDADAM, "num-server-rounds": 2, **settings}, {"out-dir": str(out)}
    )
    run_in_process(fedavg, config)
    launch = {"app-reference": "fedlab.apps:fedavg", "app-dir": str(tmp_path)}
    recorded = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**recorded, **launch}))
    return out


@pytest.fixture(autouse=True)
def fedlab_logger_kept():
    """flower_simulation_main points fedlab's logger at the (captured) stdout: put it back."""
    logger = logging.getLogger("fedlab")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    # An earlier test's call may have left it on a stream pytest has closed since.
    logger.handlers[:], logger.propagate = [], True
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def refusal(capsys, *argv: str) -> str:
    assert flower_simulation_main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_resume_refuses_a_changed_key_and_names_it(tmp_path, capsys):
    out = finished_run(tmp_path)
    err = refusal(capsys, "--resume", str(out), "--run-config", "num-server-rounds=3", "lr=0.5")
    assert "lr changed" in err and "num-server-rounds may change" in err
    err = refusal(capsys, "--resume", str(out), "--seed", "9")
    assert "seed changed" in err
    err = refusal(capsys, "--resume", str(out), "--app", "fedlab.apps:dpfedavg")
    assert "'dpfedavg'" in err and "'fedavg'" in err


def test_resume_of_a_finished_run_needs_more_rounds(tmp_path, capsys):
    out = finished_run(tmp_path)
    assert "nothing to resume" in refusal(capsys, "--resume", str(out))
    err = refusal(capsys, "--resume", str(out), "--run-config", "num-server-rounds=1")
    assert "below the 2 rounds" in err


def test_a_corrupt_or_missing_checkpoint_is_one_line_naming_the_file(tmp_path, capsys):
    out = finished_run(tmp_path)
    path = checkpoint_path(out, 2)
    path.write_bytes(path.read_bytes()[:200])
    err = refusal(capsys, "--resume", str(out), "--run-config", "num-server-rounds=3")
    assert str(path) in err and "unreadable" in err
    path.unlink()
    err = refusal(capsys, "--resume", str(out), "--run-config", "num-server-rounds=3")
    assert "no checkpoint" in err and str(checkpoint_dir(out)) in err
    err = refusal(capsys, "--resume", str(tmp_path / "nowhere"))
    assert "not a folder" in err


def test_a_checkpoint_renamed_to_another_round_is_refused(tmp_path):
    out = finished_run(tmp_path)
    wrong = checkpoint_path(out, 5)
    checkpoint_path(out, 2).rename(wrong)
    with pytest.raises(FedlabError, match="holds round 2"):
        read_checkpoint(wrong)


def test_extending_a_schedule_fixed_by_the_rounds_is_refused():
    derived = dpfedavg.resolve_config({"target-epsilon": 5.0, "noise-multiplier": 0.0})
    assert "target-epsilon" in derived.rounds_schedule()
    assert dpfedavg.resolve_config({"noise-multiplier": 1.0}).rounds_schedule() is None
    ramp = fedfoa.resolve_config({"fedfoa-schedule": "ramp"})
    assert "ramp" in ramp.rounds_schedule()
    assert fedavg.resolve_config({}).rounds_schedule() is None


def test_resuming_with_another_fedlab_version_warns(tmp_path, caplog):
    from fedlab.resume import plan_resume

    out = finished_run(tmp_path)
    recorded = json.loads((out / "config.json").read_text())
    recorded["versions"]["fedlab"] = "0.0.1"
    with caplog.at_level(logging.WARNING, logger="fedlab"):
        plan = plan_resume(out, recorded, fedavg, {"num-server-rounds": 3})
    assert plan.checkpoint.round == 2 and plan.config.num_server_rounds == 3
    assert "started with fedlab 0.0.1" in caplog.text


def test_a_checkpoint_never_chooses_which_strategy_attributes_are_set(tmp_path):
    path = checkpoint_path(tmp_path, 1)
    state = [{"class": "FedAdam", "state": {"m_t": None, "v_t": None, "eta": 1e9}}]
    fresh = FedAdam()
    restore_strategy_state(fresh, state, path)
    assert fresh.eta == FedAdam().eta  # not in FLOWER_STATE: ignored
    with pytest.raises(FedlabError, match="no usable state for FedAdam"):
        restore_strategy_state(FedAdam(), [{"class": "FedAdam", "state": {"m_t": None}}], path)

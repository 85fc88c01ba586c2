"""The ZSL run config, workloads as federated clients, and the apps under flower-simulation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from fedlab.clients.zsl.app import zsl_ar2, zsl_evaluation, zsl_parsnets
from fedlab.clients.zsl.config import Ar2Config, ParsNetsConfig, ZslConfig
from flwr.app import ArrayRecord

from fedlab.errors import FedlabError
from fedlab.workload import build_workload


def test_config_refuses_bad_values():
    with pytest.raises(FedlabError, match="zsl-dataset 'cub' is not one of: shapes, digits"):
        ZslConfig.from_mapping({"zsl-dataset": "cub"})
    with pytest.raises(FedlabError, match="parsnets-topk 5 exceeds parsnets-bases 4"):
        ParsNetsConfig.from_mapping({"parsnets-topk": 5})
    with pytest.raises(FedlabError, match="ar2-ema must lie in"):
        Ar2Config.from_mapping({"ar2-ema": 1.0})
    with pytest.raises(FedlabError, match="zsl-validation-classes must be >= 0"):
        ZslConfig.from_mapping({"zsl-validation-classes": -1})


def test_the_validation_key_trains_on_seen_classes_only():
    real = build_workload(zsl_parsnets.resolve_config())
    tuning = build_workload(zsl_parsnets.resolve_config({"zsl-validation-classes": 2}))
    assert len(tuning.data.unseen) == 2 and set(tuning.data.unseen) <= set(real.data.seen)
    assert set(tuning.data.trainval) <= set(real.data.trainval)
    assert not set(real.data.unseen) & set(tuning.data.labels[tuning.data.trainval])


def test_ar2_phase_follows_the_round():
    config = zsl_ar2.resolve_config()
    assert [config.phase(r) for r in (1, 2, 3)] == ["pretrain", "pretrain", "finetune"]
    assert config.replace(ar2_phase="finetune").phase(1) == "finetune"


def test_clients_hold_disjoint_seen_classes():
    workload = build_workload(zsl_parsnets.resolve_config())
    parts = [workload.partition(p, 4) for p in range(4)]
    labels = workload.data.labels
    held = [set(labels[p]) for p in parts]
    assert all(not (a & b) for i, a in enumerate(held) for b in held[i + 1 :])
    assert set().union(*held) == set(workload.data.seen)
    assert sorted(np.concatenate(parts)) == sorted(workload.data.trainval)
    batch = workload.client_dataset(0, 4)
    assert batch.inputs.shape[1] == 384


def test_server_evaluation_reports_t1_and_h():
    workload = build_workload(zsl_parsnets.resolve_config())
    torch.manual_seed(0)
    arrays = ArrayRecord(workload.build_model().state_dict())
    metrics = zsl_evaluation(workload)(1, arrays)
    assert set(metrics) == {"T1", "acc-s", "acc-u", "H", "AUSUC"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())


@pytest.mark.extended  # the ZSL apps run in process in the fast tier
@pytest.mark.parametrize("app", ["zsl_parsnets", "zsl_ar2"])
def test_app_runs_under_flower_simulation(tmp_path, app):
    rounds = 3
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-c", "from fedlab.cli import flower_simulation_main as m; "
           "raise SystemExit(m())", "--app", f"fedlab.apps:{app}", "--out", str(tmp_path),
           "--run-config", f"num-server-rounds={rounds}"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    history = json.loads((tmp_path / "history.json").read_text())
    assert [r["round"] for r in history] == list(range(1, rounds + 1))
    for record in history:
        assert {"T1", "H", "acc-s", "acc-u"} <= set(record["evaluate"])
        assert record["replies"] == 4

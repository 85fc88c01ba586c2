"""record-traces through the fedavg app, then iDLG's label recovery on every recorded update."""

import pytest
from fedlab.attacks.base import labels_from_weight_gradient

from fedlab.apps import fedavg
from fedlab.errors import FedlabError
from fedlab.inprocess import run_in_process
from fedlab.traces import TraceReader


def test_idlg_recovers_every_label_of_single_image_fedsgd_traces(tmp_path):
    cfg = fedavg.resolve_config({
        "num-server-rounds": 2, "num-supernodes": 4, "model": "lenet", "dataset": "patches",
        "record-traces": True, "trace-rounds": "1,2", "trace-batch-size": 1,
        "out-dir": str(tmp_path / "run"), "device": "cpu", "seed": 5,
    })  # fmt: skip
    assert run_in_process(fedavg, cfg)["rounds-finished"] == 2
    reader = TraceReader(tmp_path / "run" / "server-private" / "traces")
    records = reader.select()
    assert len(records) == 8  # 2 rounds x 4 clients
    for record in records:
        inp = reader.attack_input(record)
        assert inp.local_steps == 1 and inp.lr == pytest.approx(cfg.lr)
        grads = inp.target_gradients()
        predicted = labels_from_weight_gradient(grads[-2], batch_size=1)
        _, labels = reader.ground_truth(record)
        assert predicted.tolist() == labels.tolist(), record.target_id


def test_workload_without_model_spec_cannot_record(tmp_path):
    from fedlab.workload import Workload

    class Bare(Workload):
        build_model = client_dataset = test_dataset = step = None

    with pytest.raises(FedlabError, match="has no model spec"):
        Bare(fedavg.resolve_config()).model_spec()


def test_dpfedavg_local_dp_traces_carry_the_mechanism(tmp_path):
    from fedlab.apps import dpfedavg

    cfg = dpfedavg.resolve_config({
        "num-server-rounds": 1, "num-supernodes": 10, "sample-rate": 0.3, "model": "lenet",
        "sampling": "fixed",  # Poisson draws from os.urandom and picks nobody 2.8% of the time
        "dataset": "patches", "record-traces": True, "out-dir": str(tmp_path / "run"),
        "device": "cpu", "dp-mode": "local", "local-epsilon": 8.0, "clip-norm": 1.0,
    })  # fmt: skip
    assert run_in_process(dpfedavg, cfg)["rounds-finished"] == 1
    records = TraceReader(tmp_path / "run" / "server-private" / "traces").select()
    assert records
    for record in records:
        assert record.dp["mechanism"] == "local" and record.dp["noise"] == "gaussian"
        assert record.dp["epsilon"] == 8.0 and record.dp["clip-norm"] == 1.0
        assert record.dp["noise-std"] > 0

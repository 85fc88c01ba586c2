"""A client population larger than the workers: sampling over N as the accountant assumes, data
by client id, state per client id and never per worker (in process)."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict

from fedlab.apps import dpfedavg
from fedlab.client_state import client_state_mod
from fedlab.errors import FedlabError
from fedlab.inprocess import run_in_process
from fedlab.population import VIRTUAL_CLIENTS, PopulationGrid, population_mod

SYNTHETIC = {"dataset": "synthetic", "num-supernodes": 3, "device": "cpu", "lr": 0.05,
             "clip-norm": 1.0, "seed": 1}  # fmt: skip


def test_poisson_sampling_over_the_population_has_the_accounted_rate(tmp_path):
    population, rate, rounds = 2000, 0.005, 12
    config = dpfedavg.resolve_config(SYNTHETIC, {
        "population": population, "sample-rate": rate, "num-server-rounds": rounds,
        "dp-mode": "central-server", "noise-multiplier": 1.0, "out-dir": str(tmp_path),
    })  # fmt: skip
    run_in_process(dpfedavg, config)
    records = json.loads((tmp_path / "server-private" / "rounds.json").read_text())
    sampled = sum(r["sampled"] for r in records)
    assert sum(r["replies"] for r in records) == sampled  # three workers served them all
    n = population * rounds
    mean, sd = n * rate, math.sqrt(n * rate * (1 - rate))
    assert abs(sampled - mean) < 4 * sd, (sampled, mean, sd)
    assert records[-1]["train"]["dp-client-epsilon"] > 0


def test_the_same_client_id_gets_the_same_data_whatever_the_population():
    from fedlab.clients.dpfedavg.synthetic import SyntheticWorkload

    small = SyntheticWorkload(dpfedavg.resolve_config(SYNTHETIC, {"population": 100}))
    large = SyntheticWorkload(dpfedavg.resolve_config(SYNTHETIC, {"population": 10**6}))
    a, b = small.client_dataset(42, 100), large.client_dataset(42, 10**6)
    assert torch_equal(a.features, b.features) and torch_equal(a.labels, b.labels)
    assert len(small.test_dataset()) == len(large.test_dataset())
    with pytest.raises(FedlabError, match="outside the population"):
        small.client_dataset(100, 100)


def torch_equal(a, b) -> bool:
    return bool(np.array_equal(a.numpy(), b.numpy()))


def bundle(ids: list[int], server_round: int, population: int = 10) -> Message:
    content = RecordDict({
        "config": ConfigRecord({"server-round": server_round}),
        VIRTUAL_CLIENTS: ConfigRecord({"client-ids": ids, "population": population}),
    })  # fmt: skip
    return Message(content, message_type=MessageType.TRAIN, dst_node_id=7)


def test_a_worker_never_carries_one_clients_state_into_another(tmp_path):
    seen: list[tuple[int, list[int]]] = []

    def handler(msg: Message, context: Context) -> Message:
        client = int(context.node_config["partition-id"])
        history = list(context.state["mine"]["rounds"]) if "mine" in context.state else []
        owners = {int(context.state["mine"]["id"])} if "mine" in context.state else set()
        assert owners <= {client}, (client, owners)
        seen.append((client, history))
        round_ = int(msg.content["config"]["server-round"])
        context.state["mine"] = ConfigRecord({"id": client, "rounds": [*history, round_]})
        if client == 4:
            raise RuntimeError("client 4 fails on purpose")
        return Message(RecordDict({"metrics": MetricRecord({"id": client})}), reply_to=msg)

    state_mod = client_state_mod(str(tmp_path), lambda c: c.node_config["partition-id"])
    worker = Context(run_id=1, node_id=7, node_config={"partition-id": 0, "num-partitions": 3},
                     state=RecordDict(), run_config={})  # fmt: skip

    def call(msg: Message) -> Message:
        return population_mod(msg, worker, lambda m, c: state_mod(m, c, handler))

    reply = call(bundle([1, 2, 4], server_round=1))
    assert reply.content["0/metrics"]["id"] == 1 and reply.content["1/metrics"]["id"] == 2
    assert "2/virtual-error" in reply.content  # client 4's failure is its own
    call(bundle([2, 1], server_round=2))
    assert seen == [(1, []), (2, []), (4, []), (2, [1]), (1, [1])]
    assert not worker.state  # the worker's own context holds nobody's state


class EchoGrid:
    """A real grid stand-in: two workers that answer bundles through population_mod."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def get_node_ids(self) -> list[int]:
        return [101, 102]

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for msg in messages:
            self.sent.append(msg)
            context = Context(run_id=1, node_id=msg.metadata.dst_node_id,
                              node_config={"partition-id": 0, "num-partitions": 2},
                              state=RecordDict(), run_config={})  # fmt: skip
            replies.append(population_mod(msg, context, echo))
        return replies


def echo(msg: Message, context: Context) -> Message:
    client = int(context.node_config["partition-id"])
    return Message(RecordDict({"metrics": MetricRecord({"client": client})}), reply_to=msg)


def test_the_grid_sends_one_bundle_per_worker_and_returns_one_reply_per_client():
    grid = PopulationGrid(EchoGrid(), population=1000)
    assert len(grid.get_node_ids()) == 1000
    shared = RecordDict({"config": ConfigRecord({"server-round": 1})})
    messages = [Message(shared, message_type=MessageType.TRAIN, dst_node_id=k)
                for k in (5, 999, 17, 300, 2)]  # fmt: skip
    replies = grid.send_and_receive(messages)
    assert len(grid._grid.sent) == 2  # one bundle per worker, not one message per client
    assert sorted(r.metadata.src_node_id for r in replies) == [2, 5, 17, 300, 999]
    for reply in replies:
        assert reply.content["metrics"]["client"] == reply.metadata.src_node_id
    with pytest.raises(FedlabError, match="outside the population"):
        grid.send_and_receive([Message(shared, message_type=MessageType.TRAIN, dst_node_id=1000)])


def test_population_mode_needs_a_run_folder_for_client_state():
    config = dpfedavg.resolve_config(SYNTHETIC, {"population": 100})
    with pytest.raises(FedlabError, match="out-dir"):
        dpfedavg.client_app(config)


def test_the_pre_ray_check_samples_over_the_population_not_the_workers(capsys):
    from fedlab.cli import flower_simulation_main

    logger = logging.getLogger("fedlab")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    keys = ["dataset=synthetic", "population=10000", "sample-rate=0.01"]
    argv = ["--app", "fedlab.apps:dpfedavg", "--num-supernodes", "10", "--check",
            "--run-config", *keys]  # fmt: skip
    try:
        assert flower_simulation_main(argv) == 0, capsys.readouterr().err
    finally:  # it points fedlab's logger at the captured stdout
        logger.handlers[:], logger.level, logger.propagate = saved
    assert "pre-Ray check passed" in capsys.readouterr().out


def test_traces_record_population_clients_by_their_ids(tmp_path):
    from fedlab.traces import TraceReader

    config = dpfedavg.resolve_config({
        "num-supernodes": 2, "population": 12, "sample-rate": 0.25, "sampling": "fixed",
        "dp-mode": "none", "num-server-rounds": 1, "record-traces": True, "trace-batch-size": 2,
        "device": "cpu", "seed": 3, "out-dir": str(tmp_path),
    })  # fmt: skip
    run_in_process(dpfedavg, config)
    records = TraceReader(tmp_path / "server-private" / "traces").records
    clients = sorted(r.client for r in records)
    assert len(clients) == 3 and len(set(clients)) == 3 and max(clients) < 12
    assert any(c >= 2 for c in clients)  # ids of the population, not of the two workers

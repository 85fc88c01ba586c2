"""What DP-FedAvg must never do: predictable noise, non-mean aggregators under central DP,
skipped DP-SGD draws, values released in clear under local DP, NaN accepted or aggregated."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from dp_helpers import Grid, arrays, as_numpy, context, reply
from fedlab.clients.dpfedavg.app import build_dp_strategy
from fedlab.clients.dpfedavg.dpsgd import DPSGDSession
from fedlab.strategies.dp_central import CentralDPClientSideClipping, CentralDPServerSideClipping
from fedlab.strategies.dp_mods import LocalDpClipNoiseMod
from fedlab.strategies.dp_noise import SEEDED_NOISE_WARNING, NoiseSource
from fedlab.strategies.dp_sampling import ClientSampler
from fedlab.strategies.dp_wrapper import ClientSampling, dp_record, inner_kwargs
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import (
    Bulyan,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    MultiKrum,
    QFedAvg,
)
from torch import nn
from torch.utils.data import TensorDataset

from fedlab.apps import dpfedavg
from fedlab.errors import FedlabError
from fedlab.run_folder import RunFolder
from fedlab.server import CLIENT_INFO, RoundRecorder
from fedlab.training import TrainConfig, train

NODES = list(range(100))


def _train_message(values, server_round=1):
    content = RecordDict({"arrays": arrays(values),
                          "config": ConfigRecord({"server-round": server_round})})  # fmt: skip
    return Message(content=content, dst_node_id=0, message_type="train")


def _local(source=None):
    return LocalDpClipNoiseMod(clip_norm=1.0, epsilon=4.0, source=source or NoiseSource())


def _local_noise(mod, ctx, server_round=1):
    g = {"w": np.zeros(1000)}
    out = mod(_train_message(g, server_round), ctx, lambda m, c: reply(g))
    return as_numpy(out.content["arrays"])["w"]


# -- noise the server cannot predict ----------------------------------------------------------
def test_local_dp_noise_differs_between_runs_with_the_same_seed():
    first = _local_noise(_local(), context(pid=3))
    second = _local_noise(_local(), context(pid=3))
    assert not np.allclose(first, second)


def test_seeded_noise_reproduces_only_when_asked_and_never_repeats_for_a_repeated_round():
    seeded = NoiseSource(seeded=True, seed=7)
    a = _local_noise(_local(seeded), context(pid=3))
    b = _local_noise(_local(seeded), context(pid=3))
    np.testing.assert_array_equal(a, b)
    ctx = context(pid=3)
    once = _local_noise(_local(seeded), ctx, server_round=5)
    again = _local_noise(_local(seeded), ctx, server_round=5)  # the server resends round 5
    assert not np.allclose(once, again)


def test_central_noise_and_the_client_sample_are_not_derived_from_the_seed():
    def one_round():
        sampler = ClientSampler("poisson", 0.1, 100, seed=0, source=NoiseSource())
        strategy = CentralDPServerSideClipping(FedAvg(**inner_kwargs()), sampler, clip_norm=1.0,
                                               noise_multiplier=1.0)  # fmt: skip
        g = {"w": np.zeros(64)}
        messages = list(strategy.configure_train(1, arrays(g), ConfigRecord(), Grid(NODES)))
        agg, _ = strategy.aggregate_train(1, [reply(g) for _ in messages])
        return as_numpy(agg)["w"]

    assert not np.allclose(one_round(), one_round())
    samples = [ClientSampler("fixed", 0.1, 100, source=NoiseSource()).sample(NODES, 1)
               for _ in range(3)]  # fmt: skip
    assert len({tuple(s) for s in samples}) > 1


def test_the_app_draws_from_os_entropy_unless_seeded_noise_is_named(tmp_path):
    config = dpfedavg.resolve_config({"dp-mode": "central-server"})
    strategy = build_dp_strategy(config, 100)
    assert strategy.noise == NoiseSource() and strategy.sampler.source == NoiseSource()
    assert config.warnings() == []
    seeded = dpfedavg.resolve_config({"dp-mode": "local", "local-epsilon": 8.0,
                                      "dp-seeded-noise": True})  # fmt: skip
    assert seeded.noise_source() == NoiseSource(seeded=True, seed=seeded.seed)
    folder = RunFolder(tmp_path)
    folder.write_config("dpfedavg", seeded.to_mapping(), seeded.seed, seeded.warnings())
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["warnings"] == [SEEDED_NOISE_WARNING]


def test_opacus_noise_differs_between_sessions_with_the_same_seed():
    def trained():
        session = DPSGDSession(context(), noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)
        torch.manual_seed(0)
        model = nn.Linear(6, 2)
        train(model, _data(32), _step, TrainConfig(steps=2, batch_size=8, lr=0.1, momentum=0.0),
              seed=0, prepare=session.prepare)  # fmt: skip
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert not torch.allclose(trained(), trained())


# -- central DP wraps only means --------------------------------------------------------------
@pytest.mark.parametrize(
    "inner",
    [
        MultiKrum(**inner_kwargs()),
        Bulyan(**inner_kwargs()),
        QFedAvg(client_learning_rate=0.1, **inner_kwargs()),
        FedMedian(**inner_kwargs()),
        FedTrimmedAvg(**inner_kwargs()),
        Krum(**inner_kwargs()),
    ],
    ids=lambda s: type(s).__name__,
)
def test_central_dp_refuses_aggregators_that_are_not_a_mean(inner):
    with pytest.raises(FedlabError, match=f"{type(inner).__name__} is not known to aggregate"):
        CentralDPServerSideClipping(inner, ClientSampler("fixed", 0.1, 100), clip_norm=1.0,
                                    noise_multiplier=1.0)  # fmt: skip


@pytest.mark.parametrize("cls", [FedAvg, FedAvgM, FedProx, FedAdam, FedYogi, FedAdagrad])
def test_central_dp_accepts_the_mean_family(cls):
    kwargs = {"proximal_mu": 0.1} if cls is FedProx else {}
    CentralDPServerSideClipping(cls(**inner_kwargs(), **kwargs), ClientSampler("fixed", 0.1, 100),
                                clip_norm=1.0, noise_multiplier=1.0)  # fmt: skip


def test_a_users_strategy_must_declare_itself_a_mean():
    class Mine(FedAvg):
        pass

    class MyMean(FedAvg):
        dp_mean_aggregation = True

    sampler = ClientSampler("fixed", 0.1, 100)
    with pytest.raises(FedlabError, match="dp_mean_aggregation = True"):
        CentralDPServerSideClipping(Mine(**inner_kwargs()), sampler, clip_norm=1.0,
                                    noise_multiplier=1.0)  # fmt: skip
    CentralDPServerSideClipping(MyMean(**inner_kwargs()), sampler, clip_norm=1.0,
                                noise_multiplier=1.0)  # fmt: skip


# -- DP-SGD takes a step on every Poisson draw ------------------------------------------------
def _data(n):
    x = torch.randn(n, 6, generator=torch.Generator().manual_seed(0))
    return TensorDataset(x, (x[:, 0] > 0).long())


def _step(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y), {}


class _CountingLoader:
    def __init__(self, loader):
        self.loader, self.draws, self.empty = loader, 0, 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            self.draws += 1
            self.empty += len(batch[0]) == 0
            yield batch


def test_an_empty_poisson_batch_steps_the_accountant_and_adds_noise():
    """4 examples, batch 1: q = 1/4, so about a third of the draws are empty."""
    session = DPSGDSession(context(), noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5,
                           source=NoiseSource(seeded=True, seed=1))  # fmt: skip
    counted: list[_CountingLoader] = []

    def prepare(model, optimizer, loader):
        model, optimizer, loader = session.prepare(model, optimizer, loader)
        counted.append(_CountingLoader(loader))
        return model, optimizer, counted[-1]

    result = train(nn.Linear(6, 2), _data(4), _step,
                   TrainConfig(epochs=10, batch_size=1, lr=0.1, momentum=0.0),
                   prepare=prepare)  # fmt: skip
    loader = counted[0]
    assert loader.empty > 0
    steps = sum(h[2] for h in session.engine.accountant.history)
    assert steps == loader.draws == result.steps == 40
    assert np.isfinite(result.metrics["loss"])


# -- local DP releases nothing in clear -------------------------------------------------------
def test_a_local_dp_reply_carries_only_noised_floats_and_public_values():
    sent = ArrayRecord({"w": Array(np.zeros(8, np.float32)),
                        "bn.num_batches_tracked": Array(np.array(3, np.int64))})  # fmt: skip
    msg = Message(RecordDict({"arrays": sent, "config": ConfigRecord({"server-round": 1})}),
                  dst_node_id=0, message_type="train")  # fmt: skip

    def trained(m, c):
        counter = Array(np.array(40, np.int64))
        weights = Array(np.ones(8, np.float32))
        arrays_ = ArrayRecord({"w": weights, "bn.num_batches_tracked": counter})
        content = RecordDict({
            "arrays": arrays_,
            "metrics": MetricRecord({"num-examples": 137, "train-loss": 0.3, "train-acc": 0.9,
                                     "train-seconds": 1.2, "dp-sample-epsilon": 2.0}),
            CLIENT_INFO: ConfigRecord({"partition-id": 3, "lr": 0.1, "local-steps": 9,
                                       "batch-size": 16}),
        })  # fmt: skip
        return Message(content, reply_to=m)

    out = _local()(msg, context(pid=3), trained)
    metrics = dict(out.content["metrics"])
    assert metrics["num-examples"] == 1
    assert set(metrics) == {"num-examples", "dp-clip-norm", "dp-noise-std", "dp-epsilon",
                            "dp-delta"}  # fmt: skip
    assert list(out.content.metric_records) == ["metrics"]
    assert dict(out.content[CLIENT_INFO]) == {"partition-id": 3}
    assert int(out.content["arrays"]["bn.num_batches_tracked"].numpy()) == 3  # the server's


# -- NaN and Inf ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "values",
    [
        {"lr": float("nan")},
        {"clip-norm": float("inf")},
        {"noise-multiplier": float("nan")},
        {"dp-mode": "local", "local-epsilon": float("inf")},
        {"target-epsilon": float("nan"), "noise-multiplier": 0.0},
        {"delta": float("nan")},
        {"seed": -1},
    ],
)
def test_non_finite_or_negative_values_are_refused(values):
    with pytest.raises(FedlabError, match="finite|seed must lie in") as info:
        dpfedavg.resolve_config(values)
    assert "\n" not in str(info.value)


def test_nan_in_an_override_string_is_refused():
    from fedlab.config import parse_override

    key, value = parse_override("lr=nan")
    with pytest.raises(FedlabError, match="'lr' must be a finite number"):
        dpfedavg.resolve_config({key: value})


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("cls", [CentralDPServerSideClipping, CentralDPClientSideClipping])
def test_a_non_finite_update_is_a_failed_reply_under_central_dp(cls, bad):
    strategy = cls(FedAvg(**inner_kwargs()), ClientSampler("fixed", 0.5, 4), clip_norm=1.0,
                   noise_multiplier=1e-9)  # fmt: skip
    g = {"w": np.zeros(3)}
    list(strategy.configure_train(1, arrays(g), ConfigRecord(), Grid([0, 1, 2, 3])))
    dp = {"dp": dp_record({"mechanism": "central-client-clipping", "unclipped": 1})}
    good = reply({"w": np.full(3, 0.5)}, **dp)
    broken = reply({"w": np.array([0.1, bad, 0.1])}, **dp)
    agg, _ = strategy.aggregate_train(1, [good, broken])
    np.testing.assert_allclose(as_numpy(agg)["w"], np.full(3, 0.25), atol=1e-6)  # 0.5 / m=2


def test_the_round_recorder_counts_a_non_finite_reply_as_failed(tmp_path):
    recorder = RoundRecorder(FedAvg(fraction_train=1.0, min_train_nodes=2, min_available_nodes=2),
                             RunFolder(tmp_path), min_replies=1, num_rounds=1)  # fmt: skip
    list(recorder.configure_train(1, arrays({"w": np.zeros(2)}), ConfigRecord(), Grid([0, 1])))
    good = reply({"w": np.ones(2)})
    broken = reply({"w": np.ones(2)})
    broken.content["metrics"]["train-loss"] = float("nan")
    agg, _ = recorder.aggregate_train(1, [good, broken])
    np.testing.assert_allclose(as_numpy(agg)["w"], np.ones(2))
    assert recorder._round["replies"] == 1 and recorder._round["failures"] == 1


class _DrawsNobody(ClientSampler):
    def sample(self, node_ids, server_round):
        return []  # what Poisson sampling does with probability (1 - q)^N


def test_a_round_that_samples_nobody_releases_noise_and_is_accounted(tmp_path):
    strategy = CentralDPServerSideClipping(
        FedAvg(**inner_kwargs()), _DrawsNobody("poisson", 0.1, 100, source=NoiseSource()),
        clip_norm=1.0, noise_multiplier=1.0,
    )  # fmt: skip
    recorder = RoundRecorder(strategy, RunFolder(tmp_path), min_replies=1, num_rounds=1)
    g = {"w": np.zeros(5000)}
    assert list(recorder.configure_train(1, arrays(g), ConfigRecord(), Grid(NODES))) == []
    agg, metrics = recorder.aggregate_train(1, [])
    assert as_numpy(agg)["w"].std() == pytest.approx(1.0 / 10, rel=0.05)  # z C / m, m = 10
    assert strategy.accountant.rounds == 1 and metrics["dp-client-epsilon"] > 0


@pytest.mark.parametrize("field", ["clip_norm", "noise_multiplier", "delta"])
def test_the_wrappers_refuse_non_finite_parameters_too(field):
    kwargs = {"clip_norm": 1.0, "noise_multiplier": 1.0, "delta": 1e-5, field: float("nan")}
    with pytest.raises(FedlabError, match="finite"):
        CentralDPServerSideClipping(FedAvg(**inner_kwargs()), ClientSampler("fixed", 0.1, 100),
                                    **kwargs)  # fmt: skip
    with pytest.raises(FedlabError, match="finite"):
        LocalDpClipNoiseMod(clip_norm=1.0, epsilon=float("inf"))


def test_the_reported_local_epsilon_total_never_decreases():
    strategy = ClientSampling(
        FedAvg(**inner_kwargs()), ClientSampler("fixed", 0.5, 4), release="local"
    )
    g = {"w": np.zeros(2)}
    totals = []
    for rnd, releases in enumerate((3, 1, 2), start=1):  # this round's clients released less
        list(strategy.configure_train(rnd, arrays(g), ConfigRecord(), Grid([0, 1, 2, 3])))
        dp = dp_record({"mechanism": "local", "epsilon": 1.0, "epsilon-total": float(releases),
                        "noise-std": 0.1})  # fmt: skip
        _, metrics = strategy.aggregate_train(rnd, [reply(g, dp=dp)])
        totals.append(metrics["dp-local-epsilon-total-max"])
    assert totals == [3.0, 3.0, 3.0]

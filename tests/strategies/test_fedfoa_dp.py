"""FedFoA under central DP: the rebuilt relation matrices are clipped and noised, uniformly.

The DP wrapper (strategies/dp_central.py) sees each reply through
``fedlab.strategies.fedfoa.rebuild_reply``, so it clips the update of the D x D matrix
``R_k - R_global`` (never the eigen-factors, which are ambiguous in sign) and sets every weight to
1; FedFoA then averages uniformly. Mock replies, no Ray.
"""

from __future__ import annotations

import numpy as np
import pytest
from fedlab.clients.ssl.relation import factorize, rebuild
from fedlab.strategies.dp_central import CentralDPServerSideClipping
from fedlab.strategies.dp_sampling import ClientSampler
from fedlab.strategies.dp_wrapper import inner_kwargs
from fedlab.strategies.fedfoa import EIGVALS, EIGVECS, RELATION, FedFoA, rebuild_reply
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

NODES = [11, 12, 13, 14]


def _spd(d, seed):
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d


def _reply(matrix, rank, examples):
    vals, vecs = factorize(matrix, rank)
    arrays = ArrayRecord({EIGVALS: Array(vals), EIGVECS: Array(vecs)})
    content = RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": examples})})
    return Message(content=content, dst_node_id=0, message_type="train")


class _Grid:
    def get_node_ids(self):
        return list(NODES)


def _dp(clip_norm, z):
    return CentralDPServerSideClipping(
        FedFoA(**inner_kwargs()),
        ClientSampler("fixed", 1.0, len(NODES), seed=1),
        clip_norm=clip_norm,
        noise_multiplier=z,
        reply_view=rebuild_reply,
    )


def _round(strategy, server_round, global_relation, replies):
    sent = (
        ArrayRecord()
        if global_relation is None
        else ArrayRecord({RELATION: Array(global_relation.astype(np.float32))})
    )
    messages = list(strategy.configure_train(server_round, sent, ConfigRecord(), _Grid()))
    assert len(messages) == len(NODES)
    return strategy.aggregate_train(server_round, replies)


def _truncated(m, rank):
    return rebuild(*factorize(m, rank))


def test_without_clipping_or_noise_the_aggregate_is_the_uniform_mean_of_rebuilt_matrices():
    mats, rank = [_spd(6, s) for s in range(4)], 3
    replies = [_reply(m, rank, n) for m, n in zip(mats, (1, 10, 100, 1000), strict=True)]
    agg, metrics = _round(_dp(clip_norm=100.0, z=1e-9), 1, None, replies)
    expected = np.mean([_truncated(m, rank) for m in mats], axis=0)  # uniform, not by examples
    np.testing.assert_allclose(agg[RELATION].numpy(), expected, atol=1e-4)
    assert "dp-unclipped-fraction-true" not in metrics  # an exact private count


def test_clipping_bounds_each_clients_change_of_the_relation_matrix():
    d, rank, c = 6, 6, 0.5
    previous = np.eye(d)
    mats = [_spd(d, s) for s in range(4)]
    agg, metrics = _round(_dp(clip_norm=c, z=1e-9), 2, previous, [_reply(m, rank, 5) for m in mats])
    expected = previous.copy()
    for m in mats:
        update = _truncated(m, rank) - previous
        expected += update * min(1.0, c / np.linalg.norm(update)) / len(mats)
    np.testing.assert_allclose(agg[RELATION].numpy(), expected, atol=1e-4)
    # one client moves the aggregate by at most C / m
    assert np.linalg.norm(agg[RELATION].numpy() - previous) <= c + 1e-6


def test_noise_on_the_matrix_has_std_z_c_over_m_on_the_diagonal():
    d, z, c = 96, 2.0, 1.0
    previous = np.eye(d)
    replies = [_reply(np.eye(d), d, 5) for _ in NODES]  # no change: the aggregate is pure noise
    agg, metrics = _round(_dp(clip_norm=c, z=z), 2, previous, replies)
    noise = agg[RELATION].numpy() - previous
    np.testing.assert_allclose(noise, noise.T, atol=1e-6)  # symmetrized: post-processing
    assert np.diag(noise).std() == pytest.approx(z * c / len(NODES), rel=0.25)
    assert metrics["dp-noise-std"] == pytest.approx(z * c / len(NODES))

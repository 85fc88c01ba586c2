"""FedFoA under central DP: the rebuilt relation matrices are clipped, averaged and noised."""

from __future__ import annotations

import numpy as np
import pytest
from dp_helpers import Grid, arrays, as_numpy
from fedlab.clients.ssl.relation import factorize, rebuild
from fedlab.strategies.dp_central import CentralDPServerSideClipping
from fedlab.strategies.dp_sampling import ClientSampler
from fedlab.strategies.dp_wrapper import inner_kwargs
from fedlab.strategies.fedfoa import EIGVALS, EIGVECS, RELATION, FedFoA, rebuild_reply
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

D = 48


def _spd(seed: int, scale: float) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(D, D))
    return scale * a @ a.T / D


def _factor_reply(matrix: np.ndarray) -> Message:
    vals, vecs = factorize(matrix, D)
    content = RecordDict({"arrays": ArrayRecord({EIGVALS: Array(vals), EIGVECS: Array(vecs)}),
                          "metrics": MetricRecord({"num-examples": 50})})  # fmt: skip
    return Message(content=content, dst_node_id=0, message_type="train")


def _strategy(z: float) -> CentralDPServerSideClipping:
    inner = FedFoA(uniform_weights=True, **inner_kwargs())
    return CentralDPServerSideClipping(inner, ClientSampler("fixed", 0.5, 8, seed=0), clip_norm=2.0,
                                       noise_multiplier=z, reply_view=rebuild_reply)  # fmt: skip


def _expected(global_r: np.ndarray, matrices: list[np.ndarray]) -> np.ndarray:
    total = np.zeros_like(global_r)
    for m in matrices:
        # rebuilt from float32 factors, as the strategy sees them
        vals, vecs = factorize(m, D)
        delta = rebuild(vals.astype(np.float32), vecs.astype(np.float32)).astype(np.float32)
        delta = delta.astype(np.float64) - global_r
        total += delta * min(1.0, 2.0 / np.linalg.norm(delta))
    r = global_r + total / 4  # m = 4 of 8 sampled
    return (r + r.T) / 2


def test_fedfoa_relations_are_clipped_and_averaged_with_a_fixed_denominator():
    strategy = _strategy(z=1e-9)
    g = np.eye(D)
    messages = list(strategy.configure_train(1, arrays({RELATION: g}), ConfigRecord(),
                                             Grid(range(8))))  # fmt: skip
    assert len(messages) == 4
    matrices = [_spd(0, 0.1), _spd(1, 5.0), _spd(2, 1.0)]  # 3 of the 4 reply
    agg, metrics = strategy.aggregate_train(1, [_factor_reply(m) for m in matrices])
    np.testing.assert_allclose(as_numpy(agg)[RELATION], _expected(g, matrices), atol=2e-4)
    assert metrics["dp-sampled"] == 4 and metrics["dp-client-epsilon"] > 0


def test_fedfoa_relation_noise_has_std_z_c_over_m():
    strategy = _strategy(z=2.0)
    g = np.eye(D)
    list(strategy.configure_train(1, arrays({RELATION: g}), ConfigRecord(), Grid(range(8))))
    agg, _ = strategy.aggregate_train(1, [_factor_reply(g) for _ in range(4)])  # zero updates
    noise = as_numpy(agg)[RELATION] - g
    off = noise[~np.eye(D, dtype=bool)]
    # FedFoA symmetrises: off-diagonal entries average two draws, so std / sqrt(2)
    assert off.std() == pytest.approx(2.0 * 2.0 / 4 / np.sqrt(2), rel=0.1)

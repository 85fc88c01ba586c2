"""Sample-level DP-SGD with Opacus through the training loop's prepare hook; state persists."""

from __future__ import annotations

import pytest
import torch
from dp_helpers import context
from fedlab.clients.dpfedavg.dpsgd import ACCOUNTANT_STATE, DPSGDSession, OpacusCompatible
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from opacus.accountants import RDPAccountant
from torch import nn
from torch.utils.data import TensorDataset

from fedlab.training import TrainConfig, train


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    return TensorDataset(x, (x[:, 0] > 0).long())


def _step(model, batch):
    x, y = batch
    loss = nn.functional.cross_entropy(model(x), y)
    return loss, {}


def _reply():
    return Message(content=RecordDict({"arrays": ArrayRecord(),
                                       "metrics": MetricRecord({"num-examples": 64})}),
                   dst_node_id=0, message_type="train")  # fmt: skip


def test_accountant_persists_in_context_state_across_rounds():
    ctx = context()
    epsilons = []
    for round_ in range(3):
        session = DPSGDSession(ctx, noise_multiplier=1.1, max_grad_norm=1.0, delta=1e-5)
        model = nn.Linear(6, 2)
        result = train(model, _data(), _step, TrainConfig(epochs=1, batch_size=16, lr=0.1),
                       seed=round_, prepare=session.prepare)  # fmt: skip
        reply = _reply()
        epsilons.append(session.finish(ctx, reply))
        assert reply.content["metrics"]["dp-sample-epsilon"] == epsilons[-1]
        assert result.steps > 0
    saved = ctx.state[ACCOUNTANT_STATE]
    assert isinstance(saved, ConfigRecord)
    assert epsilons[0] < epsilons[1] < epsilons[2]
    # the same history in a fresh Opacus accountant gives the same epsilon
    fresh = RDPAccountant()
    fresh.history = list(zip(saved["noise-multipliers"], saved["sample-rates"], saved["steps"],
                             strict=True))  # fmt: skip
    assert fresh.get_epsilon(1e-5) == pytest.approx(epsilons[-1])
    assert sum(saved["steps"]) == reply.content["metrics"]["dp-sample-steps"]


def test_per_sample_clipping_bounds_each_step():
    """With no noise, one DP-SGD step moves the weights by at most lr * max_grad_norm."""
    ctx = context()
    session = DPSGDSession(ctx, noise_multiplier=1e-6, max_grad_norm=0.01, delta=1e-5)
    model = nn.Linear(6, 2)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    train(model, _data(), _step, TrainConfig(steps=1, batch_size=64, lr=1.0, momentum=0.0),
          prepare=session.prepare)  # fmt: skip
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm() <= 0.01 * 1.0 * (1 + 1e-3)


class _BatchNormWorkload:
    config = None

    def build_model(self):
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(),
                             nn.Linear(4 * 6 * 6, 2))  # fmt: skip


def test_batchnorm_models_are_fixed_for_opacus():
    model = OpacusCompatible(_BatchNormWorkload()).build_model()  # type: ignore[arg-type]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())

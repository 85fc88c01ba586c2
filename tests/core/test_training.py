import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from fedlab.errors import FedlabError
from fedlab.training import TrainConfig, evaluate, train


def regression_problem(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    w = torch.tensor([1.0, -2.0, 0.5, 3.0])
    return TensorDataset(x, x @ w)


def mse_step(model, batch):
    x, y = batch
    loss = ((model(x).squeeze(1) - y) ** 2).mean()
    return loss, {"abs": (model(x).squeeze(1) - y).abs().mean().item()}


def test_train_reduces_loss_and_reports_metrics():
    ds = regression_problem()
    model = nn.Linear(4, 1)
    before = evaluate(model, ds, mse_step)["loss"]
    result = train(model, ds, mse_step, TrainConfig(epochs=20, lr=0.05, batch_size=32))
    after = evaluate(model, ds, mse_step)["loss"]
    assert after < 0.01 * before
    assert result.steps == 20 * 8 and result.num_examples == 256
    assert set(result.metrics) == {"loss", "abs"}


def test_steps_override_epochs_and_cycle_through_data():
    ds = regression_problem(n=40)
    result = train(nn.Linear(4, 1), ds, mse_step, TrainConfig(steps=7, batch_size=16))
    assert result.steps == 7


def test_a_trailing_batch_of_one_is_dropped_only_for_batchnorm_models():
    """17 examples in batches of 16: BatchNorm refuses the last batch of one in training, so
    the loop drops it there; any other model still trains on it."""
    ds = regression_problem(n=17)
    batch_sizes = []

    def recording_step(model, batch):
        batch_sizes.append(len(batch[0]))
        return mse_step(model, batch)

    with_bn = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    result = train(with_bn, ds, recording_step, TrainConfig(epochs=2, batch_size=16))
    assert batch_sizes == [16, 16] and result.steps == 2
    batch_sizes.clear()
    result = train(nn.Linear(4, 1), ds, recording_step, TrainConfig(epochs=2, batch_size=16))
    assert batch_sizes == [16, 1, 16, 1] and result.steps == 4


def test_same_seed_same_model():
    ds = regression_problem()
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        m = nn.Linear(4, 1)
        train(m, ds, mse_step, TrainConfig(epochs=1, batch_size=8, lr=0.01), seed=5)
        models.append(m.weight.detach().clone())
    assert torch.equal(models[0], models[1])


@pytest.mark.parametrize("opt", ["sgd", "adam", "adamw"])
def test_optimizers_and_cosine_schedule(opt):
    ds = regression_problem()
    model = nn.Linear(4, 1)
    cfg = TrainConfig(epochs=20, optimizer=opt, lr=0.1, schedule="cosine")
    train(model, ds, mse_step, cfg)
    assert evaluate(model, ds, mse_step)["loss"] < 1.0


def test_prepare_hook_sees_model_optimizer_loader():
    seen = {}

    def prepare(model, optimizer, loader):
        seen.update(model=model, optimizer=optimizer, loader=loader)
        return model, optimizer, loader

    train(nn.Linear(4, 1), regression_problem(), mse_step, TrainConfig(), prepare=prepare)
    assert isinstance(seen["optimizer"], torch.optim.SGD) and seen["loader"].batch_size == 32


def test_bad_configs():
    with pytest.raises(FedlabError, match="optimizer 'lbfgs'"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(FedlabError, match="give epochs >= 1 or steps >= 1"):
        TrainConfig(epochs=0, steps=0)
    with pytest.raises(FedlabError, match="empty dataset"):
        train(
            nn.Linear(4, 1),
            TensorDataset(torch.zeros(0, 4), torch.zeros(0)),
            mse_step,
            TrainConfig(),
        )

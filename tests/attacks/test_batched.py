"""Batched gradient matching: per-problem gradients and inverting gradients on several targets."""

import pytest
import torch
import torch.nn.functional as F
from attack_helpers import crop_image, fedsgd_input
from fedlab.attacks.base import soft_cross_entropy
from fedlab.attacks.batched import _vmap_gradients, per_problem_gradients
from fedlab.attacks.inverting import InvertingGradients
from fedlab.attacks.models import build_lenet
from torch import nn

from fedlab import image_quality
from fedlab.errors import FedlabError


class _Tanh(nn.Module):
    """Not DLG's LeNet: goes through the vmap route."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


def _reference(model, x, y, soft):
    params = list(model.parameters())
    out = model(x)
    task = soft_cross_entropy(out, y) if soft else F.cross_entropy(out, y)
    return torch.autograd.grad(task, params, create_graph=True)


@pytest.mark.parametrize("route", ["lenet", "vmap", "other-model"])
@pytest.mark.parametrize("soft", [False, True])
def test_each_problem_gets_its_own_gradient_and_second_order(route, soft):
    torch.manual_seed(0)
    model = _Tanh() if route == "other-model" else build_lenet(5, image_size=8, init="dlg-uniform")
    grads_of = _vmap_gradients(model) if route == "vmap" else per_problem_gradients(model)
    k, b = 3, 2
    x = torch.rand(k, b, 3, 8, 8, requires_grad=True)
    y = torch.softmax(torch.randn(k, b, 5), -1) if soft else torch.randint(0, 5, (k, b))
    grads = grads_of(x, y)
    (x_grad,) = torch.autograd.grad(sum((g**2).sum() for g in grads), x)
    for i in range(k):
        xi = x[i].detach().requires_grad_(True)
        ref = _reference(model, xi, y[i], soft)
        for got, want in zip(grads, ref, strict=True):
            torch.testing.assert_close(got[i], want, rtol=1e-4, atol=1e-6)
        (want_x,) = torch.autograd.grad(sum((r**2).sum() for r in ref), xi)
        torch.testing.assert_close(x_grad[i], want_x, rtol=1e-3, atol=1e-7)


def _targets():
    """Three single-image targets of one model (the same seed: one round's global model)."""
    names, labels = ["chelsea", "coffee", "astronaut"], [3, 1, 7]
    return [
        fedsgd_input(crop_image(n, 16)[None], torch.tensor([c]), seed=0)
        for n, c in zip(names, labels, strict=True)
    ], [crop_image(n, 16) for n in names]


def test_batched_targets_match_one_at_a_time():
    inputs, truths = _targets()
    attack = InvertingGradients(max_iterations=400, restarts=0, patience=2, seed=3)
    single = [attack.reconstruct(inp) for inp in inputs]
    batched = attack.reconstruct_many(inputs)
    for one, many, truth in zip(single, batched, truths, strict=True):
        assert torch.equal(one.labels, many.labels)
        psnr_one = image_quality.psnr(truth, one.images[0])
        psnr_many = image_quality.psnr(truth, many.images[0])
        assert abs(psnr_one - psnr_many) <= 0.5, (psnr_one, psnr_many)
        assert psnr_one > 12  # the attack does work at this budget: the comparison means something


def test_batched_restarts_keep_each_attempts_start_and_stop():
    inp = _targets()[0][0]
    one = InvertingGradients(max_iterations=200, restarts=2, patience=1, seed=1)
    many = InvertingGradients(max_iterations=200, restarts=2, patience=1, seed=1, batched=True)
    a, b = one.reconstruct(inp), many.reconstruct(inp)
    assert a.iterations == b.iterations  # the same stops, attempt by attempt
    assert abs(a.loss - b.loss) <= 1e-3 * max(abs(a.loss), 1e-6) + 1e-6


def test_targets_of_different_models_are_refused():
    inputs, _ = _targets()
    other = fedsgd_input(crop_image("coffee", 16)[None], torch.tensor([1]), seed=1)
    with pytest.raises(FedlabError, match="share one model"):
        InvertingGradients(max_iterations=10).reconstruct_many([inputs[0], other])


def test_targets_of_different_batch_sizes_are_refused():
    inputs, _ = _targets()
    pair = torch.stack([crop_image("coffee", 16), crop_image("chelsea", 16)])
    two = fedsgd_input(pair, torch.tensor([1, 3]), seed=0)
    with pytest.raises(FedlabError, match="batch size"):
        InvertingGradients(max_iterations=10).reconstruct_many([inputs[0], two])

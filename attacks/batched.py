"""Several gradient-matching problems on one model, evaluated as one batched problem.

Problem ``k`` has its own dummy batch ``x[k]`` of ``B`` images, its own labels and its own target
gradient; all share the victim's parameters (the targets of one round, or restarts of one
target). One evaluation returns each problem's parameter gradient, with the graph kept so that
a matching loss can be differentiated with respect to every ``x[k]`` at once.

Two routes, the same numbers up to float rounding (``tests/attacks/test_batched.py``):

* DLG's LeNet (:class:`fedlab.attacks.models.LeNet` with sigmoid activations): the first-order
  gradients are written out (``unfold`` and batched matrix products, the per-sample gradients of
  each layer summed per problem), so every problem's gradient comes out of one forward pass;
  autograd takes the second order. ``simulations/attack_speed_floor.py`` measured it at 1.0-1.5 ms
  per problem for eight problems, against 2.2-2.8 ms for one problem through autograd;
* any other model: :func:`torch.func.vmap` over :func:`torch.func.grad` of a
  ``functional_call``, which is correct for any ``nn.Module`` without buffers that change in the
  forward pass, and slower.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from fedlab.attacks.models import LeNet
from torch import nn

PerProblemGradients = Callable[[torch.Tensor, torch.Tensor], list[torch.Tensor]]


def per_problem_gradients(model: nn.Module) -> PerProblemGradients:
    """``grads(x, y) -> [g]``: each problem's mean cross-entropy gradient, differentiable in x.

    Parameters
    ----------
    model : nn.Module
        The victim, parameters loaded; shared by every problem.

    Returns
    -------
    callable
        ``grads(x, y)`` with ``x`` of shape ``(K, B, C, H, W)`` and ``y`` either int64 labels
        ``(K, B)`` or label probabilities ``(K, B, classes)`` (DLG's soft labels); returns one
        tensor per parameter, in ``model.parameters()`` order, of shape ``(K, *param.shape)``.
    """
    if _is_sigmoid_lenet(model):
        return _lenet_gradients(model)
    return _vmap_gradients(model)


def _is_sigmoid_lenet(model: nn.Module) -> bool:
    if type(model) is not LeNet:
        return False
    layers = list(model.body)
    convs, acts = layers[0::2], layers[1::2]
    return all(isinstance(c, nn.Conv2d) and c.groups == 1 and c.dilation == (1, 1) for c in convs)\
        and all(isinstance(a, nn.Sigmoid) for a in acts) and len(convs) == len(acts)  # fmt: skip


def _probabilities(y: torch.Tensor, classes: int) -> torch.Tensor:
    return F.one_hot(y, classes).to(torch.float32) if y.dtype == torch.long else y


def _lenet_gradients(model: LeNet) -> PerProblemGradients:
    convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
    fc = model.fc

    def grads(x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        k, b = x.shape[:2]
        a = x.reshape(k * b, *x.shape[2:])
        cols, acts, sizes = [], [], []
        for conv in convs:
            side = a.shape[-2:]
            u = F.unfold(a, conv.kernel_size, padding=conv.padding, stride=conv.stride)
            s = torch.sigmoid(conv.weight.detach().flatten(1) @ u + conv.bias.detach()[:, None])
            geometry = zip(side, conv.padding, conv.kernel_size, conv.stride, strict=True)
            out = [(n + 2 * p - kk) // st + 1 for n, p, kk, st in geometry]
            cols.append(u)
            acts.append(s)
            sizes.append(side)
            a = s.view(k * b, conv.out_channels, *out)
        h = a.flatten(1)
        z = h @ fc.weight.detach().T + fc.bias.detach()
        probs = _probabilities(y, fc.out_features).reshape(k * b, -1)
        # d(mean over the problem's B samples of cross entropy) / dz, per sample
        dz = (torch.softmax(z, dim=-1) * probs.sum(-1, keepdim=True) - probs) / b
        per_problem = [
            torch.einsum("kbo,kbf->kof", dz.view(k, b, -1), h.view(k, b, -1)),
            dz.view(k, b, -1).sum(1),
        ]
        da = dz @ fc.weight.detach()
        for i in reversed(range(len(convs))):
            conv = convs[i]
            dpre = da.view_as(acts[i]) * acts[i] * (1 - acts[i])
            weight = torch.einsum("nol,nil->noi", dpre, cols[i])
            per_problem = [
                weight.view(k, b, *weight.shape[1:]).sum(1).view(k, *conv.weight.shape),
                dpre.sum(-1).view(k, b, -1).sum(1),
                *per_problem,
            ]
            if i:
                du = conv.weight.detach().flatten(1).T @ dpre
                da = F.fold(
                    du, sizes[i], conv.kernel_size, padding=conv.padding, stride=conv.stride
                ).flatten(1)
        return per_problem

    return grads


def _vmap_gradients(model: nn.Module) -> PerProblemGradients:
    from torch.func import functional_call, grad, vmap

    params = {name: p.detach() for name, p in model.named_parameters()}

    def task(weights: dict[str, torch.Tensor], x: torch.Tensor, probs: torch.Tensor):
        logits = functional_call(model, weights, (x,))
        return torch.mean(torch.sum(-probs * torch.log_softmax(logits, dim=-1), dim=-1))

    per_problem = vmap(grad(task), in_dims=(None, 0, 0))
    classes: list[int] = []  # the model's output width, read once (one_hot cannot be vmapped)

    def grads(x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        if y.dtype == torch.long and not classes:
            with torch.no_grad():
                classes.append(model(x[0, :1].detach()).shape[-1])
        probs = _probabilities(y, classes[0]) if y.dtype == torch.long else y
        out = per_problem(params, x, probs)
        return [out[name] for name in params]

    return grads


__all__ = ["per_problem_gradients"]

"""The attack interface: what an attacker is given, what it returns, and the ABC.

An attack needs no Flower: :class:`AttackInput` is a plain dataclass holding what an
honest-but-curious server sees for one client and round (the gradients, or the update the client
sent together with the lr and number of local steps needed to turn it back into a gradient), the
global parameters the update was computed from, and a :class:`ModelSpec` to rebuild the model.
Both live in the core (:mod:`fedlab.attack_input`), since the trace reader produces them; they
are re-exported here for attacks.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from fedlab.attack_input import AttackInput, ModelSpec
from fedlab.errors import FedlabError

logger = logging.getLogger(f"fedlab.{__name__}")

__all__ = [
    "Attack",
    "AttackInput",
    "AttackResult",
    "ModelSpec",
    "head_gradients",
    "labels_from_weight_gradient",
    "reconstruct_each",
    "soft_cross_entropy",
]


@dataclass
class AttackResult:
    """What an attack reconstructed.

    Parameters
    ----------
    images : torch.Tensor
        ``(batch_size, C, H, W)`` in [0, 1].
    labels : torch.Tensor
        ``(batch_size,)`` int64 predicted labels.
    loss : float
        Final gradient-match loss of the kept restart (the attack's own objective).
    iterations : int
        Optimizer iterations (function evaluations for L-BFGS) over all restarts.
    restarts : int
        Restarts run after the first attempt.
    seconds : float
        Wall time of ``reconstruct``.
    history : list of float
        Loss of the kept restart at checkpoints, for plots.
    """

    images: torch.Tensor
    labels: torch.Tensor
    loss: float
    iterations: int
    restarts: int
    seconds: float
    history: list[float] = field(default_factory=list)


class Attack(ABC):
    """A gradient-leakage attack: ``reconstruct(AttackInput) -> AttackResult``."""

    name: str = "attack"

    @abstractmethod
    def reconstruct(self, inp: AttackInput) -> AttackResult:
        """Reconstruct the client's batch from what the server saw."""


def reconstruct_each(
    attack: Attack, inputs: Sequence[AttackInput]
) -> list[AttackResult | Exception]:
    """Every input's result, or the exception that ended its attack, in order.

    Batched when the attack offers ``reconstruct_many`` (inverting gradients) and there are
    several inputs; when the batch is refused (targets of several models) or fails, each input
    gets an attack of its own, so one bad target costs only itself.
    """
    if len(inputs) > 1 and hasattr(attack, "reconstruct_many"):
        try:
            return list(attack.reconstruct_many(list(inputs)))  # type: ignore[attr-defined]
        except FedlabError as exc:
            logger.info("%s: one target at a time (%s)", attack.name, exc)
        except Exception:  # noqa: BLE001  the batch failed: each target gets its own chance
            logger.exception("%s: the batched attack failed; one target at a time", attack.name)
    results: list[AttackResult | Exception] = []
    for inp in inputs:
        try:
            results.append(attack.reconstruct(inp))
        except Exception as exc:  # noqa: BLE001  returned: the caller records it for the target
            results.append(exc)
    return results


def labels_from_weight_gradient(
    fc_weight_grad: torch.Tensor, batch_size: int, fc_bias_grad: torch.Tensor | None = None
) -> torch.Tensor:
    """Analytic label recovery from the last linear layer's gradient (iDLG and its batch form).

    With non-negative features (sigmoid, ReLU) and mean cross entropy, row ``c`` of the weight
    gradient is ``mean_b (p_bc - y_bc) h_b``: its sum is negative only for classes in the batch.
    For one image the label is the argmin (Zhao et al. 2020). For a batch, every class with a
    negative row sum is taken once, most negative first, and the remaining slots are filled with
    the most negative classes again (a class repeated in the batch cannot be told apart).

    Parameters
    ----------
    fc_weight_grad : torch.Tensor
        ``(num_classes, features)`` gradient of the head's weight.
    batch_size : int
        Number of labels to return.
    fc_bias_grad : torch.Tensor, optional
        ``(num_classes,)`` bias gradient; when given it decides the sign instead of row sums.

    Returns
    -------
    torch.Tensor
        ``(batch_size,)`` int64 labels, sorted by class.
    """
    scores = fc_weight_grad.sum(dim=-1) if fc_bias_grad is None else fc_bias_grad
    if batch_size == 1:
        return scores.argmin().view(1).long()
    order = torch.argsort(scores)
    present = [int(c) for c in order if scores[c] < 0][:batch_size] or [int(order[0])]
    labels = list(present)
    i = 0
    while len(labels) < batch_size:
        labels.append(present[i % len(present)])
        i += 1
    return torch.tensor(sorted(labels), dtype=torch.long)


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_c t_c log softmax(logits)_c`` (DLG's one-hot loss)."""
    return torch.mean(torch.sum(-target_probs * torch.log_softmax(logits, dim=-1), dim=-1))


def head_gradients(model: nn.Module, grads: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The gradients of the last Linear layer ``(weight, bias-or-None)`` found in ``model``."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise FedlabError("label recovery needs a final nn.Linear layer; give labels= instead")
    head = last[-1]
    ids = {id(p): i for i, (_, p) in enumerate(model.named_parameters())}
    w = grads[ids[id(head.weight)]]
    b = grads[ids[id(head.bias)]] if head.bias is not None else None
    return w, b

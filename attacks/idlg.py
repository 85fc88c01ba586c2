"""Improved DLG (Zhao et al. 2020): labels read off the gradient, then L-BFGS on images only.

For one image the label is the argmin of the row sums of the last layer's weight gradient
(exact for non-negative features and cross entropy). For a batch, the classes with negative row
sums are the labels present (see :func:`fedlab.attacks.base.labels_from_weight_gradient`); repeated
labels cannot be told apart, so larger batches may get some labels wrong.
"""

from __future__ import annotations

import torch
from fedlab.attacks.base import AttackInput, head_gradients, labels_from_weight_gradient
from fedlab.attacks.dlg import DLG
from torch import nn

from fedlab.registry import ATTACKS


def recover_labels(inp: AttackInput, model: nn.Module, target: list[torch.Tensor]) -> torch.Tensor:
    """Labels from ``inp.labels`` if known, else analytically from the head's gradient."""
    if inp.labels is not None:
        return inp.labels.long()
    weight_grad, bias_grad = head_gradients(model, target)
    return labels_from_weight_gradient(
        weight_grad, inp.batch_size, bias_grad if inp.batch_size > 1 else None
    )


@ATTACKS.register("idlg")
class IDLG(DLG):
    """iDLG: analytic labels, then DLG's L-BFGS on the dummy images alone.

    Takes the same keyword arguments as :class:`fedlab.attacks.dlg.DLG`.
    """

    name = "idlg"

    def _labels(self, inp: AttackInput, model: nn.Module, target: list[torch.Tensor]):
        return recover_labels(inp, model, target)

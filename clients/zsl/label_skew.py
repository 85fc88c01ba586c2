"""Client-side remedies for label skew (class-disjoint clients), on seen-class logits.

Class attribute vectors are public class descriptions, so every client's loss runs over all
seen classes whatever the remedy. The remedies change how a client treats the seen classes
it holds no example of:

- ``fedrs``: restricted softmax (FedRS, Li and Zhan, KDD 2021). The logits of classes the
  client does not hold are multiplied by ``alpha`` in [0, 1]; its own classes' logits are left
  unchanged, so local training pushes the missing classes' scores down less.
- ``fedlc``: logit calibration (FedLC, Zhang et al., ICML 2022). Each class's logit is lowered
  by ``tau * n_c^(-1/4)`` with ``n_c`` the client's example count of class c; a class the
  client does not hold (``n_c = 0``) gets ``-inf`` and so leaves the softmax's denominator,
  as in the authors' code (``pow(0, -1/4) = inf``).
"""

from __future__ import annotations

import torch

LABEL_SKEW_REMEDIES = ("none", "fedrs", "fedlc")


def restricted_softmax_logits(
    logits: torch.Tensor, counts: torch.Tensor, alpha: float
) -> torch.Tensor:
    """FedRS: logits of classes with ``counts == 0`` times ``alpha``, the others unchanged."""
    held = (counts > 0).to(logits.device)
    return torch.where(held, logits, alpha * logits)


def calibrated_logits(logits: torch.Tensor, counts: torch.Tensor, tau: float) -> torch.Tensor:
    """FedLC: ``logits - tau * counts^(-1/4)`` per class; missing classes get ``-inf``."""
    counts = counts.to(device=logits.device, dtype=logits.dtype)
    shift = torch.where(counts > 0, tau * counts.clamp_min(1).pow(-0.25), torch.inf)
    return logits - shift


def adjust_logits(
    logits: torch.Tensor, counts: torch.Tensor, remedy: str, *, alpha: float, tau: float
) -> torch.Tensor:
    """Apply ``remedy`` (one of :data:`LABEL_SKEW_REMEDIES`) to ``(B, seen)`` logits."""
    if remedy == "fedrs":
        return restricted_softmax_logits(logits, counts, alpha)
    if remedy == "fedlc":
        return calibrated_logits(logits, counts, tau)
    return logits

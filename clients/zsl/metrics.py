"""ZSL metrics (T1, GZSL acc_s / acc_u / H) and model costs (parameters, FLOPs, CPU latency).

Protocol (Xian et al. 2018): T1 is the mean over unseen classes of per-class top-1 accuracy,
predicting among the unseen classes only. In GZSL the candidates are all seen and unseen
classes; acc_s (acc_u) is the per-class mean accuracy on seen (unseen) test examples and
H = 2 acc_s acc_u / (acc_s + acc_u). Calibrated stacking (Chao et al. 2016) subtracts ``gamma``
from the seen classes' scores before the argmax; gamma = 0 is plain GZSL.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present in ``labels`` of the fraction predicted right."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    classes = np.unique(labels)
    if classes.size == 0:
        return 0.0
    return float(np.mean([np.mean(predicted[labels == c] == c) for c in classes]))


def _predict(scores: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    return candidates[np.argmax(scores[:, candidates], axis=1)]


def zsl_top1(scores: np.ndarray, labels: np.ndarray, unseen: np.ndarray) -> float:
    """T1: per-class mean top-1 on unseen examples, predicting among ``unseen`` only.

    ``scores`` is ``(n, num_classes)`` over all classes; only the unseen columns are used.
    """
    return per_class_accuracy(_predict(np.asarray(scores), np.asarray(unseen)), labels)


def harmonic_mean(acc_s: float, acc_u: float) -> float:
    """H = 2 s u / (s + u), 0 when both are 0."""
    return 0.0 if acc_s + acc_u == 0 else 2 * acc_s * acc_u / (acc_s + acc_u)


def gzsl(
    scores_seen: np.ndarray,
    labels_seen: np.ndarray,
    scores_unseen: np.ndarray,
    labels_unseen: np.ndarray,
    seen: np.ndarray,
    unseen: np.ndarray,
    gamma: float = 0.0,
) -> dict[str, float]:
    """acc_s, acc_u and H predicting over seen and unseen classes together.

    Parameters
    ----------
    scores_seen, scores_unseen : ndarray, (n, num_classes)
        Scores of the held-out seen and of the unseen test examples.
    gamma : float
        Calibrated stacking: subtracted from every seen class's score.
    """
    candidates = np.union1d(seen, unseen)
    shift = np.zeros(np.asarray(scores_seen).shape[1])
    shift[np.asarray(seen)] = gamma
    acc_s = per_class_accuracy(_predict(np.asarray(scores_seen) - shift, candidates), labels_seen)
    acc_u = per_class_accuracy(
        _predict(np.asarray(scores_unseen) - shift, candidates), labels_unseen
    )
    return {"acc-s": acc_s, "acc-u": acc_u, "H": harmonic_mean(acc_s, acc_u)}


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those that require grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, example: torch.Tensor) -> int:
    """FLOPs of ``model(example)`` per sample, counted by torch's ``FlopCounterMode``.

    ``example`` is a batch; the total is divided by its size. A multiply-add counts as 2.
    """
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(example)
    return int(round(counter.get_total_flops() / len(example)))


def latency_per_sample(
    model: nn.Module, example: torch.Tensor, *, repeats: int = 20, warmup: int = 3
) -> float:
    """Median CPU seconds per sample of ``model(example)`` over ``repeats`` timed calls.

    Runs on the current torch thread count (set 1 for a per-core figure).
    """
    model.eval()
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model(example)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times) / len(example)

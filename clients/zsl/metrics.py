"""ZSL metrics (T1, GZSL acc_s / acc_u / H) and model costs (parameters, FLOPs, CPU latency).

Protocol (Xian et al. 2018): T1 is the mean over unseen classes of per-class top-1 accuracy,
predicting among the unseen classes only. In GZSL the candidates are all seen and unseen
classes; acc_s (acc_u) is the per-class mean accuracy on seen (unseen) test examples and
H = 2 acc_s acc_u / (acc_s + acc_u). Calibrated stacking (Chao et al. 2016) subtracts ``gamma``
from the seen classes' scores before the argmax; gamma = 0 is plain GZSL. AUSUC (Chao et al.
2016) is the area under the curve of acc_s against acc_u traced by gamma from -inf to +inf:
it needs no choice of gamma.
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
    acc_s = per_class_accuracy(
        _predict(calibrated_stacking(scores_seen, seen, gamma), candidates), labels_seen
    )
    acc_u = per_class_accuracy(
        _predict(calibrated_stacking(scores_unseen, seen, gamma), candidates), labels_unseen
    )
    return {"acc-s": acc_s, "acc-u": acc_u, "H": harmonic_mean(acc_s, acc_u)}


def calibrated_stacking(scores: np.ndarray, seen: np.ndarray, gamma: float) -> np.ndarray:
    """``scores`` with ``gamma`` subtracted from the seen classes' columns, the rest as is."""
    out = np.array(scores, dtype=np.float64, copy=True)
    out[:, np.asarray(seen)] -= gamma
    return out


def _switch_points(
    scores: np.ndarray, labels: np.ndarray, seen: np.ndarray, unseen: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per example: its class-balanced weight, the gamma at which the GZSL prediction
    switches from the best seen to the best unseen class (``max seen - max unseen``), and
    whether the best candidate of its own kind (seen for seen, unseen for unseen) is right."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    best_seen = seen[np.argmax(scores[:, seen], axis=1)]
    best_unseen = unseen[np.argmax(scores[:, unseen], axis=1)]
    switch = scores[:, seen].max(1) - scores[:, unseen].max(1)
    own = best_seen if np.isin(labels, seen).all() else best_unseen
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    weight = 1.0 / (counts[inverse] * len(classes))
    return weight, switch, own == labels


def ausuc(
    scores_seen: np.ndarray,
    labels_seen: np.ndarray,
    scores_unseen: np.ndarray,
    labels_unseen: np.ndarray,
    seen: np.ndarray,
    unseen: np.ndarray,
) -> float:
    """Area under the seen-unseen accuracy curve, exact over every switching gamma.

    A seen example is right at calibration gamma iff its best seen class is its class and
    ``gamma < max seen - max unseen``; an unseen one iff its best unseen class is its class
    and ``gamma >= max seen - max unseen`` (ties go to the unseen side, as ``argmax`` after
    :func:`calibrated_stacking` would pick the first of equal scores only within a kind).
    Sweeping gamma over every switching point traces (acc_u, acc_s) from (0, seen-only
    accuracy) to (T1, 0); the trapezoidal area under it is AUSUC.
    """
    seen, unseen = np.asarray(seen), np.asarray(unseen)
    w_s, t_s, ok_s = _switch_points(scores_seen, labels_seen, seen, unseen)
    w_u, t_u, ok_u = _switch_points(scores_unseen, labels_unseen, seen, unseen)
    gammas = np.unique(np.concatenate([t_s, t_u]))
    # acc_s(g) = sum of w over right seen examples with t > g; acc_u(g) = ... with t <= g.
    order_s, order_u = np.argsort(t_s), np.argsort(t_u)
    cum_s = np.concatenate([[0.0], np.cumsum((w_s * ok_s)[order_s])])
    cum_u = np.concatenate([[0.0], np.cumsum((w_u * ok_u)[order_u])])
    below_s = np.searchsorted(t_s[order_s], gammas, side="right")
    below_u = np.searchsorted(t_u[order_u], gammas, side="right")
    acc_s = np.concatenate([[cum_s[-1]], cum_s[-1] - cum_s[below_s]])
    acc_u = np.concatenate([[0.0], cum_u[below_u]])
    acc_s = np.concatenate([acc_s, [0.0]])
    acc_u = np.concatenate([acc_u, [cum_u[-1]]])
    return float(np.sum((acc_u[1:] - acc_u[:-1]) * (acc_s[1:] + acc_s[:-1]) / 2))


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

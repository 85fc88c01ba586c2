"""Statistics the studies under simulations/ share: paired differences over seeds or splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def paired_t_interval(diffs: Sequence[float]) -> tuple[float, float, float, int] | None:
    """Mean of paired differences with its 95 % Student-t interval: ``(mean, lo, hi, n)``.

    None with fewer than 2 pairs (no interval exists).
    """
    from scipy import stats

    if len(diffs) < 2:
        return None
    mean, sem = float(np.mean(diffs)), float(stats.sem(diffs))
    half = float(stats.t.ppf(0.975, len(diffs) - 1)) * sem
    return mean, mean - half, mean + half, len(diffs)

"""Per-release epsilon of the local perturbations the benchmark uses.

One release = one clipped update (L2 norm <= C) perturbed once by the client. Neighbouring
inputs are any two updates the client could send, so the L2 sensitivity is ``2 C`` (the
diameter of the clipping ball), and the L1 sensitivity of an L2-clipped vector of ``d``
coordinates is ``2 C sqrt(d)``. Gaussian: the analytic Gaussian mechanism (Balle and Wang 2018),
exact for every epsilon, not the classical ``sqrt(2 ln(1.25/delta))`` bound (valid only for
epsilon < 1). Laplace: ``epsilon = Delta_1 / b`` (pure DP, delta = 0).
"""

from __future__ import annotations

import math

from scipy.optimize import brentq
from scipy.special import log_ndtr, ndtr

from fedlab.errors import FedlabError


def analytic_gaussian_delta(eps: float, sigma: float, sensitivity: float) -> float:
    """``delta(eps)`` of the Gaussian mechanism with std ``sigma`` (Balle and Wang 2018, Thm 8)."""
    a = sensitivity / (2 * sigma)
    b = eps * sigma / sensitivity
    return float(ndtr(a - b) - math.exp(eps + log_ndtr(-a - b)))


def analytic_gaussian_epsilon(sigma: float, sensitivity: float, delta: float = 1e-5) -> float:
    """Smallest ``eps`` with ``delta(eps) <= delta`` for the Gaussian mechanism.

    Raises
    ------
    FedlabError
        If ``sigma``, ``sensitivity`` or ``delta`` is out of range.
    """
    if not (sigma > 0 and sensitivity > 0 and 0 < delta < 1):
        raise FedlabError(
            f"need sigma > 0, sensitivity > 0, 0 < delta < 1; got {sigma}, {sensitivity}, {delta}"
        )
    if analytic_gaussian_delta(0.0, sigma, sensitivity) <= delta:
        return 0.0
    hi = 1.0
    while analytic_gaussian_delta(hi, sigma, sensitivity) > delta:
        hi *= 2.0
    return float(
        brentq(
            lambda e: analytic_gaussian_delta(e, sigma, sensitivity) - delta,
            0.0,
            hi,
            xtol=1e-12,
            rtol=1e-10,
        )
    )


def gaussian_epsilon(std_over_c: float, *, delta: float = 1e-5) -> float:
    """Epsilon of one release with Gaussian noise std ``std_over_c * C`` (L2 sensitivity 2C)."""
    return analytic_gaussian_epsilon(std_over_c, 2.0, delta)


def laplace_epsilon(std_over_c: float, num_params: int) -> float:
    """Epsilon of one release with Laplace noise of std ``std_over_c * C`` per coordinate.

    Scale ``b = std / sqrt(2)``; L1 sensitivity ``2 C sqrt(d)``.
    """
    if not (std_over_c > 0 and num_params >= 1):
        raise FedlabError(f"need std/C > 0 and num_params >= 1; got {std_over_c}, {num_params}")
    return 2.0 * math.sqrt(num_params) / (std_over_c / math.sqrt(2.0))

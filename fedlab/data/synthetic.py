"""The Synthetic(alpha, beta) federated benchmark of LEAF and FedProx, one client at a time.

Li et al., "Federated Optimization in Heterogeneous Networks" (MLSys 2020), section 5.1: client k
draws ``u_k ~ N(0, alpha)`` and ``B_k ~ N(0, beta)``; its softmax-regression model has
``W_k`` (60 x 10) and ``b_k`` (10) with entries ``~ N(u_k, 1)``; its inputs are
``x ~ N(v_k, Sigma)`` with ``v_k`` entries ``~ N(B_k, 1)`` and ``Sigma`` diagonal,
``Sigma_jj = j^-1.2``; its labels are ``argmax(softmax(x W_k + b_k))``. alpha sets how much the
clients' models differ, beta how much their inputs do. As in the authors' generator
(``generate_synthetic.py``), alpha and beta are the normal's scale, the bias mean is ``u_k``
too, and client sizes follow a power law: ``floor(LogNormal(4, 2)) + 50`` examples.

Unlike the authors' generator, which draws every client from one random stream, client k's
sizes, model and data come from a stream seeded by (seed, k) alone, so a client's data is made
when it is sampled, in any order, and memory does not grow with the population. The size law
is capped at ``max_size`` (LogNormal(4, 2) has a heavy tail: at a million clients its largest
draw is about 10^6 examples); the cap is a key, and ``max_size=0`` removes it.

What a global model can learn of it. ``u_k`` shifts every entry of ``W_k`` and ``b_k`` alike,
so it adds the same amount to every class's logit and never changes a label: the labels of a
client come from the zero-mean part of its own ``W_k``, drawn afresh for each client. A client's
inputs cluster around ``v_k``, so most of its examples share one or two labels, which a model can
learn for the clients it trained on (the paper's 30 devices, tested on held-out examples of the
same devices) but not for clients it never saw: on held-out clients every model is near chance.
``iid=True`` is the authors' Synthetic-IID (one ``W``, ``b`` for all clients), where a global
model can generalise to new clients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedlab.errors import FedlabError

_SIZE, _MODEL, _DATA = 0, 1, 2  # the three streams of one client
_SHARED = 2**62  # the stream of Synthetic-IID's shared model (no client id reaches it)


@dataclass(frozen=True)
class SyntheticFederation:
    """Synthetic(alpha, beta) clients, generated from (seed, client id).

    Parameters
    ----------
    alpha, beta : float
        >= 0: the scale of the clients' model means and input means.
    seed : int
    size_mu, size_sigma : float
        The log-normal of the client sizes (4 and 2 in the paper).
    min_size : int
        Added to every size (50 in the paper).
    max_size : int
        Cap on a client's size; 0: none.
    num_features, num_classes : int
        60 and 10 in the paper.
    """

    alpha: float = 1.0
    beta: float = 1.0
    seed: int = 0
    size_mu: float = 4.0
    size_sigma: float = 2.0
    min_size: int = 50
    max_size: int = 10_000
    num_features: int = 60
    num_classes: int = 10
    iid: bool = False

    def __post_init__(self) -> None:
        numbers = (self.alpha, self.beta, self.size_mu, self.size_sigma)
        if not all(np.isfinite(numbers)) or min(self.alpha, self.beta, self.size_sigma) < 0:
            raise FedlabError(
                f"synthetic alpha {self.alpha}, beta {self.beta} and size sigma "
                f"{self.size_sigma} must be finite and >= 0 (the paper's are 0, 0.5 or 1)"
            )
        if (
            self.min_size < 1
            or self.max_size < 0
            or (self.max_size and self.max_size < self.min_size)
        ):
            raise FedlabError(
                f"synthetic sizes: min-size {self.min_size} must be >= 1 and max-size "
                f"{self.max_size} 0 (no cap) or >= min-size"
            )
        if self.num_features < 1 or self.num_classes < 2:
            raise FedlabError("synthetic data needs >= 1 feature and >= 2 classes")

    def _rng(self, client: int, stream: int) -> np.random.Generator:
        if client < 0:
            raise FedlabError(f"client id {client} is negative; ids are 0, 1, 2, ...")
        return np.random.default_rng([self.seed, int(client), stream])

    def size(self, client: int) -> int:
        """Number of examples client ``client`` holds."""
        draw = self._rng(client, _SIZE).lognormal(self.size_mu, self.size_sigma)
        size = int(min(draw, 2**31)) + self.min_size
        return min(size, self.max_size) if self.max_size else size

    def client_model(self, client: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The client's generative parameters ``(W (features x classes), b, v)``.

        With ``iid``, the authors' Synthetic-IID: one ``W``, ``b ~ N(0, 1)`` for every client
        and ``v = B_k`` in every coordinate.
        """
        rng = self._rng(client, _MODEL)
        u, big_b = rng.normal(0.0, self.alpha), rng.normal(0.0, self.beta)
        weights = rng.normal(u, 1.0, (self.num_features, self.num_classes))
        bias = rng.normal(u, 1.0, self.num_classes)
        v = rng.normal(big_b, 1.0, self.num_features)
        if self.iid:
            shared = np.random.default_rng([self.seed, _SHARED])
            weights = shared.normal(0.0, 1.0, (self.num_features, self.num_classes))
            bias = shared.normal(0.0, 1.0, self.num_classes)
            v = np.full(self.num_features, big_b)
        return weights, bias, v

    def client_data(self, client: int) -> tuple[np.ndarray, np.ndarray]:
        """``(x float32 (n, features), y int64 (n,))`` of client ``client``."""
        weights, bias, v = self.client_model(client)
        n = self.size(client)
        std = np.arange(1, self.num_features + 1, dtype=np.float64) ** -0.6  # Sigma_jj = j^-1.2
        x = v + std * self._rng(client, _DATA).standard_normal((n, self.num_features))
        y = np.argmax(x @ weights + bias, axis=1)  # softmax is monotone: argmax of the logits
        return x.astype(np.float32), y.astype(np.int64)

"""FedFoA: federated self-supervised learning by aggregating feature-relation matrices.

What the abstract states (Liu, Guo, Zhang et al., arXiv 2211.07364; TNNLS 2025; no code is
public): clients train self-supervised models on non-IID data; each extracts a cross-feature
relation matrix from its local representations with a factorization-based method; the server
aggregates these relation matrices rather than (only) model weights, which is cheaper to upload
and works when clients run different architectures; the aggregated relation guides each
client's local training, aligning the feature spaces of the clients.

What we chose where it is silent, and why:

* **Relation matrix.** ``R_k = Zs^T Zs / n_k``, the D x D correlation of the standardized
  projector outputs over client k's whole partition (``clients/ssl/relation.py``). It needs only
  the projector size D to agree, so a CNN and a ResNet can share it; it is symmetric PSD with a
  unit diagonal, which makes it scale-free across architectures.
* **Factorization.** Clients upload the top-``r`` eigenpairs ``(lambda, U)``: ``r (D + 1)``
  floats instead of D^2 or a model's weights. The server rebuilds ``R_k = U diag(lambda) U^T``
  before anything else. Eigenvectors are defined only up to sign and, for repeated eigenvalues,
  rotation, so averaging factors across clients would be meaningless: we never do.
* **Aggregation.** ``R = sum_k n_k R_k / sum_k n_k`` (weighted by examples, as FedAvg weighs
  weights), sent back as the ArrayRecord key ``fedfoa.relation``. With ``uniform_weights`` the
  mean is unweighted: that is what a central-DP wrapper needs, clipping and noising the rebuilt
  matrices (a wrapper may hand this strategy replies that already carry ``fedfoa.relation``
  instead of factors; see :func:`rebuild_reply`).
* **Alignment.** Each client adds ``lambda * mean_offdiag((corr(Z_batch) - R)^2)`` to its SSL
  loss, after ``warmup-rounds`` rounds (before that the global matrix is of untrained models).
  The diagonal is left out because a rank-r reconstruction cannot have the unit diagonal.
* **Composition.** With ``weight_averaging`` the replies also carry model weights, averaged
  by examples as in FedAvg (homogeneous encoders only); the relation keys ride alongside.
* **Flower's rules.** Replies are checked with Flower's own reply-consistency check and averaged
  with Flower's own record helpers (through :mod:`fedlab.flower_compat`), so FedFoA refuses
  what FedAvg refuses (``InconsistentMessageReplies``) and averages as FedAvg averages.

Client models never leave the clients in the heterogeneous setting, so the linear probe runs
on the clients (``configure_evaluate`` every ``probe-every`` rounds) and this strategy keeps
the per-client results for the server's ``evaluate_fn``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import numpy as np
from fedlab.strategies.relation_matrices import rebuild
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedlab.errors import FedlabError
from fedlab.flower_compat import (
    aggregate_arrayrecords,
    aggregate_metricrecords,
    validate_message_reply_consistency,
)
from fedlab.registry import STRATEGIES

log = logging.getLogger("fedlab")

EIGVALS = "fedfoa.eigvals"
EIGVECS = "fedfoa.eigvecs"
RELATION = "fedfoa.relation"
RELATION_KEYS = (EIGVALS, EIGVECS, RELATION)


def reply_relation(arrays: ArrayRecord) -> np.ndarray:
    """The D x D relation matrix a reply stands for: rebuilt from factors, or as sent.

    Raises
    ------
    FedlabError
        If the reply carries neither factors nor a matrix.
    """
    if RELATION in arrays:
        return np.asarray(arrays[RELATION].numpy(), dtype=np.float64)
    if EIGVALS in arrays and EIGVECS in arrays:
        return rebuild(arrays[EIGVALS].numpy(), arrays[EIGVECS].numpy())
    raise FedlabError(
        f"a FedFoA reply must carry {EIGVALS!r} and {EIGVECS!r} (or {RELATION!r}); got keys "
        f"{sorted(arrays)}; are the clients running the fedfoa ClientApp?"
    )


def rebuild_reply(content: RecordDict, key: str = "arrays") -> RecordDict:
    """A copy of a reply whose factors are replaced by the rebuilt matrix ``fedfoa.relation``.

    For wrappers (central DP) that must clip and noise the matrices, not the factors.
    """
    arrays = content[key]
    out = {k: v for k, v in arrays.items() if k not in RELATION_KEYS}
    out[RELATION] = Array(reply_relation(arrays).astype(np.float32))
    new = RecordDict({name: rec for name, rec in content.items() if name != key})
    new[key] = ArrayRecord(out)
    return new


def aggregate_relations(matrices: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Weighted mean of rebuilt relation matrices; all must be D x D with the same D.

    Raises
    ------
    FedlabError
        If the clients' matrices differ in size (their projectors' ``proj-dim`` differ).
    """
    if not matrices:
        raise FedlabError("no relation matrices to aggregate")
    sizes = sorted({m.shape for m in matrices})
    if len(sizes) > 1:
        raise FedlabError(
            f"clients sent relation matrices of different sizes {sizes}; every client's "
            "projector must have the same output size (run-config key proj-dim)"
        )
    w = np.asarray(weights, dtype=np.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise FedlabError(f"aggregation weights must be >= 0 and not all 0, got {w.tolist()}")
    r = _weighted_mean([{RELATION: np.asarray(m, np.float64)} for m in matrices], weights)[RELATION]
    return (r + r.T) / 2


@STRATEGIES.register("fedfoa")
class FedFoA(FedAvg):
    """Aggregate relation matrices (and, optionally, weights); keep the clients' probe results.

    Parameters
    ----------
    weight_averaging : bool
        Also average the model weights in the replies (homogeneous encoders).
    uniform_weights : bool
        Mean of the matrices with equal weights (what central DP needs), not by examples.
    probe_rounds : iterable of int
        Rounds after which clients run the linear probe (``configure_evaluate``); none: never.
    **kwargs
        Passed to Flower's FedAvg (sampling: ``fraction_train``, ``min_train_nodes``, ...).
    """

    #: The aggregate is a (weighted) mean of the replies' matrices and arrays, so central DP
    #: may wrap it (with weight 1 per reply the mean moves by at most C/m per client).
    dp_mean_aggregation = True

    def __init__(
        self,
        *,
        weight_averaging: bool = False,
        uniform_weights: bool = False,
        probe_rounds: Iterable[int] = (),
        **kwargs,
    ) -> None:
        kwargs.setdefault("fraction_evaluate", 1.0)
        super().__init__(**kwargs)
        self.weight_averaging = weight_averaging
        self.uniform_weights = uniform_weights
        self.probe_rounds = set(probe_rounds)
        self.probe_results: dict[int, dict[str, float]] = {}

    def summary(self) -> None:
        log.info(
            "FedFoA: weight averaging %s, uniform weights %s, probe rounds %s",
            self.weight_averaging,
            self.uniform_weights,
            sorted(self.probe_rounds),
        )

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Rebuild every reply's relation matrix, average them (and weights), report bytes."""
        valid = [r for r in replies if not r.has_error()]
        if not valid:
            return None, None
        contents = [r.content for r in valid]
        if self.weight_averaging:
            _check_same_model(contents)  # before Flower's check: its message names no fix
        validate_message_reply_consistency(contents, self.weighted_by_key, check_arrayrecord=True)
        examples = [float(c["metrics"][self.weighted_by_key]) for c in contents]
        weights = [1.0] * len(contents) if self.uniform_weights else examples
        relation = aggregate_relations([reply_relation(c["arrays"]) for c in contents], weights)
        out: dict[str, Array] = {}
        if self.weight_averaging:
            out.update(_average_weights(contents, weights))
        out[RELATION] = Array(relation.astype(np.float32))
        uploaded = [_nbytes(c["arrays"]) for c in contents]
        # Metrics are always weighted by examples, as FedAvg weighs them, even with uniform weights
        metrics = aggregate_metricrecords(contents, self.weighted_by_key)
        metrics.update(
            {
                "upload-bytes-per-client": float(np.mean(uploaded)),
                "upload-bytes-total": float(np.sum(uploaded)),
                "relation-rank-mean": _mean_rank(contents),
            }
        )
        return ArrayRecord(out), metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Ask every node for its linear probe, in the probe rounds only."""
        if server_round not in self.probe_rounds:
            return []
        config["server-round"] = server_round
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return [
            Message(content=record, message_type=MessageType.EVALUATE, dst_node_id=node)
            for node in grid.get_node_ids()
        ]

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Per-client probe accuracies, their mean, std and per-encoder means."""
        valid = [r.content for r in replies if not r.has_error()]
        if not valid:
            return None
        validate_message_reply_consistency(valid, self.weighted_by_key, check_arrayrecord=False)
        rows = [c["metrics"] for c in valid]
        metrics = probe_summary(rows)
        self.probe_results[server_round] = dict(metrics)
        return MetricRecord(metrics)


def probe_summary(rows: list[Mapping[str, float]]) -> dict[str, float]:
    """``probe-acc-p<pid>`` per client, ``probe-acc-mean``/``-std``, ``probe-acc-<encoder>``, and
    the means of ``probe-acc-own``/``-unseen`` over the clients with such held-out examples."""
    out: dict[str, float] = {}
    by_encoder: dict[str, list[float]] = {}
    accs = []
    for row in rows:
        acc = float(row["probe-acc"])
        accs.append(acc)
        out[f"probe-acc-p{int(row['partition-id'])}"] = acc
        by_encoder.setdefault(f"probe-acc-enc{int(row['encoder-id'])}", []).append(acc)
    out["probe-acc-mean"] = float(np.mean(accs))
    out["probe-acc-std"] = float(np.std(accs))
    out.update({k: float(np.mean(v)) for k, v in by_encoder.items()})
    for split in ("own", "unseen"):  # the held-out accuracy on classes a client did / did not hold
        values = [float(row[f"probe-acc-{split}"]) for row in rows
                  if float(row.get(f"probe-n-{split}", 0)) > 0]  # fmt: skip
        if values:
            out[f"probe-acc-{split}-mean"] = float(np.mean(values))
    return out


def _model_arrays(content: RecordDict) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in content["arrays"].items() if k not in RELATION_KEYS}


def _check_same_model(contents: list[RecordDict]) -> None:
    names = [k for k in contents[0]["arrays"] if k not in RELATION_KEYS]
    for c in contents[1:]:
        if [k for k in c["arrays"] if k not in RELATION_KEYS] != names:
            raise FedlabError(
                "weight averaging needs every client to run the same model, but their weights "
                'differ in names; use one encoder (encoders="cnn") or weight-averaging=false'
            )


def _average_weights(contents: list[RecordDict], weights: list[float]) -> dict[str, Array]:
    """FedAvg of the model weights with ``weights``; each keeps the dtype the clients sent."""
    _check_same_model(contents)
    models = [_model_arrays(c) for c in contents]
    for name, first in models[0].items():
        # Flower's helper would broadcast mismatched shapes instead of refusing them
        if any(m[name].shape != first.shape for m in models[1:]):
            raise FedlabError(f"weight {name!r} differs in shape across clients; use one encoder")
    as_float = [{k: v.astype(np.float64) for k, v in m.items()} for m in models]
    mean = _weighted_mean(as_float, weights)
    return {k: Array(np.asarray(v).astype(models[0][k].dtype)) for k, v in mean.items()}


def _weighted_mean(
    arrays: list[dict[str, np.ndarray]], weights: list[float]
) -> dict[str, np.ndarray]:
    """``sum_k w_k a_k / sum_k w_k`` per key, computed by Flower's ``aggregate_arrayrecords``."""
    records = [
        RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in a.items()}),
                    "metrics": MetricRecord({"weight": float(w)})})
        for a, w in zip(arrays, weights, strict=True)
    ]  # fmt: skip
    return {k: v.numpy() for k, v in aggregate_arrayrecords(records, "weight").items()}


def _nbytes(arrays: ArrayRecord) -> int:
    return int(sum(len(a.data) for a in arrays.values()))


def _mean_rank(contents: list[RecordDict]) -> float:
    ranks = [len(c["arrays"][EIGVALS].numpy()) for c in contents if EIGVALS in c["arrays"]]
    return float(np.mean(ranks)) if ranks else 0.0

"""Split a labelled dataset into client partitions with flwr-datasets' partitioners.

The partition of a client depends only on (labels, method, number of partitions, seed), so
every Ray actor computes the same split without sharing state.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from fedlab.errors import FedlabError

PARTITIONERS = ("iid", "dirichlet", "shards")


def partition_indices(
    labels: np.ndarray,
    num_partitions: int,
    *,
    method: str = "iid",
    seed: int = 0,
    alpha: float = 0.5,
    shards_per_partition: int = 2,
    min_partition_size: int = 1,
) -> list[np.ndarray]:
    """Indices of each partition, sorted within a partition.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
    num_partitions : int
        Number of clients (supernodes).
    method : {"iid", "dirichlet", "shards"}
        ``iid`` shuffles then splits evenly; ``dirichlet`` draws each class's share per
        partition from Dir(alpha) (Flower's ``DirichletPartitioner``); ``shards`` sorts by label
        and gives each partition ``shards_per_partition`` shards (``ShardPartitioner``).
    seed : int
        Fixes the split.
    min_partition_size : int
        Dirichlet redraws until every partition holds at least this many examples.
    """
    labels = np.ascontiguousarray(labels)
    return list(_partition(labels.tobytes(), labels.dtype.str, num_partitions, method, seed,
                           alpha, shards_per_partition, min_partition_size))  # fmt: skip


@lru_cache(maxsize=16)
def _partition(
    label_bytes: bytes,
    dtype: str,
    num_partitions: int,
    method: str,
    seed: int,
    alpha: float,
    shards_per_partition: int,
    min_partition_size: int,
) -> tuple[np.ndarray, ...]:
    """Memoised per process (each ClientApp call asks again); the arrays are read-only."""
    labels = np.frombuffer(label_bytes, dtype=dtype)
    n = len(labels)
    if num_partitions < 1:
        raise FedlabError(f"the number of partitions must be >= 1, got {num_partitions}")
    if num_partitions * max(min_partition_size, 1) > n:
        raise FedlabError(
            f"{num_partitions} partitions (num-supernodes) need at least "
            f"{num_partitions * max(min_partition_size, 1)} training examples, the dataset has "
            f"{n}; use at most {n // max(min_partition_size, 1)} supernodes or a larger dataset"
        )
    order = np.random.default_rng(seed).permutation(n)
    if method == "iid":
        # IidPartitioner takes contiguous shards of the shuffled table (`Dataset.shard`), which is
        # exactly np.array_split; doing it here spares every process the ~1.5 s import of
        # `datasets` (tests/core/test_data.py checks the two agree).
        return _read_only(np.sort(part) for part in np.array_split(order, num_partitions))
    from datasets import Dataset
    from flwr_datasets.partitioner import DirichletPartitioner, ShardPartitioner

    table = Dataset.from_dict({"index": order, "label": labels[order]})
    if method == "dirichlet":
        partitioner = DirichletPartitioner(
            num_partitions,
            "label",
            alpha,
            min_partition_size=min_partition_size,
            self_balancing=False,
            shuffle=True,
            seed=seed,
        )
    elif method == "shards":
        if num_partitions * shards_per_partition > n:
            raise FedlabError(
                f"{num_partitions} partitions x {shards_per_partition} shards exceed the {n} "
                "examples; lower shards-per-partition or num-supernodes"
            )
        partitioner = ShardPartitioner(
            num_partitions,
            "label",
            num_shards_per_partition=shards_per_partition,
            shuffle=True,
            seed=seed,
        )
    else:
        raise FedlabError(f"partitioner {method!r} is not one of: {', '.join(PARTITIONERS)}")
    partitioner.dataset = table
    try:
        parts = [
            np.sort(np.asarray(partitioner.load_partition(i)["index"], dtype=np.int64))
            for i in range(num_partitions)
        ]
    except ValueError as exc:
        raise FedlabError(
            f"partitioner {method!r} cannot split {n} examples into {num_partitions} partitions: "
            f"{exc}; use fewer supernodes or a larger dirichlet-alpha"
        ) from None
    return _read_only(parts)


def _read_only(parts: Any) -> tuple[np.ndarray, ...]:
    """The partitions as a tuple of read-only arrays (they are memoised and shared)."""
    out = tuple(parts)
    for part in out:
        part.flags.writeable = False
    return out


def train_test_split(
    labels: np.ndarray, test_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split into (train indices, held-out test indices), fixed by ``seed``."""
    from sklearn.model_selection import train_test_split as sk_split

    idx = np.arange(len(labels))
    train, test = sk_split(idx, test_size=test_fraction, random_state=seed, stratify=labels)
    return np.sort(train), np.sort(test)

"""The zero-shot data contract: inputs, class attributes and the seen/unseen protocol.

Every ZSL source (the xlsa17 files, the offline shapes and digits benchmarks) produces a
:class:`ZslData`, checked once on construction: the attribute matrix has one row per class,
seen and unseen classes do not overlap, and each split holds only the classes it may.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from fedlab.errors import FedlabError


@dataclass(frozen=True)
class ZslData:
    """Examples (features or images, loaded on demand) with the ZSL splits.

    Parameters
    ----------
    load : callable
        ``indices -> tensor``: float32 ``(n, D)`` features or ``(n, C, H, W)`` images of those
        examples (procedural images are rendered only when asked for).
    labels : ndarray of int, shape (N,)
        Class ids, rows of ``attributes``.
    attributes : ndarray of float, shape (num_classes, A)
        One attribute vector per class.
    class_names : list of str
        ``num_classes`` names.
    seen, unseen : ndarray of int
        Disjoint class ids; together they cover the classes of the splits.
    trainval, test_seen, test_unseen : ndarray of int
        Example indices: training data (seen classes), held-out seen test data (GZSL),
        unseen test data.
    name : str
    """

    load: Callable[[np.ndarray], torch.Tensor]
    labels: np.ndarray
    attributes: np.ndarray
    class_names: list[str]
    seen: np.ndarray
    unseen: np.ndarray
    trainval: np.ndarray
    test_seen: np.ndarray
    test_unseen: np.ndarray
    name: str

    def __post_init__(self) -> None:
        check_protocol(
            self.labels, self.attributes, self.seen, self.unseen,
            self.trainval, self.test_seen, self.test_unseen, name=self.name,
        )  # fmt: skip
        if len(self.class_names) != len(self.attributes):
            raise FedlabError(
                f"{self.name}: {len(self.class_names)} class names but {len(self.attributes)} "
                "attribute rows; give one name per class"
            )

    @property
    def num_classes(self) -> int:
        return len(self.attributes)

    def subset(self, indices: np.ndarray) -> ZslTensors:
        """The examples at ``indices`` as a training dataset of (input, class id)."""
        idx = np.asarray(indices, dtype=np.int64)
        return ZslTensors(self.load(idx), torch.as_tensor(self.labels[idx], dtype=torch.long))


def check_protocol(
    labels: np.ndarray,
    attributes: np.ndarray,
    seen: np.ndarray,
    unseen: np.ndarray,
    trainval: np.ndarray,
    test_seen: np.ndarray,
    test_unseen: np.ndarray,
    *,
    name: str,
) -> None:
    """Refuse inconsistent ZSL splits with a one-line :class:`FedlabError`.

    Raises
    ------
    FedlabError
        If the attribute rows do not match the classes in ``labels``, seen and unseen classes
        overlap, or a split holds classes (or indices) it must not.
    """
    labels = np.asarray(labels)
    if attributes.ndim != 2:
        raise FedlabError(
            f"{name}: the attribute matrix must be 2-D (classes x attributes), got shape "
            f"{attributes.shape}"
        )
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    if labels.min(initial=0) < 0 or attributes.shape[0] != num_classes:
        raise FedlabError(
            f"{name}: the attribute matrix has {attributes.shape[0]} class rows but the labels "
            f"name {num_classes} classes (ids 0..{num_classes - 1}); give one attribute row per "
            "class (xlsa17's att is attributes x classes and gets transposed)"
        )
    overlap = np.intersect1d(seen, unseen)
    if overlap.size:
        raise FedlabError(
            f"{name}: classes {overlap.tolist()} are both seen and unseen; zero-shot splits "
            "need disjoint seen and unseen classes"
        )
    for split, idx, allowed in (
        ("trainval", trainval, seen),
        ("test_seen", test_seen, seen),
        ("test_unseen", test_unseen, unseen),
    ):
        idx = np.asarray(idx)
        if idx.size and (idx.min() < 0 or idx.max() >= len(labels)):
            raise FedlabError(
                f"{name}: {split} indices must lie in 0..{len(labels) - 1}, got "
                f"{idx.min()}..{idx.max()}"
            )
        stray = np.setdiff1d(labels[idx], allowed)
        if stray.size:
            raise FedlabError(
                f"{name}: {split} holds classes {stray.tolist()[:10]} that are not among its "
                f"allowed ({'seen' if allowed is seen else 'unseen'}) classes"
            )
    if np.intersect1d(trainval, test_seen).size:
        raise FedlabError(f"{name}: trainval and test_seen share examples; hold test data out")


@dataclass
class ZslTensors(Dataset):
    """(input, class id) pairs for the training loop; ``subset`` as ImageDataset has."""

    inputs: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[index], self.labels[index]

    def subset(self, indices: np.ndarray) -> ZslTensors:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return ZslTensors(self.inputs[idx], self.labels[idx])


def class_disjoint_partition(
    labels: np.ndarray, num_partitions: int, *, seed: int = 0
) -> list[np.ndarray]:
    """Deal whole classes to partitions: no class is held by two clients (non-IID).

    Classes are shuffled by ``seed`` and dealt round-robin, so partition sizes differ by at
    most one class.

    Raises
    ------
    FedlabError
        If there are more partitions than classes.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if num_partitions < 1 or num_partitions > len(classes):
        raise FedlabError(
            f"{num_partitions} partitions (num-supernodes) cannot hold disjoint classes of the "
            f"{len(classes)} seen classes; use 1..{len(classes)} supernodes"
        )
    order = np.random.default_rng(seed).permutation(classes)
    return [
        np.flatnonzero(np.isin(labels, order[p::num_partitions])) for p in range(num_partitions)
    ]


def stratified_holdout(
    labels: np.ndarray, indices: np.ndarray, fraction: float, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (kept, held out) with ``fraction`` of each class held out."""
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for c in np.unique(labels[indices]):
        idx = rng.permutation(indices[labels[indices] == c])
        n_held = max(1, round(fraction * len(idx)))
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def validation_protocol(
    data: ZslData, num_val_classes: int, *, seed: int = 0, test_fraction: float = 0.2
) -> ZslData:
    """A class-disjoint validation task built from the *seen* training data only.

    ``num_val_classes`` seen classes play the unseen ones (all their trainval examples are the
    unseen test set); the other seen classes keep ``1 - test_fraction`` of their trainval
    examples for training and the rest as held-out seen test data. Nothing of the real unseen
    classes or of the real test splits is touched, so hyperparameters (the MLP's width, the
    GZSL calibration) chosen on it are chosen honestly.
    """
    if not 1 <= num_val_classes < len(data.seen):
        raise FedlabError(
            f"{num_val_classes} validation classes from {len(data.seen)} seen classes: "
            f"use 1..{len(data.seen) - 1}"
        )
    rng = np.random.default_rng(seed)
    val_classes = np.sort(rng.choice(data.seen, num_val_classes, replace=False))
    train_classes = np.setdiff1d(data.seen, val_classes)
    labels = data.labels[data.trainval]
    kept = data.trainval[np.isin(labels, train_classes)]
    train, held = stratified_holdout(data.labels, kept, test_fraction, seed=seed)
    return ZslData(
        load=data.load, labels=data.labels, attributes=data.attributes,
        class_names=data.class_names, seen=train_classes, unseen=val_classes, trainval=train,
        test_seen=held, test_unseen=data.trainval[np.isin(labels, val_classes)],
        name=f"{data.name}/validation",
    )  # fmt: skip

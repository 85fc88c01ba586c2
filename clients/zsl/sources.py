"""Build the :class:`~fedlab.clients.zsl.data.ZslData` of a run: shapes, digits, compo or xlsa17."""

from __future__ import annotations

import numpy as np
import torch
from fedlab.clients.zsl import benchmarks as bm
from fedlab.clients.zsl import compo
from fedlab.clients.zsl.data import ZslData, stratified_holdout
from fedlab.clients.zsl.xlsa17 import load_xlsa17

from fedlab.errors import FedlabError

ZSL_DATASETS = ("shapes", "digits", "compo", "xlsa17")
REPRESENTATIONS = ("features", "images")
SHAPES_PER_CLASS = 150
HOLDOUT_SEED = 0  # the held-out seen test split is fixed, whatever the run's seed


def _protocol(labels: np.ndarray, unseen: tuple[int, ...], test_fraction: float) -> dict:
    unseen_arr = np.asarray(unseen)
    seen = np.setdiff1d(np.unique(labels), unseen_arr)
    seen_idx = np.flatnonzero(np.isin(labels, seen))
    trainval, test_seen = stratified_holdout(labels, seen_idx, test_fraction, seed=HOLDOUT_SEED)
    return {
        "seen": seen,
        "unseen": unseen_arr,
        "trainval": trainval,
        "test_seen": test_seen,
        "test_unseen": np.flatnonzero(np.isin(labels, unseen_arr)),
    }


def _check_split(split: int, splits: tuple, dataset: str) -> tuple[int, ...]:
    if not 0 <= split < len(splits):
        raise FedlabError(
            f"zsl-split {split} does not exist for {dataset}; use 0..{len(splits) - 1}"
        )
    return splits[split]


def shapes_data(
    split: int, representation: str, test_fraction: float, per_class: int = SHAPES_PER_CLASS
) -> ZslData:
    """The procedural shapes benchmark (12 classes, 11 exact attributes)."""
    labels = bm.shapes_labels(per_class)

    def load(idx: np.ndarray) -> torch.Tensor:
        images = bm.render_shapes(idx, per_class)
        if representation == "images":
            return torch.from_numpy(images)
        return bm.random_filter_features(images)

    return ZslData(
        load=load,
        labels=labels,
        attributes=bm.shape_attributes(),
        class_names=bm.shape_class_names(),
        name=f"shapes/split{split}",
        **_protocol(labels, _check_split(split, bm.SHAPES_SPLITS, "shapes"), test_fraction),
    )


def digits_data(split: int, representation: str, test_fraction: float) -> ZslData:
    """scikit-learn's digits, upsampled to 16x16, with the hand-written digit attributes."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    labels = np.asarray(bunch.target, dtype=np.int64)
    small = torch.from_numpy((bunch.images / 16.0).astype(np.float32))[:, None]

    def load(idx: np.ndarray) -> torch.Tensor:
        images = torch.nn.functional.interpolate(
            small[torch.as_tensor(idx, dtype=torch.long)], size=(16, 16), mode="bilinear"
        )
        return images if representation == "images" else bm.random_filter_features(images)

    return ZslData(
        load=load,
        labels=labels,
        attributes=bm.DIGIT_ATTRIBUTES,
        class_names=[str(d) for d in range(10)],
        name=f"digits/split{split}",
        **_protocol(labels, _check_split(split, bm.DIGITS_SPLITS, "digits"), test_fraction),
    )


def compo_data(split: int, representation: str, test_fraction: float) -> ZslData:
    """The compositional benchmark (64 classes, 16 unseen, 12 exact attributes)."""
    labels = compo.compo_labels()
    unseen = compo.compo_split(split)

    def load(idx: np.ndarray) -> torch.Tensor:
        index = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        source = compo.all_images() if representation == "images" else compo.all_features()
        return source[index]

    return ZslData(
        load=load,
        labels=labels,
        attributes=compo.compo_attributes(),
        class_names=compo.class_names(),
        name=f"compo/split{split}",
        **_protocol(labels, tuple(int(c) for c in unseen), test_fraction),
    )


def load_zsl(
    dataset: str,
    *,
    split: int = 0,
    representation: str = "features",
    data_path: str = "",
    test_fraction: float = 0.2,
) -> ZslData:
    """The ZSL data named by the run config.

    Raises
    ------
    FedlabError
        Unknown dataset or split, or images asked of xlsa17 (it ships features only).
    """
    if dataset not in ZSL_DATASETS:
        raise FedlabError(f"zsl-dataset {dataset!r} is not one of: {', '.join(ZSL_DATASETS)}")
    if representation not in REPRESENTATIONS:
        raise FedlabError(f"representation {representation!r} is not one of: features, images")
    if dataset == "xlsa17":
        if representation == "images":
            raise FedlabError(
                "xlsa17 ships ResNet-101 features, not images; (AR)^2 needs images and a "
                "backbone: use zsl-dataset=shapes or digits"
            )
        return load_xlsa17(data_path)
    if dataset == "shapes":
        return shapes_data(split, representation, test_fraction)
    if dataset == "compo":
        return compo_data(split, representation, test_fraction)
    return digits_data(split, representation, test_fraction)

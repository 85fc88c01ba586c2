"""Reader for the standard xlsa17 ZSL splits (Xian et al., "Zero-Shot Learning - The Good, the
Bad and the Ugly"): ``res101.mat`` and ``att_splits.mat`` from a local folder.

Layout (MATLAB, 1-based indices), as shipped for AWA1/AWA2/CUB/SUN/APY:

- ``res101.mat``: ``features`` (2048 x N ResNet-101 features), ``labels`` (N x 1, class ids
  1..C), ``image_files`` (N x 1 cell, optional here).
- ``att_splits.mat``: ``att`` (A x C, L2-normalised class attributes), ``allclasses_names``
  (C x 1 cell), ``trainval_loc``, ``test_seen_loc``, ``test_unseen_loc`` (and ``train_loc``,
  ``val_loc``: the class-disjoint validation split), each n x 1, 1-based rows of ``features``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from fedlab.clients.zsl.data import ZslData

from fedlab.errors import FedlabError

FEATURES_FILE = "res101.mat"
SPLITS_FILE = "att_splits.mat"
SPLIT_KEYS = ("trainval_loc", "test_seen_loc", "test_unseen_loc")


def _load_mat(path: Path, required: tuple[str, ...]) -> dict:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(str(path))
    except NotImplementedError:
        raise FedlabError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which scipy cannot read; re-save it with "
            "MATLAB's save(..., '-v7') or use the original xlsa17 files"
        ) from None
    except (MatReadError, ValueError, OSError, TypeError) as exc:
        raise FedlabError(f"{path} is not a readable MATLAB .mat file ({exc})") from None
    missing = [k for k in required if k not in mat]
    if missing:
        raise FedlabError(
            f"{path} lacks the xlsa17 variables {missing}; it has "
            f"{sorted(k for k in mat if not k.startswith('__'))}"
        )
    return mat


def _names(cell: np.ndarray | None, count: int) -> list[str]:
    if cell is None:
        return [f"class{i}" for i in range(count)]
    flat = np.asarray(cell).reshape(-1)
    return [str(np.asarray(x).reshape(-1)[0]) if np.asarray(x).size else "" for x in flat]


def _locations(mat: dict, key: str, n: int, path: Path) -> np.ndarray:
    loc = np.asarray(mat[key]).reshape(-1).astype(np.int64)
    if loc.size and (loc.min() < 1 or loc.max() > n):
        raise FedlabError(
            f"{path}: {key} must hold 1-based rows 1..{n} of res101.mat's features, got "
            f"{loc.min()}..{loc.max()}; are the two files from the same dataset?"
        )
    return loc - 1


def load_xlsa17(data_path: str, name: str = "xlsa17") -> ZslData:
    """Load one xlsa17 dataset folder (holding ``res101.mat`` and ``att_splits.mat``).

    Returns
    -------
    ZslData
        Features ``(N, 2048)`` float32, 0-based labels, attributes ``(C, A)`` (``att``
        transposed), seen classes = those of ``trainval_loc``, unseen = those of
        ``test_unseen_loc``.

    Raises
    ------
    FedlabError
        Missing folder or files, missing variables, indices out of range, an attribute matrix
        whose class count disagrees with the labels, or overlapping seen/unseen classes.
    """
    if not data_path:
        raise FedlabError(
            "zsl-dataset xlsa17 needs data-path: a folder holding res101.mat and att_splits.mat; "
            "set data-path=/path/to/xlsa17/data/CUB"
        )
    folder = Path(data_path).expanduser()
    for f in (FEATURES_FILE, SPLITS_FILE):
        if not (folder / f).is_file():
            raise FedlabError(
                f"data-path {data_path!r} has no {f}; an xlsa17 dataset folder holds "
                f"{FEATURES_FILE} and {SPLITS_FILE}"
            )
    res = _load_mat(folder / FEATURES_FILE, ("features", "labels"))
    att = _load_mat(folder / SPLITS_FILE, ("att", *SPLIT_KEYS))
    features = np.asarray(res["features"], dtype=np.float32)
    labels = np.asarray(res["labels"]).reshape(-1).astype(np.int64) - 1
    if features.ndim != 2 or features.shape[1] != len(labels):
        raise FedlabError(
            f"{folder / FEATURES_FILE}: features must be D x N with N = {len(labels)} labels, "
            f"got shape {features.shape}"
        )
    attributes = np.asarray(att["att"], dtype=np.float32).T
    n = len(labels)
    trainval, test_seen, test_unseen = (_locations(att, k, n, folder / SPLITS_FILE)
                                        for k in SPLIT_KEYS)  # fmt: skip
    table = torch.from_numpy(np.ascontiguousarray(features.T))
    return ZslData(
        load=lambda idx: table[torch.as_tensor(idx, dtype=torch.long)],
        labels=labels,
        attributes=attributes,
        class_names=_names(att.get("allclasses_names"), attributes.shape[0]),
        seen=np.unique(labels[trainval]),
        unseen=np.unique(labels[test_unseen]),
        trainval=trainval,
        test_seen=test_seen,
        test_unseen=test_unseen,
        name=name,
    )

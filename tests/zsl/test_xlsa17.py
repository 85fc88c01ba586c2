"""The xlsa17 reader on tiny res101.mat / att_splits.mat files written in the real layout."""

from __future__ import annotations

import numpy as np
import pytest
from fedlab.clients.zsl.xlsa17 import load_xlsa17
from scipy.io import savemat

from fedlab.errors import FedlabError

# 4 classes (ids 1..4 in the files), 10 examples: classes 1, 2 seen; 3, 4 unseen.
LABELS = np.array([1, 1, 2, 2, 1, 2, 3, 3, 4, 4])
TRAINVAL = np.array([1, 2, 3, 4])  # 1-based rows
TEST_SEEN = np.array([5, 6])
TEST_UNSEEN = np.array([7, 8, 9, 10])


def _write(folder, *, att=None, test_unseen=TEST_UNSEEN, labels=LABELS, features=None):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(6, len(labels))) if features is None else features
    att = rng.uniform(size=(3, 4)) if att is None else att  # A x C, as xlsa17 stores it
    names = np.empty((att.shape[1], 1), dtype=object)
    for i in range(att.shape[1]):
        names[i, 0] = f"{i + 1:03d}.class_{i}"
    savemat(folder / "res101.mat", {
        "features": features, "labels": labels.reshape(-1, 1).astype(np.float64),
        "image_files": np.array([[f"img{i}.jpg"] for i in range(len(labels))], dtype=object),
    })  # fmt: skip
    savemat(folder / "att_splits.mat", {
        "att": att, "original_att": att * 100, "allclasses_names": names,
        "trainval_loc": TRAINVAL.reshape(-1, 1), "test_seen_loc": TEST_SEEN.reshape(-1, 1),
        "test_unseen_loc": np.asarray(test_unseen).reshape(-1, 1),
        "train_loc": TRAINVAL[:2].reshape(-1, 1), "val_loc": TRAINVAL[2:].reshape(-1, 1),
    })  # fmt: skip
    return features, att


def test_loads_the_real_layout(tmp_path):
    features, att = _write(tmp_path)
    data = load_xlsa17(str(tmp_path))
    np.testing.assert_array_equal(data.labels, LABELS - 1)
    np.testing.assert_allclose(data.attributes, att.T, rtol=1e-6)
    np.testing.assert_array_equal(data.trainval, TRAINVAL - 1)
    np.testing.assert_array_equal(data.test_seen, TEST_SEEN - 1)
    np.testing.assert_array_equal(data.test_unseen, TEST_UNSEEN - 1)
    np.testing.assert_array_equal(data.seen, [0, 1])
    np.testing.assert_array_equal(data.unseen, [2, 3])
    assert data.class_names[2] == "003.class_2"
    rows = data.load(np.array([0, 9]))
    np.testing.assert_allclose(rows.numpy(), features[:, [0, 9]].T, rtol=1e-6)
    sub = data.subset(data.test_unseen)
    assert sub.inputs.shape == (4, 6) and sub.labels.tolist() == [2, 2, 3, 3]


def test_attribute_class_count_must_match_labels(tmp_path):
    _write(tmp_path, att=np.ones((3, 5)))  # 5 attribute columns (classes), labels name 4
    with pytest.raises(FedlabError, match=r"5 class rows but the labels name 4 classes"):
        load_xlsa17(str(tmp_path))


def test_overlapping_seen_and_unseen_is_refused(tmp_path):
    _write(tmp_path, test_unseen=np.array([1, 7, 8, 9, 10]))  # row 1 is of seen class 1
    with pytest.raises(FedlabError, match=r"classes \[0\] are both seen and unseen"):
        load_xlsa17(str(tmp_path))


def test_locations_out_of_range(tmp_path):
    _write(tmp_path, test_unseen=np.array([7, 8, 9, 11]))
    with pytest.raises(FedlabError, match="1-based rows 1..10"):
        load_xlsa17(str(tmp_path))


def test_missing_folder_or_file(tmp_path):
    with pytest.raises(FedlabError, match="needs data-path"):
        load_xlsa17("")
    with pytest.raises(FedlabError, match="has no res101.mat"):
        load_xlsa17(str(tmp_path))
    (tmp_path / "res101.mat").write_text("not a mat file")
    (tmp_path / "att_splits.mat").write_text("not a mat file")
    with pytest.raises(FedlabError, match="not a readable MATLAB"):
        load_xlsa17(str(tmp_path))


def test_features_must_be_d_by_n(tmp_path):
    _write(tmp_path, features=np.zeros((6, 9)))
    with pytest.raises(FedlabError, match="features must be D x N"):
        load_xlsa17(str(tmp_path))

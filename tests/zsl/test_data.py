"""The ZSL data contract, the class-disjoint partition and the offline benchmarks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fedlab.clients.zsl import benchmarks as bm
from fedlab.clients.zsl.data import ZslData, class_disjoint_partition, validation_protocol
from fedlab.clients.zsl.sources import load_zsl

from fedlab.errors import FedlabError


def _data(**changes) -> ZslData:
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    fields = {
        "load": lambda idx: torch.zeros(len(idx), 2), "labels": labels,
        "attributes": np.eye(4, 3), "class_names": list("abcd"),
        "seen": np.array([0, 1]), "unseen": np.array([2, 3]),
        "trainval": np.array([0, 2]), "test_seen": np.array([1, 3]),
        "test_unseen": np.array([4, 5, 6, 7]), "name": "toy",
    }  # fmt: skip
    fields.update(changes)
    return ZslData(**fields)


def test_a_consistent_protocol_is_accepted():
    assert _data().num_classes == 4


def test_attribute_rows_must_match_the_classes():
    with pytest.raises(FedlabError, match="3 class rows but the labels name 4 classes"):
        _data(attributes=np.eye(3), class_names=list("abc"))


def test_seen_and_unseen_must_not_overlap():
    with pytest.raises(FedlabError, match=r"classes \[1\] are both seen and unseen"):
        _data(unseen=np.array([1, 2, 3]))


def test_splits_hold_only_their_classes():
    with pytest.raises(FedlabError, match="test_unseen holds classes \\[0\\]"):
        _data(test_unseen=np.array([0, 4]))
    with pytest.raises(FedlabError, match="share examples"):
        _data(test_seen=np.array([0, 1]))


def test_class_disjoint_partition():
    labels = np.repeat(np.arange(8), 5)
    parts = class_disjoint_partition(labels, 3, seed=1)
    held = [set(labels[p]) for p in parts]
    assert sorted(len(h) for h in held) == [2, 3, 3]
    assert set().union(*held) == set(range(8))
    assert all(not (a & b) for i, a in enumerate(held) for b in held[i + 1 :])
    assert sum(len(p) for p in parts) == len(labels)
    assert [p.tolist() for p in class_disjoint_partition(labels, 3, seed=1)] == [
        p.tolist() for p in parts
    ]
    with pytest.raises(FedlabError, match="use 1..8 supernodes"):
        class_disjoint_partition(labels, 9)


def test_shapes_attributes_are_exact_and_splits_compositional():
    att = bm.shape_attributes()
    assert att.shape == (12, 11)
    assert len({tuple(r) for r in att}) == 12
    # red square: one-hots + 4 corners, no curve, convex, fills its box
    np.testing.assert_allclose(att[3], [0, 1, 0, 0, 1, 0, 0, 4 / 12, 0, 1, 1])
    assert len({frozenset(s) for s in bm.SHAPES_SPLITS}) == 3
    for unseen in bm.SHAPES_SPLITS:
        seen = [c for c in range(12) if c not in unseen]
        assert {c // 3 for c in seen} == {0, 1, 2, 3}  # every shape seen in some colour
        assert {c % 3 for c in seen} == {0, 1, 2}  # every colour seen on some shape


def test_digit_attributes_tell_every_digit_apart():
    att = bm.DIGIT_ATTRIBUTES
    assert att.shape == (10, len(bm.DIGIT_ATTRIBUTE_NAMES))
    assert len({tuple(r) for r in att}) == 10
    assert len({frozenset(s) for s in bm.DIGITS_SPLITS}) == 3


def test_rendering_is_deterministic_and_in_range():
    a = bm.render_shapes(np.array([0, 151, 1799]), 150)
    b = bm.render_shapes(np.array([0, 151, 1799]), 150)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 3, 16, 16) and a.min() >= 0 and a.max() <= 1
    red = a[0].reshape(3, -1)  # class 0 is a red circle: its brightest red pixels beat blue
    assert red[0].max() > red[2][red[0].argmax()] + 0.3


def test_loaded_benchmarks_follow_the_protocol():
    for name, splits in (("shapes", bm.SHAPES_SPLITS), ("digits", bm.DIGITS_SPLITS)):
        for split, unseen in enumerate(splits):
            d = load_zsl(name, split=split)
            np.testing.assert_array_equal(d.unseen, sorted(unseen))
            assert np.isin(d.labels[d.trainval], d.seen).all()
            assert not np.intersect1d(d.trainval, d.test_seen).size
            held = len(d.test_seen) / (len(d.test_seen) + len(d.trainval))
            assert held == pytest.approx(0.2, abs=0.01)
    x = load_zsl("digits", representation="images").load(np.arange(3))
    assert x.shape == (3, 1, 16, 16)
    f = load_zsl("shapes").load(np.arange(3))
    assert f.shape == (3, 384)
    with pytest.raises(FedlabError, match="zsl-split 3 does not exist"):
        load_zsl("shapes", split=3)
    with pytest.raises(FedlabError, match="ships ResNet-101 features, not images"):
        load_zsl("xlsa17", representation="images")


def test_validation_protocol_uses_only_seen_training_data():
    d = load_zsl("shapes", split=1)
    v = validation_protocol(d, 2, seed=0)
    assert set(v.unseen) <= set(d.seen) and len(v.unseen) == 2
    used = np.concatenate([v.trainval, v.test_seen, v.test_unseen])
    assert set(used) <= set(d.trainval)

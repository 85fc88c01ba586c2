"""The linear probe protocol and the textured-shapes dataset."""

from __future__ import annotations

import numpy as np
from fedlab.clients.ssl.data import SHAPES, make_shapes
from fedlab.clients.ssl.probe import C_GRID, linear_probe

from fedlab.data.datasets import load_dataset


def test_probe_separates_separable_features_and_not_random_labels():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 60)
    x = rng.normal(size=(240, 10)) + 3.0 * np.eye(4, 10)[y]
    idx = rng.permutation(240)
    tr, te = idx[:160], idx[160:]
    good = linear_probe(x[tr], y[tr], x[te], y[te])
    assert good.accuracy > 0.9 and good.c in C_GRID
    shuffled = rng.permutation(y)
    bad = linear_probe(x[tr], shuffled[tr], x[te], shuffled[te])
    assert bad.accuracy < 0.5


def test_textured_shapes_is_fixed_balanced_and_in_range():
    images, labels = make_shapes(per_class=4, seed=0)
    again, labels2 = make_shapes(per_class=4, seed=0)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, labels2)
    assert images.shape == (4 * len(SHAPES), 3, 32, 32)
    assert images.min() >= 0 and images.max() <= 1
    assert np.bincount(labels).tolist() == [4] * len(SHAPES)


def test_textured_shapes_is_registered():
    ds = load_dataset("textured-shapes")
    assert ds.num_classes == 8 and len(ds) == 2400 and ds.shape == (3, 32, 32)

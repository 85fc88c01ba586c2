"""Metrics and baselines on a declared composite: cut-and-paste keeps content, baselines
leave the background alone and move the foreground's colours towards the background's."""

from __future__ import annotations

import pytest
import torch
from fedlab.clients.harmonization import data
from fedlab.clients.harmonization.baselines import BASELINES
from fedlab.clients.harmonization.data import HELDOUT_PHOTOS, TRAIN_PHOTOS, client_pairs, composite
from fedlab.clients.harmonization.metrics import edge_f1, grey, harmonization_metrics


def test_declared_sets_are_24_test_and_8_tuning_composites_on_disjoint_photos():
    test, tuning = data.test_specs(), data.tuning_specs()
    assert len(test) == 24 and len(tuning) == 8
    assert {s.photo for s in test} <= set(HELDOUT_PHOTOS)
    assert {s.photo for s in tuning} <= set(TRAIN_PHOTOS)
    assert not {s.obj for s in test} & {s.obj for s in tuning}
    trained = {p for k in range(4) for p, _ in client_pairs(k, 4)}
    assert trained == set(TRAIN_PHOTOS) and not trained & set(HELDOUT_PHOTOS)


def test_cut_and_paste_keeps_content_and_baselines_keep_the_background():
    c = composite(data.test_specs()[0])
    rows = {n: harmonization_metrics(f(c.composite, c.mask), c.foreground, c.background, c.mask)
            for n, f in BASELINES.items()}  # fmt: skip
    assert rows["cut"]["ssim"] == pytest.approx(1.0)
    assert rows["cut"]["haarpsi"] == pytest.approx(1.0, abs=1e-4) and rows["cut"]["edge-f1"] == 1.0
    for row in rows.values():
        assert row["bg-error"] == 0.0
    for name in ("histogram", "reinhard"):
        assert rows[name]["colour-dist"] < rows["cut"]["colour-dist"]
        assert rows[name]["ssim"] < 1.0


def test_edge_f1_drops_when_the_foreground_is_blurred():
    from skimage.filters import gaussian

    c = composite(data.test_specs()[1])
    g = grey(c.foreground)
    m = c.mask.numpy()
    assert edge_f1(g, g, m) == 1.0
    assert edge_f1(gaussian(g, 3), g, m) < 0.7
    moved = torch.where(c.mask[None], c.foreground.roll(1, -1), c.background)
    assert harmonization_metrics(moved, c.foreground, c.background, c.mask)["bg-error"] == 0

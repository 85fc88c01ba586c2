"""The compo benchmark, AUSUC, calibrated stacking and the label-skew remedies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fedlab.clients.zsl import compo
from fedlab.clients.zsl.config import ParsNetsConfig as ZslConfig
from fedlab.clients.zsl.label_skew import (
    adjust_logits,
    calibrated_logits,
    restricted_softmax_logits,
)
from fedlab.clients.zsl.metrics import ausuc, calibrated_stacking, gzsl
from fedlab.clients.zsl.sources import load_zsl

from fedlab.errors import FedlabError
from fedlab.workload import build_workload


@pytest.mark.parametrize("split", range(compo.NUM_SPLITS))
def test_unseen_classes_are_new_combinations_of_seen_values(split):
    unseen = compo.compo_split(split)
    seen = np.setdiff1d(np.arange(len(compo.CLASSES)), unseen)
    assert len(compo.CLASSES) >= 60 and len(unseen) >= 15
    attributes = compo.compo_attributes()
    seen_rows = {tuple(attributes[c]) for c in seen}
    for c in unseen:
        assert tuple(attributes[c]) not in seen_rows  # a combination no seen class has
        for f, value in zip(compo.FACTORS, compo.CLASSES[c], strict=True):
            assert any(compo.CLASSES[s][list(compo.FACTORS).index(f)] == value for s in seen)
    # the attribute vector is the exact one-hot encoding of the combination
    assert attributes.shape == (64, 12) and set(attributes.sum(1)) == {4.0}


def test_splits_differ_and_pretraining_classes_are_disjoint():
    splits = [set(compo.compo_split(s)) for s in range(compo.NUM_SPLITS)]
    assert all(a != b for i, a in enumerate(splits) for b in splits[i + 1 :])
    assert not set(compo.PRETRAIN_CLASSES) & set(compo.CLASSES)
    assert not set(compo.PRETRAIN_SHAPES) & set(compo.SHAPES)
    assert compo.NUM_SPLITS == 8  # 0-2 from the first study, 3-7 drawn the same way later
    with pytest.raises(FedlabError, match="zsl-split 8 does not exist for compo; use 0..7"):
        compo.compo_split(8)


def test_compo_data_follows_the_protocol():
    data = load_zsl("compo", split=1)
    assert np.array_equal(data.unseen, compo.compo_split(1))
    x = data.load(data.trainval[:5])
    assert x.shape == (5, compo.FEATURE_DIM) and torch.isfinite(x).all()
    images = load_zsl("compo", split=1, representation="images").load(np.array([0, 63 * 40]))
    assert images.shape == (2, 3, 24, 24) and not torch.equal(images[0], images[1])


def test_calibrated_stacking_shifts_exactly_the_seen_class_scores():
    scores = np.random.default_rng(0).normal(size=(5, 6))
    seen = np.array([0, 2, 5])
    shifted = calibrated_stacking(scores, seen, 1.5)
    assert np.allclose(scores - shifted, np.where(np.isin(np.arange(6), seen), 1.5, 0.0)[None])
    assert np.array_equal(shifted[:, [1, 3, 4]], scores[:, [1, 3, 4]])


def test_ausuc_is_the_area_swept_by_gamma():
    rng = np.random.default_rng(1)
    seen, unseen = np.array([0, 1, 2]), np.array([3, 4])
    labels_s, labels_u = rng.integers(0, 3, 60), rng.integers(3, 5, 40)
    s_s, s_u = rng.normal(size=(60, 5)), rng.normal(size=(40, 5))
    s_s[np.arange(60), labels_s] += 1.0
    s_u[np.arange(40), labels_u] += 1.0
    area = ausuc(s_s, labels_s, s_u, labels_u, seen, unseen)
    # brute force: trace the curve on a fine gamma grid, trapezoid
    points = [gzsl(s_s, labels_s, s_u, labels_u, seen, unseen, g)
              for g in np.linspace(-10, 10, 8001)]  # fmt: skip
    u = np.array([p["acc-u"] for p in points])
    s = np.array([p["acc-s"] for p in points])
    assert area == pytest.approx(np.sum(np.diff(u) * (s[1:] + s[:-1]) / 2), abs=2e-3)
    assert 0 < area < 1
    perfect_s, perfect_u = np.eye(5)[labels_s] * 5, np.eye(5)[labels_u] * 5
    assert ausuc(perfect_s, labels_s, perfect_u, labels_u, seen, unseen) == pytest.approx(1.0)


def test_restricted_softmax_leaves_own_class_logits_unchanged():
    logits = torch.randn(4, 6)
    counts = torch.tensor([3, 0, 5, 0, 0, 1])
    out = restricted_softmax_logits(logits, counts, 0.5)
    own = counts > 0
    assert torch.equal(out[:, own], logits[:, own])
    assert torch.allclose(out[:, ~own], 0.5 * logits[:, ~own])
    assert torch.equal(adjust_logits(logits, counts, "none", alpha=0.5, tau=1.0), logits)


def test_fedlc_drops_missing_classes_and_calibrates_held_ones():
    logits = torch.zeros(2, 3)
    out = calibrated_logits(logits, torch.tensor([16, 0, 1]), 2.0)
    assert torch.isinf(out[:, 1]).all()
    assert torch.allclose(out[:, [0, 2]], torch.tensor([[-1.0, -2.0]]).expand(2, 2))


def test_client_training_applies_the_remedy_and_central_training_does_not():
    config = ZslConfig.from_mapping({"zsl-dataset": "compo", "zsl-label-skew": "fedrs",
                                     "fedrs-alpha": 0.0})  # fmt: skip
    workload = build_workload(config)
    logits = torch.randn(3, len(workload.seen))
    assert torch.equal(workload.seen_logits(logits), logits)  # no client data yet: central
    data = workload.client_dataset(0, 4)
    held = torch.zeros(len(workload.seen), dtype=torch.bool)
    held[workload.positions[data.labels.unique()]] = True
    adjusted = workload.seen_logits(logits)
    assert torch.equal(adjusted[:, held], logits[:, held]) and (adjusted[:, ~held] == 0).all()
    with pytest.raises(FedlabError, match="zsl-label-skew 'x' is not one of"):
        ZslConfig.from_mapping({"zsl-label-skew": "x"})
    with pytest.raises(FedlabError, match="fedlc-tau must be > 0"):
        ZslConfig.from_mapping({"fedlc-tau": 0.0})


def test_the_pre_ray_size_check_leaves_no_meta_tensor_in_the_feature_cache():
    """flower-simulation's check builds the model on the meta device in the run's process;
    compo's process-wide feature cache must still hold real tensors afterwards."""
    from fedlab.apps import zsl_parsnets

    compo.feature_net.cache_clear()
    compo.all_features.cache_clear()
    config = zsl_parsnets.resolve_config({"zsl-dataset": "compo"})
    zsl_parsnets.check(config, config.num_supernodes)
    assert next(compo.feature_net().parameters()).device.type == "cpu"
    assert compo.all_features().device.type == "cpu"
    with torch.device("meta"):
        compo.feature_net.cache_clear()
        net = compo.feature_net()
    assert next(net.parameters()).device.type == "cpu"

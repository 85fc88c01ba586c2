"""Synthetic(alpha, beta) against the paper's generative definition, one client at a time."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedlab.data.synthetic import SyntheticFederation
from fedlab.errors import FedlabError


def test_a_client_has_the_paper_shapes_and_labels_from_its_own_model():
    fed = SyntheticFederation(alpha=1.0, beta=1.0, seed=3)
    x, y = fed.client_data(17)
    weights, bias, _ = fed.client_model(17)
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert x.shape == (fed.size(17), 60) and y.shape == (fed.size(17),)
    assert weights.shape == (60, 10) and bias.shape == (10,)
    np.testing.assert_array_equal(y, np.argmax(x.astype(np.float64) @ weights + bias, axis=1))
    assert fed.size(17) >= 50


def test_the_same_client_id_always_gets_the_same_data_in_any_order():
    fed = SyntheticFederation(seed=1)
    first = fed.client_data(999_999)
    for other in (0, 5, 123_456):
        fed.client_data(other)
    again = SyntheticFederation(seed=1).client_data(999_999)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(fed.client_data(5)[0][:50], fed.client_data(6)[0][:50])
    assert not np.array_equal(first[0], SyntheticFederation(seed=2).client_data(999_999)[0])


def test_client_sizes_follow_floor_lognormal_4_2_plus_50():
    fed = SyntheticFederation(max_size=0)
    sizes = np.array([fed.size(k) for k in range(20_000)]) - 50
    for z in (-1.0, 0.0, 1.0, 2.0):
        # P(floor(L) < ceil(e^m)) = P(L < ceil(e^m)) with L ~ LogNormal(4, 2)
        bound = math.ceil(math.exp(4 + 2 * z))
        p = 0.5 * (1 + math.erf((math.log(bound) - 4) / (2 * math.sqrt(2))))
        observed = float(np.mean(sizes < bound))
        assert abs(observed - p) < 4 * math.sqrt(p * (1 - p) / len(sizes)), (z, observed, p)
    capped = SyntheticFederation(max_size=400)
    assert max(capped.size(k) for k in range(2000)) == 400


def test_inputs_have_the_client_mean_and_the_paper_covariance():
    fed = SyntheticFederation(seed=4, size_sigma=0.0, size_mu=math.log(20_000), min_size=1,
                              max_size=0)  # fmt: skip
    x, _ = fed.client_data(2)
    _, _, v = fed.client_model(2)
    variance = np.arange(1, 61) ** -1.2
    n = len(x)
    assert n >= 20_000
    assert np.all(np.abs(x.mean(0) - v) < 5 * np.sqrt(variance / n))
    np.testing.assert_allclose(x.var(0), variance, rtol=0.05)


@pytest.mark.parametrize(("alpha", "spread"), [(0.0, (0.0, 0.08)), (1.0, (0.8, 1.2))])
def test_alpha_sets_how_far_the_clients_models_differ(alpha, spread):
    fed = SyntheticFederation(alpha=alpha, beta=0.0)
    means = [fed.client_model(k)[0].mean() for k in range(400)]
    # the mean of 600 N(u_k, 1) entries: u_k plus noise of std 1/sqrt(600) = 0.04
    assert spread[0] <= float(np.std(means)) <= spread[1]


def test_bad_parameters_are_one_line_errors():
    with pytest.raises(FedlabError, match="alpha"):
        SyntheticFederation(alpha=-1.0)
    with pytest.raises(FedlabError, match="max-size"):
        SyntheticFederation(min_size=50, max_size=10)
    with pytest.raises(FedlabError, match="negative"):
        SyntheticFederation().size(-1)


def test_the_model_mean_u_never_changes_a_label_so_unseen_clients_are_at_chance():
    fed = SyntheticFederation(alpha=1.0, seed=8)
    for client in (0, 1, 2):
        x, y = fed.client_data(client)
        weights, bias, _ = fed.client_model(client)
        u = float(fed._rng(client, 1).normal(0.0, fed.alpha))  # the first draw of the stream
        centred = np.argmax(x.astype(np.float64) @ (weights - u) + (bias - u), axis=1)
        np.testing.assert_array_equal(y, centred)


def test_synthetic_iid_shares_one_model_across_clients():
    fed = SyntheticFederation(iid=True, seed=5)
    w0, b0, v0 = fed.client_model(0)
    w1, b1, v1 = fed.client_model(1)
    np.testing.assert_array_equal(w0, w1)
    np.testing.assert_array_equal(b0, b1)
    assert np.all(v0 == v0[0]) and v0[0] != v1[0]

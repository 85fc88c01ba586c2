"""The scaling study's setup: a larger textured-shapes and a minimum client size."""

from __future__ import annotations

import warnings

import pytest

from fedlab.apps import fedfoa
from fedlab.errors import FedlabError
from fedlab.workload import build_workload


def test_sixteen_dirichlet_clients_each_hold_a_batch_of_the_larger_dataset():
    config = fedfoa.resolve_config(
        {"num-supernodes": 16, "dataset": "textured-shapes-x4", "min-partition-size": 64}, {}
    )
    workload = build_workload(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Flower warns on each Dirichlet redraw
        sizes = [len(workload.client_dataset(i, 16)) for i in range(16)]
    assert len(workload.train_dataset) == 7200
    assert min(sizes) >= 64 and sum(sizes) == 7200


def test_a_minimum_client_size_below_two_is_refused():
    with pytest.raises(FedlabError, match="min-partition-size must be >= 2"):
        fedfoa.resolve_config({"min-partition-size": 1}, {})

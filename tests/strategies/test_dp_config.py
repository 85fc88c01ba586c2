"""dpfedavg run-config validation: bad input gives one-line errors or warnings."""

from __future__ import annotations

import warnings

import pytest
from fedlab.clients.dpfedavg.app import build_dp_strategy
from fedlab.clients.dpfedavg.config import DPFedAvgConfig
from fedlab.strategies.dp_central import CentralDPClientSideClipping, CentralDPServerSideClipping
from fedlab.strategies.dp_wrapper import ClientSampling

from fedlab.apps import dpfedavg
from fedlab.errors import FedlabError


def config(**values) -> DPFedAvgConfig:
    return dpfedavg.resolve_config(values)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"clip-norm": 0.0}, "clip-norm must be > 0"),
        ({"clip-norm": -1.0, "dp-mode": "local", "local-epsilon": 1.0}, "clip-norm must be > 0"),
        ({"noise-multiplier": 0.0}, "noise-multiplier must be > 0"),
        ({"noise-multiplier": -0.5}, "noise-multiplier must be > 0"),
        ({"target-epsilon": 0.01, "noise-multiplier": 1.0}, "unreachable"),
        (
            {
                "target-epsilon": 1e-4,
                "noise-multiplier": 0.0,
                "num-server-rounds": 5000,
                "sample-rate": 1.0,
            },
            "unreachable",
        ),  # fmt: skip
        ({"local-epsilon": 4.0}, "dp-accounted=central or dp-accounted=local"),
        ({"dp-mode": "local"}, "local-epsilon must be > 0"),
        ({"dp-mode": "local", "local-epsilon": 1.0, "target-epsilon": 3.0}, "needs central DP"),
        ({"dp-mode": "both"}, "dp-mode 'both' is not one of"),
        ({"sampling": "stratified"}, "sampling 'stratified'"),
        ({"sample-rate": 0.015}, "not a whole number"),
        ({"fraction-train": 0.5}, "unknown run-config key 'fraction-train'"),
        ({"delta": 1.5}, "delta must lie in"),
        ({"dp-sgd": True, "dp-sgd-max-grad-norm": 0.0}, "dp-sgd-max-grad-norm"),
        ({"adaptive-clipping": True, "target-quantile": 1.0}, "target-quantile"),
    ],
)
def test_bad_input_is_one_line_error(values, match):
    with pytest.raises(FedlabError, match=match) as info:
        config(**values)
    assert "\n" not in str(info.value)


def test_delta_at_least_one_over_n_warns():
    with pytest.warns(UserWarning, match="delta=0.02 >= 1/N"):
        config(delta=0.02)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config(delta=1e-5)


def test_saying_which_guarantee_is_accounted_allows_both():
    both = config(**{"local-epsilon": 4.0, "dp-accounted": "central"})
    assert both.central and both.local


def test_modes_build_their_wrappers():
    assert isinstance(build_dp_strategy(config(), 100), CentralDPServerSideClipping)
    client = build_dp_strategy(config(**{"dp-mode": "central-client"}), 100)
    assert isinstance(client, CentralDPClientSideClipping)
    for mode in ({"dp-mode": "none"}, {"dp-mode": "local", "local-epsilon": 2.0}):
        strategy = build_dp_strategy(config(**mode), 100)
        assert type(strategy) is ClientSampling


def test_target_epsilon_derives_the_noise_multiplier():
    strategy = build_dp_strategy(config(**{"target-epsilon": 5.885, "noise-multiplier": 0.0,
                                           "num-server-rounds": 50}), 100)  # fmt: skip
    assert strategy.noise_multiplier == pytest.approx(1.0, rel=0.01)


def test_adaptive_clipping_count_stddev_defaults():
    # m = 10 clients per round: m/20 = 0.5 would leave no budget at z = 1, so sigma_b = z
    strategy = build_dp_strategy(config(**{"adaptive-clipping": True, "clip-norm": 0.1}), 100)
    assert strategy.adaptive.count_stddev == pytest.approx(1.0)
    assert strategy.clip_norm == 0.1
    assert strategy.update_noise_multiplier == pytest.approx((1 - 1 / 4) ** -0.5)
    # m = 100 (N = 1000, q = 0.1): Andrew et al.'s m/20 = 5
    big = config(**{"adaptive-clipping": True, "num-supernodes": 1000})
    assert big.count_stddev(1.0) == pytest.approx(5.0)
    with pytest.raises(FedlabError, match="clipped-count-stddev 0.4 is too small"):
        config(**{"adaptive-clipping": True, "clipped-count-stddev": 0.4})


def test_the_federation_may_decide_the_node_count():
    """``flwr run`` passes num-supernodes=0; the population checks run with the real count."""
    cfg = config(**{"num-supernodes": 0, "target-epsilon": 4.0, "noise-multiplier": 0.0})
    strategy = build_dp_strategy(cfg, 100)
    assert strategy.sampler.population == 100 and strategy.noise_multiplier > 0
    with pytest.raises(FedlabError, match="not a whole number"):
        build_dp_strategy(cfg, 7)


def test_flwr_app_resolves_a_run_config_once_per_process():
    from fedlab.flwr_app import resolve

    run_config = {"app": "dpfedavg", "app-config": "num-server-rounds=3"}
    first = resolve(run_config)
    assert resolve(dict(run_config)) is first
    assert first[1].num_supernodes == 0 and first[1].num_server_rounds == 3

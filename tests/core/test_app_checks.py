"""Each app checks its own config (``AppSpec.check``) before Ray starts: one line, exit 2."""

from __future__ import annotations

import pytest

import fedlab.simulation
from fedlab.cli import flower_simulation_main
from fedlab.registry import STRATEGIES


@pytest.fixture
def no_ray(monkeypatch, tmp_path):
    """Fail the test if the CLI gets as far as starting a simulation."""

    def simulate(*args, **kwargs):
        raise AssertionError("the simulation started: the app's check let a bad config through")

    monkeypatch.setattr(fedlab.simulation, "simulate", simulate)
    monkeypatch.chdir(tmp_path)


def _robust_strategy_cases() -> list[tuple[str, str]]:
    # Robust aggregators are not means: central DP must refuse them (or, where the registry
    # lacks one, the name itself is refused with the known ones).
    cases = []
    for name in ("multikrum", "bulyan"):
        if name in STRATEGIES:
            cases.append((name, "under central DP"))
        else:
            cases.append((name, f"unknown strategy {name!r}; known:"))
    return cases


@pytest.mark.parametrize(
    ("app", "overrides", "message"),
    [
        ("fedfoa", ["strategy=fedavg"], "the fedfoa app needs a FedFoA strategy"),
        ("dpfedavg", ["strategy=fedmedian"], "FedMedian is not known to aggregate by a mean"),
        *[
            ("dpfedavg", [f"strategy={name}"], message)
            for name, message in _robust_strategy_cases()
        ],
    ],
)
def test_app_check_refuses_before_ray(app, overrides, message, no_ray, capsys):
    argv = ["--app", f"fedlab.apps:{app}", "--run-config", *overrides]
    assert flower_simulation_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and err.startswith("error: ")


def test_every_shipped_app_has_a_check():
    import fedlab.apps as apps

    assert apps.names()
    for name in apps.names():
        assert getattr(apps, name).check is not None, name


def test_unknown_app_name_lists_the_installed_ones(no_ray, capsys):
    assert flower_simulation_main(["--app", "fedlab.apps:nope"]) == 2
    err = capsys.readouterr().err
    installed = err.split("installed: ", 1)[1].split(";")[0].split(".")[0]
    names = [n.strip() for n in installed.split(",")]
    assert names == sorted(names)
    assert {"dpfedavg", "fedavg", "fedfoa", "zsl_parsnets", "zsl_ar2"} <= set(names)


@pytest.mark.parametrize(
    ("app", "pair", "key"),
    [
        ("fedfoa", "record-traces=true", "record-traces"),
        ("fedfoa", 'trace-rounds="1"', "trace-rounds"),
        ("zsl_parsnets", "record-traces=true", "record-traces"),
        ("zsl_ar2", "trace-batch-size=4", "trace-batch-size"),
    ],
)
def test_a_shared_key_the_app_ignores_is_refused_before_ray(app, pair, key, capsys, no_ray):
    code = flower_simulation_main(["--app", f"fedlab.apps:{app}", "--run-config", pair])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"unknown run-config key {key!r} for app {app!r}" in err

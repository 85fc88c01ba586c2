"""The audit catches a local DP mechanism that adds less noise than it reports.

Each case is a real run of the ``dpfedavg`` app (20 clients, 2 canaries, every client every
round, 10 rounds, local DP at epsilon 8 per release, seeded noise), through the audit's own
runner. The per-release estimate (the server's view of each canary reply) is compared with the
epsilon the reported noise std gives a canary's reply.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fedlab.attacks.audit.config import from_mapping
from fedlab.attacks.audit.runner import resolve_settings, run_setting
from fedlab.clients.dpfedavg.app import dpfedavg

from audit.broken_mechanisms import broken_app

pytestmark = pytest.mark.slow

AUDIT = {
    "run": {"num-server-rounds": 10, "num-supernodes": 20, "local-epochs": 1,
            "sample-rate": 1.0, "dp-seeded-noise": True},
    "settings": [{"mode": "local", "epsilon": 8.0}],
    "targets": 0, "workers": 0, "null-canaries": 100, "bootstrap": 100,
}  # fmt: skip


def _estimates(spec, out: Path) -> dict:
    audit = from_mapping(AUDIT)
    plan = resolve_settings(spec, audit, out)[0]
    return run_setting(spec, plan, audit, out / "settings" / plan.name)["estimates"]


def test_the_real_mechanism_stays_within_its_spread(tmp_path: Path) -> None:
    est = _estimates(dpfedavg, tmp_path)
    for stat in ("final", "all-iterates", "per-release"):
        assert not est[stat]["exceeds"], (stat, est[stat])
    release = est["per-release"]
    assert release["observed"] == 20 and release["accountant"] == pytest.approx(3.547, abs=0.01)
    assert release["low"] <= release["accountant"] <= release["high"]  # tight, not only below


@pytest.mark.parametrize(("scale", "name"), [(0.0, "noise not added"), (0.5, "noise std halved")])
def test_a_broken_mechanism_is_caught(tmp_path: Path, scale: float, name: str) -> None:
    est = _estimates(broken_app(scale), tmp_path)["per-release"]
    assert est["exceeds"], (name, est)
    assert est["low"] > est["accountant"]

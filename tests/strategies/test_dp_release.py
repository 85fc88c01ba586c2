"""What a DP run folder publishes is exactly what was accounted (issue 27).

Each DP mode runs in process; every key of every release file is checked against the allowlist
documented in docs/dp.md (and declared by the wrappers' ``release_policy()``), the exact counts
are only in ``server-private/``, and the count-recovery formula finds nothing in the release.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from dp_helpers import Grid, arrays, as_numpy, reply
from fedlab.strategies.dp_central import CentralDPServerSideClipping
from fedlab.strategies.dp_sampling import ClientSampler
from fedlab.strategies.dp_wrapper import ClientSampling, dp_record, inner_kwargs
from fedlab.strategies.fedfoa import FedFoA
from flwr.app import Array, ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg

from fedlab.apps import dpfedavg
from fedlab.cli import fedlab_main
from fedlab.client_state import STATE_DIR
from fedlab.errors import FedlabError
from fedlab.inprocess import run_in_process
from fedlab.release import MANIFEST, PRIVATE_DIR, RELEASE_CLASSES, RELEASE_FILES, copy_release

DOCS = Path(__file__).resolve().parents[2] / "docs" / "dp.md"
SMALL = {
    "num-supernodes": 20,
    "sample-rate": 0.25,
    "num-server-rounds": 3,
    "local-epochs": 1,
    "delta": 1e-3,
}
MODES = {
    "central-poisson": ("central", {"dp-mode": "central-server"}),
    "central-fixed": ("central", {"dp-mode": "central-server", "sampling": "fixed"}),
    "central-adaptive-poisson": ("central", {"dp-mode": "central-server",
                                             "adaptive-clipping": True}),
    "central-client-adaptive-fixed": ("central", {"dp-mode": "central-client", "sampling": "fixed",
                                                  "adaptive-clipping": True}),
    "central-dp-sgd": ("central", {"dp-mode": "central-server", "dp-sgd": True}),
    "local": ("local", {"dp-mode": "local", "local-epsilon": 8.0}),
    "sample-level": ("sample-level", {"dp-mode": "none", "dp-sgd": True}),
}  # fmt: skip
#: Top-level keys of the other release files, all public inputs or copies of released rounds.
CONFIG_KEYS = {"app", "seed", "run-config", "warnings", "versions"}
SUMMARY_KEYS = {"rounds-finished", "rounds-planned", "stopped-early", "final"}
MANIFEST_KEYS = {"format", "privacy-claim", "release", "server-private", "client-private",
                 "released-round-keys",
                 "classes"}  # fmt: skip
EXACT_COUNTS = {"sampled", "replies", "failures", "seconds", "dp-sampled", "dp-unclipped-exact",
                "dp-sample-epsilon-max", "dp-sample-steps", "dp-sample-epsilon"}  # fmt: skip


def documented_allowlist() -> dict[str, dict[str, str]]:
    """``{claim: {key: class}}`` from the table between the release-allowlist markers."""
    text = DOCS.read_text()
    table = text[text.index("<!-- release-allowlist") : text.index("<!-- /release-allowlist")]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    out: dict[str, dict[str, str]] = {"central": {}, "local": {}, "sample-level": {}}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        key = cells[0].strip("`")
        for claim, kind in zip(out, cells[1:4], strict=True):
            if kind != "-":
                assert kind in RELEASE_CLASSES, f"{key}: class {kind!r} is not documented"
                out[claim][key] = kind
    return out


def round_keys(record: dict) -> set[str]:
    keys = set()
    for key, value in record.items():
        if isinstance(value, dict):
            keys |= {f"{key}.{k}" for k in value}
        else:
            keys.add(key)
    return keys


def all_keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in all_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in all_keys(v)}
    return set()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for name, (_, values) in MODES.items():
        folder = tmp_path_factory.mktemp(name) / "run"
        config = dpfedavg.resolve_config({**SMALL, **values, "out-dir": str(folder)})
        run_in_process(dpfedavg, config)
        out[name] = folder
    return out


@pytest.mark.parametrize("mode", MODES)
def test_every_released_key_is_documented_and_no_exact_count_is_released(runs, mode):
    claim, _ = MODES[mode]
    folder = runs[mode]
    allowed = documented_allowlist()[claim]
    released = sorted(p.name for p in folder.iterdir() if p.name not in (PRIVATE_DIR, STATE_DIR))
    assert set(released) <= {*RELEASE_FILES, MANIFEST}, released
    if (folder / STATE_DIR).exists():  # the clients' own state (privacy ledgers), never released
        assert (folder / STATE_DIR / "README.txt").read_text().startswith("Client-private")
        assert STATE_DIR not in json.loads((folder / MANIFEST).read_text())["release"]
    history = json.loads((folder / "history.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    assert len(history) == SMALL["num-server-rounds"]
    for record in [*history, summary["final"]]:
        unclassified = round_keys(record) - set(allowed)
        assert not unclassified, f"{mode}: released keys nobody classified: {unclassified}"
    assert set(summary) <= SUMMARY_KEYS
    assert set(json.loads((folder / "config.json").read_text())) <= CONFIG_KEYS
    manifest = json.loads((folder / MANIFEST).read_text())
    assert set(manifest) <= MANIFEST_KEYS and manifest["privacy-claim"] == claim
    assert manifest["released-round-keys"] == allowed  # the code declares what the docs list
    for name in ("history.json", "summary.json", "config.json", MANIFEST):
        leaked = all_keys(json.loads((folder / name).read_text())) & EXACT_COUNTS
        assert not leaked, f"{mode}: {name} holds {leaked}"
    # The server keeps them, apart, under the do-not-publish name.
    private = json.loads((folder / PRIVATE_DIR / "rounds.json").read_text())
    assert all({"sampled", "replies", "failures", "seconds"} <= set(r) for r in private)
    assert (folder / PRIVATE_DIR / "README.txt").read_text().startswith("Server-private")


@pytest.mark.parametrize("sampling", ["poisson", "fixed"])
def test_the_count_recovery_formula_finds_no_exact_count_in_the_release(tmp_path, sampling):
    # The review's setting: 20 clients, q 0.5, a count noise std sigma_b small enough that the
    # uncentred count (fraction - 1/2) m + replies / 2 rounds to the exact unclipped count.
    folder = tmp_path / "run"
    config = dpfedavg.resolve_config({
        **SMALL, "sample-rate": 0.5, "num-server-rounds": 4, "sampling": sampling,
        "adaptive-clipping": True, "noise-multiplier": 0.2, "clipped-count-stddev": 0.11,
        "out-dir": str(folder),
    })  # fmt: skip
    run_in_process(dpfedavg, config)
    m = 10
    history = json.loads((folder / "history.json").read_text())
    private = json.loads((folder / PRIVATE_DIR / "rounds.json").read_text())

    def recovers(replies_per_round) -> bool:
        return all(
            abs((r["train"]["dp-unclipped-fraction-noisy"] - 0.5) * m + c / 2
                - p["train"]["dp-unclipped-exact"]) < 0.5
            for r, p, c in zip(history, private, replies_per_round, strict=True)
        )  # fmt: skip

    assert recovers([p["replies"] for p in private])  # positive control: the private count works
    # Every number a reader of the release could plug in for `replies`, key by key.
    released = {}
    for r in history:
        for key in round_keys(r):
            section, _, name = key.partition(".")
            value = r[section][name] if name else r[section]
            released.setdefault(key, []).append(value)
    for key, values in released.items():
        if len(values) == len(history) and all(isinstance(v, int | float) for v in values):
            assert not recovers(values), f"{key} gives the exact counts back"


class _Terminal(logging.Handler):
    """What the console handlers of the ``fedlab`` and ``flwr`` loggers would print."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_the_terminal_shows_no_count_under_dp_and_the_private_log_has_them(tmp_path, monkeypatch):
    config = dpfedavg.resolve_config({**SMALL, "dp-mode": "central-server",
                                      "out-dir": str(tmp_path / "run")})  # fmt: skip
    terminal = _Terminal()
    for name in ("fedlab", "flwr"):
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "handlers", [*logger.handlers, terminal])
        monkeypatch.setattr(logger, "level", logging.INFO)  # Flower's INFO lines count nodes
    run_in_process(dpfedavg, config)
    shown = "\n".join(terminal.lines)
    assert "client-level epsilon" in shown and "round 3/3" in shown
    # ours ("sampled 3 of 20", "replies 3/3") and Flower's ("Sampled 3 nodes", "Received 3
    # results and 0 failures", the aggregated MetricRecord with dp-sampled)
    counts = r"sampled \d+|replies \d+/\d+|received \d+ results|dp-sampled|failures"
    assert not re.search(counts, shown, re.IGNORECASE), shown
    private = (tmp_path / "run" / PRIVATE_DIR / "server.log").read_text()
    assert re.search(r"sampled \d+ of 20", private) and re.search(r"replies \d+/\d+", private)
    assert re.search(r"Received \d+ results", private)  # Flower's own lines go there
    assert logging.getLogger("flwr").handlers[-1] is terminal  # restored after the run


def test_without_dp_the_history_keeps_every_figure(tmp_path):
    config = dpfedavg.resolve_config({**SMALL, "dp-mode": "none", "num-server-rounds": 1,
                                      "out-dir": str(tmp_path / "run")})  # fmt: skip
    run_in_process(dpfedavg, config)
    record = json.loads((tmp_path / "run" / "history.json").read_text())[0]
    assert {"sampled", "replies", "seconds"} <= set(record)
    assert json.loads((tmp_path / "run" / MANIFEST).read_text())["privacy-claim"] == "none"


def test_min_replies_is_refused_under_dp():
    with pytest.raises(FedlabError, match="min-replies=1 under DP"):
        dpfedavg.resolve_config({**SMALL, "min-replies": 1})
    dpfedavg.resolve_config({**SMALL, "dp-mode": "none", "min-replies": 1})  # no claim: fine


# -- integer buffers ---------------------------------------------------------------------------
def _with_counter(values, counter):
    record = arrays(values)
    record["num_batches_tracked"] = Array(np.array(counter, dtype=np.int64))
    return record


def _reply_with_counter(values, counter):
    msg = reply(values)
    msg.content["arrays"] = _with_counter(values, counter)
    return msg


@pytest.mark.parametrize("release", ["central", "local", "sample-level"])
def test_integer_buffers_are_never_averaged_in_the_clear(release):
    sampler = ClientSampler("fixed", 0.5, 6)
    if release == "central":
        strategy = CentralDPServerSideClipping(FedAvg(**inner_kwargs()), sampler, clip_norm=1.0,
                                               noise_multiplier=1.0)  # fmt: skip
    else:
        strategy = ClientSampling(FedAvg(**inner_kwargs()), sampler, release=release)
    g = {"w": np.zeros(3)}
    list(strategy.configure_train(1, _with_counter(g, 100), ConfigRecord(), Grid(range(6))))
    replies = [_reply_with_counter({"w": np.full(3, 0.1)}, c) for c in (107, 150, 103)]
    agg, _ = strategy.aggregate_train(1, replies)
    assert int(agg["num_batches_tracked"].numpy()) == 100  # not 120 = 100 + mean(7, 50, 3)


def test_an_integer_array_the_server_did_not_send_is_refused_under_dp():
    strategy = ClientSampling(FedAvg(**inner_kwargs()), ClientSampler("fixed", 0.5, 2),
                              release="sample-level")  # fmt: skip
    list(strategy.configure_train(1, arrays({"w": np.zeros(2)}), ConfigRecord(), Grid([0, 1])))
    msg = reply({"w": np.ones(2)})
    msg.content["arrays"] = ArrayRecord({**dict(msg.content["arrays"].items()),
                                         "steps": Array(np.array(7, dtype=np.int64))})  # fmt: skip
    with pytest.raises(FedlabError, match="non-float array 'steps'"):
        strategy.aggregate_train(1, [msg])


def test_under_sample_level_dp_replies_are_averaged_with_weight_one():
    strategy = ClientSampling(FedAvg(**inner_kwargs()), ClientSampler("fixed", 1.0, 2),
                              release="sample-level")  # fmt: skip
    list(strategy.configure_train(1, arrays({"w": np.zeros(1)}), ConfigRecord(), Grid([0, 1])))
    agg, metrics = strategy.aggregate_train(
        1, [reply({"w": np.ones(1)}, examples=10), reply({"w": np.full(1, 3.0)}, examples=30)]
    )
    assert as_numpy(agg)["w"][0] == pytest.approx(2.0)  # 2.5 if weighted by dataset size
    assert "train-loss" not in metrics


def test_a_wrapper_without_a_claim_refuses_local_dp_replies():
    strategy = ClientSampling(FedAvg(**inner_kwargs()), ClientSampler("fixed", 1.0, 1))
    list(strategy.configure_train(1, arrays({"w": np.zeros(1)}), ConfigRecord(), Grid([0])))
    dp = dp_record({"mechanism": "local", "epsilon": 1.0, "epsilon-total": 1.0,
                    "noise-std": 0.1})  # fmt: skip
    with pytest.raises(FedlabError, match="release='none'"):
        strategy.aggregate_train(1, [reply({"w": np.ones(1)}, dp=dp)])


# -- the mean-aggregator declaration is read on the class itself ------------------------------
def test_an_inherited_mean_declaration_is_refused():
    class MyFedFoA(FedFoA):
        pass

    class MyMean(FedAvg):
        dp_mean_aggregation = True

    class MyMeanChild(MyMean):
        pass

    sampler = ClientSampler("fixed", 0.1, 100)
    assert FedFoA.__dict__["dp_mean_aggregation"] is True
    for cls in (MyFedFoA, MyMeanChild):
        inner = object.__new__(cls)  # the check reads the class; no need to build the strategy
        with pytest.raises(FedlabError, match="does not inherit it"):
            CentralDPServerSideClipping(inner, sampler, clip_norm=1.0, noise_multiplier=1.0)
    CentralDPServerSideClipping(MyMean(**inner_kwargs()), sampler, clip_norm=1.0,
                                noise_multiplier=1.0)  # fmt: skip


# -- copying the release ------------------------------------------------------------------------
def test_fedlab_release_copies_exactly_the_release(runs, tmp_path, capsys):
    out = tmp_path / "published"
    assert fedlab_main(["release", str(runs["central-poisson"]), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([*RELEASE_FILES, MANIFEST])
    assert fedlab_main(["release", str(runs["central-poisson"]), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


def test_a_folder_from_before_the_split_is_refused_whole(tmp_path, capsys):
    old = tmp_path / "old-run"
    old.mkdir()
    (old / "history.json").write_text('[{"round": 1, "sampled": 9}]')
    assert fedlab_main(["release", str(old), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "treat all of it as server-private" in err
    with pytest.raises(FedlabError):
        copy_release(old, tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()

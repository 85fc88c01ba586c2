"""Issue 30 for the core readers: run configs, trace manifests, audit configs, `fedlab attack`
outputs and `flower-simulation --out`. Every refusal is exit code 2 and one stderr line naming
the key, flag or file; no traceback; nothing written outside --out; no user file replaced."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fedlab.simulation
from fedlab.cli import fedlab_main, flower_simulation_main

HUGE = "9" * 5000  # past Python's 4300-digit int() limit: json/toml raise ValueError


@pytest.fixture
def no_ray(monkeypatch, tmp_path):
    """Fail the test if the CLI gets as far as starting a simulation."""

    def simulate(*args, **kwargs):
        raise AssertionError("the simulation started: the pre-Ray check let a bad value through")

    monkeypatch.setattr(fedlab.simulation, "simulate", simulate)
    monkeypatch.chdir(tmp_path)


def refused(code: int, err: str, *names: str) -> None:
    """Exit 2, one stderr line, no traceback, naming each of ``names``."""
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for name in names:
        assert name in err, (name, err)


def simulate_cli(capsys, *argv: str) -> tuple[int, str]:
    try:
        code = flower_simulation_main(list(argv))
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


# -- one regression test per finding -------------------------------------------------------------
def test_a_400_digit_lr_is_one_line(capsys, no_ray):
    code, err = simulate_cli(
        capsys, "--app", "fedlab.apps:fedavg", "--run-config", "lr=" + "9" * 400
    )
    refused(code, err, "'lr'")


@pytest.mark.parametrize("pair", ["model=bogus", f"seed={10**30}", "seed=-1"])
def test_names_and_seeds_are_checked_before_ray(pair, capsys, no_ray):
    code, err = simulate_cli(capsys, "--app", "fedlab.apps:fedavg", "--run-config", pair)
    refused(code, err, pair.split("=")[0])


def test_a_5000_digit_integer_in_a_run_config_file_is_one_line(tmp_path, capsys, no_ray):
    toml = tmp_path / "run.toml"
    toml.write_text(f"seed = {HUGE}\n")
    code, err = simulate_cli(capsys, "--app", "fedlab.apps:fedavg", "--run-config", str(toml))
    refused(code, err, "run.toml")


def test_out_naming_an_earlier_run_folder_is_refused_unless_overwrite(tmp_path, capsys, no_ray):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    code, err = simulate_cli(capsys, "--app", "fedlab.apps:fedavg", "--out", str(run))
    refused(code, err, "--out", "--overwrite")
    assert (run / "config.json").read_text() == "{}"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    code, err = simulate_cli(
        capsys, "--app", "fedlab.apps:fedavg", "--out", str(mine), "--overwrite"
    )
    refused(code, err, "not an earlier run folder")
    assert (mine / "notes.txt").read_text() == "keep"
    file = tmp_path / "file"
    file.write_text("x")
    code, err = simulate_cli(capsys, "--app", "fedlab.apps:fedavg", "--out", str(file))
    refused(code, err, "--out", "is a file")


def test_overwrite_replaces_an_earlier_run_folder(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "stale.txt").write_text("old run")
    seen = {}
    monkeypatch.setattr(fedlab.simulation, "simulate", lambda *a, **k: seen.update(ran=True))
    code, _ = simulate_cli(capsys, "--app", "fedlab.apps:fedavg", "--out", str(run), "--overwrite")
    assert seen == {"ran": True} and not (run / "stale.txt").exists()
    assert code == 1  # the stub wrote no summary


def test_an_argparse_error_is_one_line(capsys):
    code, err = simulate_cli(capsys, "--app", "fedlab.apps:fedavg", "--num-supernodes", "many")
    refused(code, err, "--num-supernodes")


def _manifest(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(text)
    return folder


@pytest.mark.parametrize(
    "text",
    [
        '{"format": "fedlab-trace", "format_version": "1.0", "records": [{"round": ' + HUGE + "}]}",
        '{"format": "fedlab-trace", "format_version": 1, "records": []}',
    ],
    ids=["5000-digit-int", "integer-format-version"],
)
def test_bad_trace_manifests_are_one_line(text, tmp_path, capsys):
    from fedlab.trace_validation import FORMAT

    trace = _manifest(tmp_path / "trace", text.replace("fedlab-trace", FORMAT))
    out = str(tmp_path / "o")
    code = fedlab_main(["attack", "--attack", "idlg", "--trace", str(trace), "--out", out])
    refused(code, capsys.readouterr().err, "manifest.json")


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("seed = -1", "seed"),
        (f"seed = {2**64}", "seed"),
        ('targets = "two"', "targets"),
        ("canary-share = nan", "canary-share"),
        ('canary-share = "a"', "canary-share"),
        ("attack-aggregate = 3", "attack-aggregate"),
        ("attacks = 3", "attacks"),
        ("run = 3", "run"),
        ("[[settings]]\nmode = 'central'\nepsilon = '4'", "epsilon"),
        (f"workers = {HUGE}", "audit.toml"),
    ],
)
def test_bad_audit_configs_are_one_line(toml, key, tmp_path, capsys):
    config = tmp_path / "audit.toml"
    config.write_text(toml + "\n")
    code = fedlab_main(["audit", "--config", str(config), "--out", str(tmp_path / "o")])
    refused(code, capsys.readouterr().err, key)


def _small_trace(folder: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "attacks"))
    from test_attack_cli import _trace

    _trace(folder, clients=(0,))
    return folder


def test_attack_out_naming_a_file_and_a_corrupt_results_file_are_one_line(tmp_path, capsys):
    trace = _small_trace(tmp_path / "trace")
    file = tmp_path / "file"
    file.write_text("mine")
    code = fedlab_main(["attack", "--attack", "idlg", "--trace", str(trace), "--out", str(file)])
    refused(code, capsys.readouterr().err, "--out")
    assert file.read_text() == "mine"
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("{not json")
    code = fedlab_main(["attack", "--attack", "idlg", "--trace", str(trace), "--out", str(out)])
    refused(code, capsys.readouterr().err, "results.json")
    assert (out / "results.json").read_text() == "{not json"


# -- generated values -----------------------------------------------------------------------------
NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=-(2**70), max_value=2**70).map(lambda v: v * 10**300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "", "abc", "true", "[1, 2]", '"x"', HUGE]),
)
KEYS = st.sampled_from(["seed", "lr", "num-server-rounds", "batch-size", "fraction-train",
                        "dirichlet-alpha", "trace-rounds", "fail-partitions", "model",
                        "partitioner", "test-fraction", "image-size", "no-such-key"])  # fmt: skip


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=KEYS, value=NUMBERS)
def test_generated_run_config_values_are_accepted_or_refused_in_one_line(
    key, value, capsys, no_ray
):
    code, err = simulate_cli(capsys, "--app", "fedlab.apps:fedavg", "--check", "--run-config",
                             f"{key}={value}")  # fmt: skip
    assert code in (0, 2), err
    if code == 2:
        refused(code, err)
        assert key in err or "run-config" in err, err


AUDIT_KEYS = st.sampled_from(["seed", "targets", "trace-round", "max-iterations", "patience",
                              "canary-share", "null-canaries", "bootstrap", "workers",
                              "attack-aggregate"])  # fmt: skip
TOML_VALUES = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda v: {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(str(v), repr(v))
    ),
    st.sampled_from(['"text"', "true", "[1]", "{a = 1}", HUGE, "-0"]),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=AUDIT_KEYS, value=TOML_VALUES)
def test_generated_audit_values_are_refused_in_one_line_or_valid(key, value, tmp_path, capsys):
    from fedlab.attacks.audit.config import load

    from fedlab.errors import FedlabError

    config = tmp_path / "audit.toml"
    config.write_text(f"{key} = {value}\n")
    try:
        load(config, None)
    except FedlabError as exc:
        message = " ".join(str(exc).split())
        assert key in message or "audit.toml" in message, message


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory) -> Path:
    return _small_trace(tmp_path_factory.mktemp("trace") / "trace")


ATTACK_FLAGS = st.sampled_from(["--rounds", "--clients", "--max-iterations", "--restarts",
                                "--seed"])  # fmt: skip
FLAG_TEXT = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["", "1,2", "0,,3", "a", "1.5", "nan", "-0", HUGE, "1," + HUGE]),
)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=ATTACK_FLAGS, value=FLAG_TEXT)
def test_generated_attack_flags_are_accepted_or_refused_in_one_line(
    flag, value, small_trace, tmp_path, capsys
):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    sentinel = out / "mine.txt"
    sentinel.write_text("keep")
    argv = ["attack", "--attack", "idlg", "--trace", str(small_trace), "--out", str(out),
            "--check", f"{flag}={value}"]  # fmt: skip
    try:
        code = fedlab_main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        refused(code, err)
        assert flag in err or "no records" in err, err
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"] and sentinel.read_text() == "keep"


JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False), st.text(max_size=8),
)  # fmt: skip
RECORD = st.dictionaries(
    st.sampled_from(["round", "client", "received", "global", "model", "batch_size", "lr",
                     "image_shape", "num_classes", "local_steps", "x"]),
    st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=3), max_leaves=4),
    max_size=8,
)  # fmt: skip


@settings(max_examples=40)
@given(records=st.lists(RECORD, max_size=3), version=st.one_of(st.just("1.0"), JSON_LEAF))
def test_generated_trace_manifests_are_data_never_a_traceback(records, version):
    import tempfile

    from fedlab.errors import FedlabError
    from fedlab.trace_validation import FORMAT
    from fedlab.traces import TraceReader

    with tempfile.TemporaryDirectory() as tmp:
        manifest = {"format": FORMAT, "format_version": version, "records": records}
        (Path(tmp) / "manifest.json").write_text(json.dumps(manifest))
        try:
            reader = TraceReader(tmp, strict=False)
            for entry in reader.select_all():
                getattr(entry, "error", None)
        except FedlabError as exc:
            assert "\n" not in " ".join(str(exc).split())
            assert "manifest.json" in str(exc) or tmp in str(exc), str(exc)


def test_audit_check_resolves_every_setting_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    code = fedlab_main(["audit", "--preset", "tiny", "--out", str(out), "--check"])
    assert code == 0 and capsys.readouterr().out.startswith("ok: audit of")
    assert not out.exists()


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(["--workers", "--preset", "--app"]), value=FLAG_TEXT)
def test_generated_audit_flags_are_accepted_or_refused_in_one_line(flag, value, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["audit", "--preset", "tiny", "--out", str(out), "--check", f"{flag}={value}"]
    try:
        code = fedlab_main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        refused(code, err)
    assert not out.exists()

"""Traces are untrusted input: no code named by a manifest runs, no path leaves the trace folder,
every field is type- and range-checked, and a bad record fails only its own target."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest
import torch
from fedlab.attacks.base import ModelSpec
from fedlab.attacks.cli import register
from fedlab.attacks.models import MODELS
from safetensors.torch import load_file, save_file
from torch import nn

from fedlab.errors import FedlabError
from fedlab.traces import MANIFEST, TraceReader, TraceWriter

SPEC = {"name": "lenet", "kwargs": {"num_classes": 10, "image_size": 16, "init": "dlg-uniform"}}
GOOD, BAD = "round-1/client-0", "round-1/client-1"


def _run(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _trace(path):
    """A FedSGD trace of a 16x16 LeNet with two single-image clients (0 and 1)."""
    writer = TraceWriter(path)
    torch.manual_seed(0)
    model = ModelSpec(SPEC["name"], SPEC["kwargs"]).build()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    gpath = writer.write_global(1, start)
    for c in (0, 1):
        x, y = torch.rand(1, 3, 16, 16), torch.tensor([c + 2])
        loss = nn.functional.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, list(model.parameters()))
        sent = {
            n: start[n] - 0.1 * g for (n, _), g in zip(model.named_parameters(), grads, strict=True)
        }
        writer.add(
            server_round=1,
            client=c,
            received=sent,
            global_path=gpath,
            model=SPEC,
            batch_size=1,
            image_shape=(3, 16, 16),
            num_classes=10,
            lr=0.1,
            ground_truth=(x, y),
        )
    return path


def _edit(trace, fn, index=1):
    """Apply ``fn`` to record ``index`` (client 1) of the manifest."""
    obj = json.loads((trace / MANIFEST).read_text())
    fn(obj["records"][index])
    (trace / MANIFEST).write_text(json.dumps(obj))


def _attack(trace, out, *extra):
    code = _run(
        [
            "attack",
            "--trace",
            str(trace),
            "--attack",
            "idlg",
            "--max-iterations",
            "5",
            "--restarts",
            "0",
            "--out",
            str(out),
            *extra,
        ]
    )
    return code, json.loads((out / "results.json").read_text())["targets"]


def _assert_good_attacked_bad_refused(targets, bad_id=BAD):
    assert targets[GOOD]["status"] == "ok" and "psnr" in targets[GOOD]
    assert targets[bad_id]["status"] == "error"
    error = targets[bad_id]["error"]
    assert "\n" not in error
    return error


def test_a_manifest_naming_code_runs_nothing_and_is_refused(tmp_path, capsys):
    trace, pwned = _trace(tmp_path / "trace"), tmp_path / "pwned"
    _edit(
        trace,
        lambda r: r.update(
            model={"name": "subprocess:run", "kwargs": {"args": ["touch", str(pwned)]}}
        ),
    )
    code, targets = _attack(trace, tmp_path / "out")
    assert not pwned.exists()
    assert code == 0
    error = _assert_good_attacked_bad_refused(targets)
    assert "round-1/client-1" in error and "'subprocess:run'" in error
    assert "allowed: " in error and "lenet" in error and "--trust-trace-code" in error
    assert "skipped 1 of 2 targets" in capsys.readouterr().out
    reader = TraceReader(trace)  # the Python API refuses it the same way
    with pytest.raises(FedlabError, match=r"unknown model 'subprocess:run'.*trust_code=True"):
        reader.attack_input(reader.records[1])
    with pytest.raises(FedlabError, match="importing 'module:attr' is disabled"):
        ModelSpec("subprocess:run", {"args": ["touch", str(pwned)]}, allow_import=False).build()
    assert not pwned.exists()


def test_trusting_the_trace_builds_an_importable_builder(tmp_path):
    trace = _trace(tmp_path / "trace")
    # fedlab's own workloads record 'module:attr' names; those are registered, so they need no
    # trust; any other importable builder does
    _edit(
        trace,
        lambda r: r["model"].update(
            name="fedlab.clients.supervised.models:lenet",
            kwargs={"in_channels": 3, "image_size": 16, "num_classes": 10},
        ),
        index=0,
    )
    _edit(trace, lambda r: r["model"].update(name="fedlab.attacks.models:build_lenet"))
    code, targets = _attack(trace, tmp_path / "untrusted")
    error = _assert_good_attacked_bad_refused(targets)
    assert "unknown model 'fedlab.attacks.models:build_lenet'" in error
    code, targets = _attack(trace, tmp_path / "trusted", "--trust-trace-code")
    assert code == 0 and {t["status"] for t in targets.values()} == {"ok"}
    reader = TraceReader(trace, trust_code=True)
    assert reader.attack_input(reader.records[1]).model.name == "fedlab.attacks.models:build_lenet"


def _escape_up(trace, tmp_path, key):
    rel = {
        "received": "round-0001/client-0001.safetensors",
        "global": "round-0001/global.safetensors",
        "ground_truth": "ground-truth/round-0001-client-0001.safetensors",
    }[key]
    shutil.copy(trace / rel, tmp_path / "outside.safetensors")
    return "../outside.safetensors"


def _escape_absolute(trace, tmp_path, key):
    _escape_up(trace, tmp_path, key)
    return str((tmp_path / "outside.safetensors").resolve())


def _escape_symlink(trace, tmp_path, key):
    _escape_up(trace, tmp_path, key)
    (trace / "link.safetensors").symlink_to(tmp_path / "outside.safetensors")
    return "link.safetensors"


@pytest.mark.parametrize("key", ["received", "global", "ground_truth"])
@pytest.mark.parametrize("escape", [_escape_up, _escape_absolute, _escape_symlink])
def test_paths_that_leave_the_trace_folder_fail_their_target(tmp_path, key, escape):
    trace = _trace(tmp_path / "trace")
    value = escape(trace, tmp_path, key)  # a valid file, just outside the trace folder
    _edit(trace, lambda r: r.update({key: value}))
    code, targets = _attack(trace, tmp_path / "out")
    assert code == 0
    error = _assert_good_attacked_bad_refused(targets)
    assert "outside the trace folder" in error or "is not allowed" in error
    assert "round-1/client-1" in error and (
        "'..' is refused" in error or "absolute" in error or "link.safetensors" in error
    )
    reader = TraceReader(trace, strict=False)
    if reader.records[1:]:  # the symlink is only found when the file is opened
        with pytest.raises(FedlabError, match="outside the trace folder"):
            reader.load(reader.records[1], value)


@pytest.mark.parametrize(
    ("edit", "field", "allowed"),
    [
        (lambda r: r.update(received=5), "received 5", "a relative path"),
        (lambda r: r.update(param_names=5), "param_names 5", "distinct non-empty strings"),
        (lambda r: r["model"].update(kwargs=[1, 2]), "model.kwargs [1, 2]", "an object of"),
        (
            lambda r: r["model"]["kwargs"].update(image_size=400000),
            "model.kwargs.image_size 400000",
            "from 1 to 1024",
        ),
        (lambda r: r.update(image_shape=[3, 400000, 400000]), "image_shape", "width 1..1024"),
        (lambda r: r.update(batch_size="2"), "batch_size '2'", "from 1 to 4096"),
        (lambda r: r.update(lr="0.1"), "lr '0.1'", "a finite number"),
        (lambda r: r.update(dp={"noise-std": "big"}), "dp.noise-std 'big'", "a finite number"),
        (lambda r: r.update(round="one"), "round 'one'", "an integer from 0"),
    ],
)
def test_wrong_types_and_sizes_fail_their_target_with_one_line(tmp_path, edit, field, allowed):
    trace = _trace(tmp_path / "trace")
    _edit(trace, edit)
    code, targets = _attack(trace, tmp_path / "out")
    assert code == 0
    bad = BAD if BAD in targets and targets[BAD]["status"] == "error" else "record-1"
    error = _assert_good_attacked_bad_refused(targets, bad)
    assert "record 1" in error and field in error and "allowed: " in error and allowed in error
    assert "fix the manifest" in error
    with pytest.raises(FedlabError, match="record 1"):  # the strict reader refuses it outright
        TraceReader(trace)


def test_a_registered_builder_cannot_be_made_to_allocate_a_huge_model(tmp_path, monkeypatch):
    monkeypatch.setitem(MODELS._items, "test-square", lambda width=8: nn.Linear(width, width))
    trace = _trace(tmp_path / "trace")
    _edit(trace, lambda r: r.update(model={"name": "test-square", "kwargs": {"width": 2**15}}))
    code, targets = _attack(trace, tmp_path / "out")
    error = _assert_good_attacked_bad_refused(targets)
    assert "1073774592 parameters, over the limit of 268435456" in error


def test_stored_shapes_are_checked_before_loading_and_duplicates_are_refused(tmp_path):
    trace = _trace(tmp_path / "trace")
    received = trace / "round-0001" / "client-0001.safetensors"
    data = load_file(received)
    data["fc.weight"] = torch.zeros(10, 12 * 8 * 8)  # the file disagrees with the model
    save_file(data, received)
    obj = json.loads((trace / MANIFEST).read_text())
    obj["records"].append(dict(obj["records"][0]))
    (trace / MANIFEST).write_text(json.dumps(obj))
    code, targets = _attack(trace, tmp_path / "out")
    error = _assert_good_attacked_bad_refused(targets)
    assert "'fc.weight' has shape [10, 768] but model 'lenet' expects [10, 192]" in error
    assert "duplicates record 0 (round-1/client-0)" in targets["record-2"]["error"]

"""``fedlab attack``: results.json, resume, bad targets kept apart, exit codes, grid."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from attack_helpers import crop_image
from fedlab.attacks.base import ModelSpec
from fedlab.attacks.cli import register

from fedlab.errors import FedlabError
from fedlab.traces import TraceWriter

SPEC = {"name": "lenet", "kwargs": {"num_classes": 10, "image_size": 16, "init": "dlg-uniform"}}


def _run(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _trace(path, clients=(0, 1)):
    writer = TraceWriter(path)
    torch.manual_seed(0)
    model = ModelSpec(SPEC["name"], SPEC["kwargs"]).build()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    gpath = writer.write_global(1, start)
    for c in clients:
        x = crop_image(("astronaut", "chelsea", "coffee")[c], 16)[None]
        y = torch.tensor([c + 2])
        grads = torch.autograd.grad(
            torch.nn.functional.cross_entropy(model(x), y), list(model.parameters())
        )
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


def test_attack_writes_results_resumes_and_isolates_a_corrupt_target(tmp_path, capsys):
    trace, out = tmp_path / "trace", tmp_path / "out"
    _trace(trace)
    corrupt = trace / "round-0001" / "client-0001.safetensors"
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    argv = [
        "attack",
        "--trace",
        str(trace),
        "--attack",
        "idlg",
        "--max-iterations",
        "60",
        "--restarts",
        "0",
        "--out",
        str(out),
    ]
    assert _run(argv) == 0
    results = json.loads((out / "results.json").read_text())
    ok, bad = results["targets"]["round-1/client-0"], results["targets"]["round-1/client-1"]
    assert ok["status"] == "ok" and ok["label_accuracy"] == 1.0
    assert {"mse", "psnr", "ssim", "loss", "iterations", "restarts", "seconds"} <= set(ok)
    assert bad["status"] == "error" and "safetensors" in bad["error"]
    assert (out / "grid.png").stat().st_size > 1000
    assert "round-1/client-0" in capsys.readouterr().out
    # resume: the finished target is kept as it is, the failed one is tried again
    results["targets"]["round-1/client-0"]["loss"] = 123.0
    (out / "results.json").write_text(json.dumps(results))
    _trace(trace)  # repairs client 1
    assert _run(argv) == 0
    again = json.loads((out / "results.json").read_text())["targets"]
    assert again["round-1/client-0"]["loss"] == 123.0
    assert again["round-1/client-1"]["status"] == "ok"


def test_nothing_attackable_exits_2_and_unknown_selection_is_refused(tmp_path):
    trace = tmp_path / "trace"
    _trace(trace, clients=(0,))
    manifest = json.loads((trace / "manifest.json").read_text())
    manifest["records"][0]["model"]["name"] = "no-such-model"
    (trace / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    assert _run(["attack", "--trace", str(trace), "--attack", "dlg", "--out", str(out)]) == 2
    row = json.loads((out / "results.json").read_text())["targets"]["round-1/client-0"]
    assert "unknown model 'no-such-model'" in row["error"]
    with pytest.raises(FedlabError, match="no records of rounds \\[9\\]"):
        _run(
            ["attack", "--trace", str(trace), "--attack", "dlg", "--rounds", "9", "--out", str(out)]
        )
    with pytest.raises(FedlabError, match="holds results of attack 'dlg'"):
        _run(["attack", "--trace", str(trace), "--attack", "ig", "--out", str(out)])


def test_batched_targets_of_one_round_match_one_at_a_time(tmp_path):
    trace = tmp_path / "trace"
    _trace(trace, clients=(0, 1, 2))
    corrupt = trace / "round-0001" / "client-0002.safetensors"
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # a bad target costs itself only
    common = ["attack", "--trace", str(trace), "--attack", "ig", "--max-iterations", "120"]
    assert _run([*common, "--out", str(tmp_path / "one")]) == 0
    assert _run([*common, "--batch", "3", "--out", str(tmp_path / "batched")]) == 0
    one = json.loads((tmp_path / "one" / "results.json").read_text())["targets"]
    many = json.loads((tmp_path / "batched" / "results.json").read_text())["targets"]
    assert many["round-1/client-2"]["status"] == "error"
    for target in ("round-1/client-0", "round-1/client-1"):
        assert many[target]["status"] == "ok"
        assert many[target]["iterations"] == one[target]["iterations"]
        assert many[target]["label_accuracy"] == one[target]["label_accuracy"]
        assert abs(many[target]["psnr"] - one[target]["psnr"]) <= 0.5


def test_a_failed_batch_falls_back_to_one_target_at_a_time(tmp_path, monkeypatch):
    from fedlab.attacks.inverting import InvertingGradients

    alone = InvertingGradients.reconstruct_many

    def broken(self, inputs, **kwargs):  # several targets fail, one at a time works
        if len(inputs) > 1:
            raise RuntimeError("out of memory")
        return alone(self, inputs, **kwargs)

    monkeypatch.setattr(InvertingGradients, "reconstruct_many", broken)
    trace = tmp_path / "trace"
    _trace(trace)
    argv = ["attack", "--trace", str(trace), "--attack", "ig", "--max-iterations", "20",
            "--batch", "2", "--out", str(tmp_path / "out")]  # fmt: skip
    assert _run(argv) == 0
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["targets"]
    assert [r["status"] for r in rows.values()] == ["ok", "ok"]

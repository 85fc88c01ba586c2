"""``fedlab attack --denoise NAME --denoiser DIR`` on a written trace with local DP noise."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from fedlab.attacks.cli import register
from fedlab.attacks.pgla.surrogate import victim_images
from pgla_helpers import tiny_pipeline

from fedlab.errors import FedlabError
from fedlab.traces import TraceWriter

SPEC = {"name": "lenet", "kwargs": {"num_classes": 10, "image_size": 32}}
LR, STD = 0.1, 0.001  # noise std on the update; 0.01 per gradient coordinate


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _noisy_trace(path) -> None:
    from fedlab.attacks.base import ModelSpec

    writer = TraceWriter(path)
    torch.manual_seed(0)
    model = ModelSpec(SPEC["name"], SPEC["kwargs"]).build()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    gpath = writer.write_global(1, start)
    images, _ = victim_images(1)
    x, y = images[:1], torch.tensor([3])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    gen = torch.Generator().manual_seed(0)
    sent = {
        n: start[n] - LR * g / norm + STD * torch.randn(g.shape, generator=gen)
        for (n, _), g in zip(model.named_parameters(), grads, strict=True)
    }
    writer.add(
        server_round=1,
        client=0,
        received=sent,
        global_path=gpath,
        model=SPEC,
        batch_size=1,
        image_shape=(3, 32, 32),
        num_classes=10,
        lr=LR,
        ground_truth=(x, y),
        dp={"mechanism": "gaussian", "clip": LR, "std": STD},
    )


def test_attack_with_a_classical_denoiser(tmp_path) -> None:
    trace, out = tmp_path / "trace", tmp_path / "out"
    _noisy_trace(trace)
    argv = [
        "attack",
        "--trace",
        str(trace),
        "--attack",
        "idlg",
        "--max-iterations",
        "10",
        "--restarts",
        "0",
        "--denoise",
        "wiener",
        "--out",
        str(out),
    ]
    assert _run(argv) == 0
    row = json.loads((out / "results.json").read_text())["targets"]["round-1/client-0"]
    assert row["status"] == "ok" and row["label_accuracy"] == 1.0


def test_learned_denoiser_of_another_model_is_a_target_error(tmp_path) -> None:
    trace, out = tmp_path / "trace", tmp_path / "out"
    _noisy_trace(trace)
    tiny_pipeline().save_pretrained(tmp_path / "den")  # trained for 60 parameters
    argv = [
        "attack",
        "--trace",
        str(trace),
        "--attack",
        "idlg",
        "--max-iterations",
        "5",
        "--denoise",
        "pgla",
        "--denoiser",
        str(tmp_path / "den"),
        "--out",
        str(out),
    ]
    assert _run(argv) == 2
    row = json.loads((out / "results.json").read_text())["targets"]["round-1/client-0"]
    assert "15826 values but this denoiser was trained for 60" in row["error"]
    with pytest.raises(FedlabError, match="needs a folder"):
        _run(argv[:-4] + ["--out", str(out)])

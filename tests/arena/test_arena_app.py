"""The streaming_arena app and the ``fedlab arena`` command."""

from __future__ import annotations

import json

import pytest
from fedlab.clients.arena.app import streaming_arena
from fedlab.clients.arena.config import ArenaConfig

from fedlab.errors import FedlabError

TINY = {
    "num-supernodes": 2, "num-server-rounds": 1, "local-steps": 2, "batch-size": 4,
    "frame-size": 32, "frames-per-video": 6, "videos-per-client": 1, "test-videos": 1,
    "vit-dim": 16, "vit-depth": 2, "vit-heads": 2, "vit-mlp-ratio": 1.0, "patch-size": 8,
}  # fmt: skip


def test_config_errors_name_the_value() -> None:
    with pytest.raises(FedlabError, match="frame-size 90 is not a multiple of patch-size 8"):
        ArenaConfig.from_mapping({"frame-size": 90})
    with pytest.raises(FedlabError, match=r"arena-budget must lie in \(0, 1\]"):
        ArenaConfig.from_mapping({"arena-budget": 0})
    with pytest.raises(FedlabError, match="keep-min"):
        ArenaConfig.from_mapping({"keep-min": 0.8, "keep-max": 0.5})
    with pytest.raises(FedlabError, match="unknown run-config key 'dataset'"):
        streaming_arena.resolve_config({"dataset": "mnist"})


@pytest.mark.slow
def test_app_runs_in_process_and_reports_arena(tmp_path) -> None:
    from fedlab.inprocess import run_in_process

    config = streaming_arena.resolve_config({**TINY, "out-dir": str(tmp_path / "run")})
    summary = run_in_process(streaming_arena, config)
    assert summary["rounds-finished"] == 1
    final = summary["final"]["evaluate"]
    assert 0 <= final["ap50-full"] <= 1 and 0 <= final["ap50-arena"] <= 1
    assert final["tokens-share-arena"] < 1 and final["speedup-arena"] > 0
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_arena_command_writes_detections_bytes_and_grid(tmp_path) -> None:
    import torch
    from fedlab.clients.arena.model import ArenaViT

    from fedlab.cli import fedlab_main

    torch.manual_seed(0)
    ArenaViT(image_size=32, patch_size=8, dim=16, depth=2, heads=2, head_hidden=16).save_pretrained(
        tmp_path / "det"
    )
    out = tmp_path / "out"
    code = fedlab_main(["arena", "--clip", "sprites:0", "--weights", str(tmp_path / "det"),
                        "--frames", "8", "--out", str(out)])  # fmt: skip
    assert code in (0, None)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 8 and summary["bytes"] > 0 and "ap50" in summary
    assert len(json.loads((out / "detections.json").read_text())) == 8
    assert (out / "frames.png").stat().st_size > 1000
    missing = ["arena", "--clip", "sprites:0", "--weights", str(tmp_path / "nothing"), "--out",
               str(out)]  # fmt: skip
    assert fedlab_main(missing) not in (0, None)

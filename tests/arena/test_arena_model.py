"""The Arena ViT: pruned inference, positional embeddings, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fedlab.clients.arena.infer import ArenaRunner, ArenaSettings
from fedlab.clients.arena.model import ArenaViT, decode, dense_targets, to_tensor
from fedlab.clients.arena.sampler import SamplerConfig, check_budget

from fedlab.errors import FedlabError


def tiny_model(seed: int = 0) -> ArenaViT:
    torch.manual_seed(seed)
    return ArenaViT(image_size=32, patch_size=8, dim=16, depth=2, heads=2, head_hidden=16).eval()


def frames(count: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_every_token_kept_equals_full_inference() -> None:
    model = tiny_model()
    x = frames(2)
    full, features = model(x)
    everything = torch.arange(model.num_tokens)
    memory = torch.randn_like(features)  # irrelevant when every token is kept
    pruned, pruned_features = model(x, everything, memory)
    torch.testing.assert_close(pruned, full)
    torch.testing.assert_close(pruned_features, features)
    per_example = everything.expand(2, -1)
    torch.testing.assert_close(model(x, per_example, memory)[0], full)


@torch.no_grad()
def test_runner_sparse_path_with_every_token_equals_full() -> None:
    model = tiny_model()
    x = frames()
    full, memory = model(x)
    runner = ArenaRunner(model, ArenaSettings(sampler=SamplerConfig(budget=1.0)))
    sparse = runner._sparse(x, np.arange(model.num_tokens), torch.randn_like(memory))
    torch.testing.assert_close(sparse, full)


@torch.no_grad()
def test_positional_embeddings_follow_the_kept_tokens() -> None:
    model = tiny_model()
    patches = model.patchify(frames())
    reference = model.encode(patches)
    perm = torch.randperm(model.num_tokens, generator=torch.Generator().manual_seed(1))
    # Shuffled tokens carrying their own positions give the same features, shuffled.
    torch.testing.assert_close(model.encode(patches[:, perm], perm), reference[:, perm])
    # Without their positions (positions of the slots they landed in) they do not.
    shuffled = model.encode(patches[:, perm], torch.arange(model.num_tokens))
    assert not torch.allclose(shuffled, reference[:, perm], atol=1e-4)
    # A subset gets exactly the embeddings of its own positions.
    keep = torch.tensor([3, 0, 9])
    torch.testing.assert_close(model._positions(keep, 1), model.pos_embed[:, keep])


@torch.no_grad()
def test_dropped_positions_take_the_memory_plus_stale() -> None:
    model = tiny_model()
    torch.nn.init.normal_(model.stale)
    x = frames()
    _, memory = model(frames(seed=5))
    keep = torch.tensor([1, 4, 7])
    _, features = model(x, keep, memory)
    dropped = torch.tensor([i for i in range(model.num_tokens) if i not in keep.tolist()])
    torch.testing.assert_close(features[:, dropped], (memory + model.stale)[:, dropped])


def _one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_empty_frame_is_a_clear_error() -> None:
    with pytest.raises(FedlabError) as excinfo:
        to_tensor(np.zeros((0, 0, 3), np.uint8))
    assert "empty frame" in _one_line(excinfo)
    with pytest.raises(FedlabError) as excinfo:
        tiny_model().patchify(torch.zeros(1, 3, 0, 32))
    assert "empty frame" in _one_line(excinfo)
    with pytest.raises(FedlabError) as excinfo:
        ArenaRunner(tiny_model(), ArenaSettings()).run(np.zeros((0, 32, 32, 3), np.uint8))
    assert "empty" in _one_line(excinfo)


def test_frame_not_divisible_into_patches_is_a_clear_error() -> None:
    with pytest.raises(FedlabError) as excinfo:
        tiny_model().patchify(torch.zeros(1, 3, 30, 32))
    message = _one_line(excinfo)
    assert "30x32" in message and "8-px patches" in message
    with pytest.raises(FedlabError) as excinfo:
        ArenaViT(image_size=30, patch_size=8)
    assert "multiple" in _one_line(excinfo)


@pytest.mark.parametrize("budget", [0, 0.0, -0.1, 1.01, 2, float("nan")])
def test_budget_outside_zero_one_is_a_clear_error(budget: float) -> None:
    with pytest.raises(FedlabError) as excinfo:
        SamplerConfig(budget=budget)
    assert "(0, 1]" in _one_line(excinfo)
    with pytest.raises(FedlabError) as excinfo:
        check_budget(budget)
    assert str(budget) in _one_line(excinfo)


def test_targets_decode_back_to_the_boxes() -> None:
    boxes = np.array([[3.0, 5.0, 20.0, 14.0], [18.0, 18.0, 31.0, 32.0]], np.float32)
    obj, reg, region = dense_targets(boxes, 32, 8)
    assert obj.sum() == 2 and region.sum() >= 2
    logits = np.where(obj > 0, 5.0, -5.0)
    out = torch.from_numpy(np.concatenate([logits[:, None], reg], 1)[None]).float()
    (dets,) = decode(out, 32, 8)
    found = dets.boxes[np.argsort(dets.boxes[:, 0])]
    np.testing.assert_allclose(found, boxes, atol=1e-4)


@torch.no_grad()
def test_evit_keeping_everything_equals_full() -> None:
    model = tiny_model()
    x = frames()
    full, _ = model(x)
    out, processed = model.forward_evit(x, model.num_tokens, prune_after=1)
    torch.testing.assert_close(out, full, atol=1e-5, rtol=1e-4)
    _, fewer = model.forward_evit(x, 4, prune_after=1)
    assert fewer == model.num_tokens + 5  # block 1 on all, block 2 on 4 kept + 1 fused

"""The Arena and CaDM defaults' weights ship with the package and load (issue 28)."""

from __future__ import annotations

import torch
from fedlab.clients.arena.cli import SHIPPED_WEIGHTS
from fedlab.clients.arena.model import load_detector
from fedlab.clients.cadm.cli import resolve_decoder
from fedlab.clients.cadm.config import SHIPPED_DECODER
from fedlab.clients.cadm.model import load_decoder


def test_shipped_cadm_decoder_is_the_commands_default_and_loads() -> None:
    decoder = load_decoder(SHIPPED_DECODER)
    assert decoder.model_bytes() > 0
    assert type(resolve_decoder("shipped")) is type(decoder)


def test_shipped_arena_detector_loads() -> None:
    model = load_detector(SHIPPED_WEIGHTS)
    side = model.config.image_size
    assert model.num_tokens > 0 and side > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())

"""CaDM's training, validation and test clips, and the patches computed once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fedlab.clients.cadm import data
from fedlab.clients.sr.data import HELDOUT_IMAGES, TRAIN_PHOTOS

from fedlab.errors import FedlabError


def test_pans_move_over_training_photos_only() -> None:
    assert set(data.PAN_PHOTOS) <= set(TRAIN_PHOTOS)
    assert not set(data.PAN_PHOTOS) & set(HELDOUT_IMAGES)
    clip = data.photo_pan(0, seed=3)
    assert clip.shape == (16, 96, 96, 3) and clip.dtype == np.uint8
    assert np.array_equal(clip, data.photo_pan(0, seed=3))  # a function of (seed, index)
    assert not np.array_equal(clip, data.photo_pan(2, seed=3))
    assert np.abs(np.diff(clip.astype(float), axis=0)).mean() > 0.5  # the camera moves


def test_training_clips_mix_kinds_and_clients_hold_different_clips() -> None:
    clips = data.train_clips(4, seed=0)
    assert [c.shape for c in clips] == [(16, 96, 96, 3)] * 4
    assert np.array_equal(clips[1], data.bbb_crop(1, 0))  # k mod 4 == 1: bigbuckbunny
    assert np.array_equal(clips[0], data.photo_pan(0, 0))  # 0 and 2: pans
    a, b = data.client_clips(0, 2, 4, 0), data.client_clips(1, 2, 4, 0)
    assert len(a) == len(b) == 2 and not np.array_equal(a[0], b[0])


def test_validation_clips_are_frames_no_training_crop_reaches() -> None:
    bbb, procedural = data.validation_clips(0)
    first, last = data.BBB_VALIDATION_FRAMES
    assert first >= data.BBB_TRAIN_FRAMES
    assert np.array_equal(bbb, data._bigbuckbunny()[first:last, 2:178])
    assert bbb.shape == (16, 176, 320, 3) and procedural.shape == (8, 96, 96, 3)
    for k in range(1, 40, 4):  # every bigbuckbunny training crop stays before frame 112
        rng = np.random.default_rng(data.derive_seed(0, "cadm-bbb", k) % 2**32)
        start = int(rng.integers(0, data.BBB_TRAIN_FRAMES - data.CLIP_FRAMES + 1))
        assert start + data.CLIP_FRAMES <= data.BBB_TRAIN_FRAMES


def _patches(cache, count=24, seed=0):  # noqa: ANN001, ANN202
    return data.patch_tensors(0, 2, clips=2, seed=seed, pairs=[(2, 8), (4, 5)], crfs=[30],
                              patch=16, count=count, cache=cache)  # fmt: skip


def test_patches_are_computed_once_and_found_again(tmp_path) -> None:
    made = _patches(tmp_path)
    files = list(tmp_path.glob("cadm-patches-*.safetensors"))
    assert len(files) == 1
    again = _patches(tmp_path)
    assert torch.equal(made.clean, again.clean) and torch.equal(made.up, again.up)
    assert torch.equal(made.label, again.label) and set(made.label.tolist()) == {0, 1}
    assert torch.equal(made.clean, _patches("").clean)  # the cache changes nothing
    _patches(tmp_path, count=25)
    assert len(list(tmp_path.glob("cadm-patches-*.safetensors"))) == 2  # another recipe
    clean, up, label = made[3]
    assert clean.shape == up.shape == (3, 16, 16) and 0 <= float(up.min()) <= float(up.max()) <= 1


def test_a_corrupt_patch_cache_is_a_one_line_error(tmp_path) -> None:
    _patches(tmp_path)
    (path,) = tmp_path.glob("cadm-patches-*.safetensors")
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(FedlabError, match="is unreadable .*; delete it") as err:
        _patches(tmp_path)
    assert len(str(err.value).splitlines()) == 1


def test_a_patch_cache_of_other_dtypes_is_refused(tmp_path) -> None:
    from safetensors.torch import save_file

    _patches(tmp_path)
    (path,) = tmp_path.glob("cadm-patches-*.safetensors")
    tensors = {"clean": torch.zeros(2, 3, 16, 16), "up": torch.zeros(2, 3, 16, 16),
               "label": torch.zeros(2, dtype=torch.long)}  # fmt: skip
    save_file(tensors, str(path))
    with pytest.raises(FedlabError, match="expected uint8 .* delete the cache file"):
        _patches(tmp_path)

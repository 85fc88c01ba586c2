"""The gradient <-> image transform is exact, and refuses gradients of another size."""

from __future__ import annotations

import json
import math

import pytest
import torch
from fedlab.attacks.models import LeNet
from fedlab.attacks.pgla.transform import (
    GradientImageTransform,
    flatten_gradients,
    power_of_two,
    unflatten_gradients,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlab.errors import FedlabError


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    batch=st.integers(1, 3),
    log_scale=st.integers(-12, 4),
    seed=st.integers(0, 10_000),
)
def test_round_trip_is_bit_exact(n: int, batch: int, log_scale: int, seed: int) -> None:
    tf = GradientImageTransform.for_size(n, multiple=4, scale=2.0**log_scale)
    g = torch.Generator().manual_seed(seed)
    flat = torch.randn(batch, n, generator=g) * 10.0 ** torch.randint(-6, 2, (1,), generator=g)
    img = tf.to_image(flat)
    assert img.shape == (batch, 1, tf.side, tf.side)
    assert tf.side % 4 == 0 and tf.side**2 >= n
    assert torch.equal(tf.from_image(img), flat)
    assert torch.count_nonzero(img.reshape(batch, -1)[:, n:]) == 0  # zero padding


def test_lenet_gradient_is_a_128_square_and_unflattens() -> None:
    model = LeNet()
    grads = [torch.randn_like(p) for p in model.parameters()]
    flat = flatten_gradients(grads)
    assert flat.numel() == 15826
    tf = GradientImageTransform.fit(flat[None] / flat.norm(), clip_norm=1.0)
    assert tf.side == 128
    back = unflatten_gradients(tf.from_image(tf.to_image(flat))[0], grads)
    assert all(torch.equal(a, b) for a, b in zip(back, grads, strict=True))


def test_fit_scale_is_power_of_two_near_rms() -> None:
    flat = torch.randn(16, 1000) * 0.01
    tf = GradientImageTransform.fit(flat, clip_norm=1.0)
    assert math.log2(tf.scale) == int(math.log2(tf.scale))
    assert 0.01 / math.sqrt(2) <= tf.scale <= 0.01 * math.sqrt(2)
    assert power_of_two(3.0) == 4.0 and power_of_two(0.3) == 0.25


def test_wrong_size_is_refused_with_the_expected_size() -> None:
    tf = GradientImageTransform.for_size(60)
    with pytest.raises(FedlabError, match="61 values but this denoiser was trained for 60"):
        tf.to_image(torch.zeros(61))
    with pytest.raises(FedlabError, match="side >= 8"):
        GradientImageTransform(num_params=60, side=7)
    with pytest.raises(FedlabError, match="model has 3 parameters"):
        unflatten_gradients(torch.zeros(4), [torch.zeros(3)])


def test_save_load_and_missing_file(tmp_path) -> None:
    tf = GradientImageTransform(num_params=10, side=4, scale=0.5, clip_norm=2.0)
    path = tf.save_pretrained(tmp_path)
    assert path == tmp_path / "transform" / "transform_config.json"
    saved = json.loads(path.read_text())
    assert saved["_class_name"] == "GradientImageTransform"
    assert {k: saved[k] for k in tf.to_dict()} == {
        "num_params": 10,
        "side": 4,
        "scale": 0.5,
        "clip_norm": 2.0,
    }
    loaded = GradientImageTransform.from_pretrained(tmp_path)
    assert loaded == tf and hash(loaded) == hash(tf)
    assert loaded != GradientImageTransform(num_params=10, side=4, scale=0.25, clip_norm=2.0)
    with pytest.raises(FedlabError, match="fedlab pgla train"):
        GradientImageTransform.from_pretrained(tmp_path / "nope")
    path.write_text('{"side": 4}')
    with pytest.raises(FedlabError, match="malformed"):
        GradientImageTransform.from_pretrained(tmp_path)
    path.write_text("{not json")
    with pytest.raises(FedlabError, match="transform_config.json is not valid JSON"):
        GradientImageTransform.from_pretrained(tmp_path)
    path.write_text(json.dumps({**saved, "_class_name": "DnCNN"}))
    with pytest.raises(FedlabError, match="describes a DnCNN"):
        GradientImageTransform.from_pretrained(tmp_path)
    path.write_text(json.dumps({**saved, "side": 3}))
    with pytest.raises(FedlabError, match="use side >= 4"):
        GradientImageTransform.from_pretrained(tmp_path)


def test_transform_is_frozen_with_its_config() -> None:
    tf = GradientImageTransform(num_params=10, side=4, scale=0.5)
    with pytest.raises(AttributeError):
        tf.scale = 1.0  # type: ignore[misc]
    assert tf.config["scale"] == tf.scale == 0.5 and tf.clip_norm == 1.0


def test_atomic_writes_leave_no_temporary_and_readable_files(tmp_path) -> None:
    import stat

    from fedlab.atomic import atomic_write_text

    path = atomic_write_text(tmp_path / "a" / "x.json", "{}")
    assert path.read_text() == "{}"
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]
    assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044

"""Issue 33: the second prior's corpus, the positive control, the detail measure and the
log-grid rules of the Diff-SR study."""

from __future__ import annotations

import pytest
import torch
from fedlab.clients.harmonization.data import HELDOUT_PHOTOS
from fedlab.clients.sr.data import (
    CONTROL_FRAMES,
    FRAME_SIDE,
    HELDOUT_IMAGES,
    TRAIN_FRAMES,
    TRAIN_IMAGES,
    load_image,
)
from fedlab.clients.sr.evaluate import control_crops
from fedlab.clients.sr.metrics import image_metrics
from fedlab.clients.sr.prf import PRF, fit_kappa
from fedlab.clients.sr.report import within_one_step
from skimage.filters import gaussian

from fedlab.diffusion import make_scheduler
from fedlab.errors import FedlabError


def test_corpus_holds_no_test_image_of_any_app():
    never = {*HELDOUT_IMAGES, "cat", *HELDOUT_PHOTOS, *CONTROL_FRAMES}
    assert not never & set(TRAIN_IMAGES)
    assert all(not name.startswith(("carphone", "bikes")) for name in TRAIN_IMAGES)
    frames = {int(n.split("@")[1]) for n in TRAIN_FRAMES}
    controls = {int(n.split("@")[1]) for n in CONTROL_FRAMES}
    assert max(frames) < min(controls)


def test_clip_frames_load_at_their_side_and_bad_names_are_refused():
    frame = load_image(TRAIN_FRAMES[0])
    assert frame.shape[0] == 3 and min(frame.shape[1:]) == FRAME_SIDE
    assert 0 <= float(frame.min()) and float(frame.max()) <= 1 and float(frame.std()) > 0.05
    assert not torch.equal(frame, load_image(TRAIN_FRAMES[1]))
    with pytest.raises(FedlabError, match="has frames 0..131"):
        load_image("bigbuckbunny@500")


def test_control_crops_come_from_the_held_out_frames():
    crops = control_crops(0, 2, 64)
    frame = load_image(CONTROL_FRAMES[0])
    assert crops.shape == (2, 3, 64, 64)
    _, h, w = frame.shape
    assert any(torch.equal(crops[0], frame[:, y : y + 64, x : x + 64])
               for y in range(h - 63) for x in range(w - 63))  # fmt: skip
    assert not torch.equal(control_crops(3, 2, 64), control_crops(0, 2, 64))


def test_detail_error_grows_with_blur_and_is_zero_for_the_reference():
    ref = control_crops(1, 2, 64)
    lr = torch.nn.functional.avg_pool2d(ref, 2)
    errors = []
    for sigma in (0.0, 0.7, 1.5):
        out = ref if sigma == 0 else torch.stack([
            torch.from_numpy(gaussian(i.permute(1, 2, 0).numpy(), sigma=sigma, channel_axis=-1))
            .permute(2, 0, 1).float() for i in ref])  # fmt: skip
        errors.append(sum(image_metrics(out, ref, lr)["detail"]))
    assert errors[0] == pytest.approx(0.0, abs=1e-9) and errors[0] < errors[1] < errors[2]


def test_log_scale_kappa_fit_matches_small_oracle_steps():
    prf = PRF.calibrate(control_crops(2, 4, 32))
    ac = make_scheduler().alphas_cumprod
    oracle = {s: prf.with_kappa(2.0**-6).start_step(s, ac) for s in (1.5, 2, 3, 4, 6)}
    assert fit_kappa(prf, oracle, ac, log_scale=True) == pytest.approx(2.0**-6)


@pytest.mark.parametrize(
    ("prf_t", "oracle", "expected"),
    [(16, 16, True), (8, 16, True), (32, 16, True), (7, 16, False), (33, 16, False),
     (0, 0, True), (1, 0, True), (2, 0, False), (256, 256, True), (100, 256, False)],
)  # fmt: skip
def test_within_one_step_on_the_log_grid(prf_t, oracle, expected):
    grid = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert within_one_step(prf_t, oracle, grid) is expected

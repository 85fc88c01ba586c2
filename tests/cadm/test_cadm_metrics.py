"""CaDM's measurements: the hand-written BD-rate, per-frame PSNR, flicker, VMAF's range."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fedlab.clients.cadm.metrics import bd_rate, flicker, per_frame_mean, temporal_error, vmaf

from fedlab import image_quality


def test_bd_rate_of_a_curve_at_half_the_rate_is_minus_50_percent() -> None:
    q = [30.0, 33.0, 36.0, 39.0]
    assert bd_rate([100, 200, 400, 800], q, [50, 100, 200, 400], q) == pytest.approx(-50.0)
    assert bd_rate([100, 200, 400, 800], q, [200, 400, 800, 1600], q) == pytest.approx(100.0)


def test_bd_rate_uses_the_overlap_only_and_says_none_below_the_minimum() -> None:
    ref_r, ref_q = [100, 200, 400, 800], [30.0, 33.0, 36.0, 39.0]
    # the test curve equals the reference on 33-36 dB and goes elsewhere outside it
    test_q = [33.0, 34.0, 35.0, 36.0]
    test_r = list(10 ** np.interp(test_q, ref_q, np.log10(ref_r)))
    assert abs(bd_rate(ref_r, ref_q, test_r, test_q)) < 2.0
    assert bd_rate(ref_r, ref_q, [1, 2], [39.5, 40.2]) is None  # overlap < 1 dB
    assert bd_rate(ref_r, ref_q, [1], [35.0]) is None


def test_psnr_flicker_and_temporal_error() -> None:
    a = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert per_frame_mean(image_quality.psnr, a, a) == 100.0
    assert per_frame_mean(image_quality.psnr, a, (a + 0.1).clamp(0, 1)) < 25
    static = a[:1].repeat(5, 1, 1, 1)
    assert flicker(static) == 0.0 and flicker(a) > 10
    assert temporal_error(a, a) == 0.0 and flicker(a[:1]) == 0.0


def test_vmaf_is_high_for_identical_and_lower_for_blurred_frames() -> None:
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # some structure, not white noise
    blurred = torch.nn.functional.avg_pool2d(x, 5, 1, 2)
    same, worse = vmaf(x, x), vmaf(blurred, x)
    assert same > 90 and worse < same - 5

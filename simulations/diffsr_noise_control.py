"""Can the detail measure tell a prior's detail from noise? A yardstick check for issue 33.

The Diff-SR study judges detail with :func:`fedlab.image_quality.spectral_detail_error`, which
compares only the radially averaged power of the output's and the reference's upper
frequencies. Plain white Gaussian noise added to the bicubic upsampling also puts power
there. This script scores bicubic + noise of std ``sigma`` (in [0, 1] units, clamped) on the
study's own crops (the app's positive-control and test crops, the one downsampler) with the
detail error and HaarPSI, for a grid of ``sigma``: the lowest detail error noise alone reaches
is the floor a prior must beat for the measure to credit it with more than noise.

    OMP_NUM_THREADS=1 python simulations/diffsr_noise_control.py

Writes ``results/diffsr/noise_control.json``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from fedlab.clients.sr.degrade import downsample, upsample
from fedlab.clients.sr.evaluate import control_crops, heldout_crops

from fedlab import image_quality
from fedlab.atomic import atomic_write_json

OUT = Path(__file__).resolve().parent / "results" / "diffsr" / "noise_control.json"
SCALES = (1.5, 2.0, 2.5, 3.0, 4.0, 6.0)
SIGMAS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.12)
CROP = 64


def crops() -> dict[str, torch.Tensor]:
    """The study's control (2 per client) and test (6 per client) crops of 4 clients."""
    return {
        "control": torch.cat([control_crops(k, 2, CROP) for k in range(4)]),
        "test": torch.cat([heldout_crops(k, 6, CROP) for k in range(4)]),
    }


def main() -> None:
    torch.set_num_threads(1)
    result: dict = {"sigmas": list(SIGMAS), "sets": {}}
    for name, hr in crops().items():
        rows = {}
        for scale in SCALES:
            up = upsample(downsample(hr, scale), (CROP, CROP))
            gen = torch.Generator().manual_seed(0)
            cells = []
            for sigma in SIGMAS:
                out = (up + sigma * torch.randn(up.shape, generator=gen)).clamp(0, 1)
                cells.append({
                    "sigma": sigma,
                    "detail": float(image_quality.spectral_detail_error(out, hr).mean()),
                    "haarpsi": float(image_quality.haarpsi(out, hr, data_range=1.0).mean()),
                })  # fmt: skip
            best = min(cells, key=lambda c: c["detail"])
            rows[f"x{scale:g}"] = {"cells": cells, "best": best}
            print(name, f"x{scale:g}", "best sigma", best["sigma"], "detail",
                  round(best["detail"], 2), "haarpsi", round(best["haarpsi"], 3))  # fmt: skip
        result["sets"][name] = rows
    atomic_write_json(OUT, result)


if __name__ == "__main__":
    main()

"""The figures behind docs/diffsr.md's tiling paragraph (issue 33), on the shipped prior.

1. Sampling cost per output megapixel at 128 -> 512 px (x4, at PRF's t with the shipped
   kappa and the default 20 DDIM steps, one thread) for window sides and overlaps, and for
   the whole image at once.
2. Tiled against whole-image output (32 -> 128 px crop of ``astronaut``, t = 100, 20 DDIM
   steps, 32-px windows with 8 px overlap), beside two whole-image runs with different seeds.
3. The detail measure on a 128-px crop of ``coffee``: a 1-px Gaussian blur and a 5-px shift.

    OMP_NUM_THREADS=1 python simulations/diffsr_tiling_cost.py

The end-to-end figure (`fedlab sr` at 256 -> 1024 px) comes from `/usr/bin/time -v fedlab sr`.
"""

from __future__ import annotations

import time

import torch
from fedlab.clients.sr.config import FITTED_KAPPA, SHIPPED_PRIOR
from fedlab.clients.sr.evaluate import calibrated_prf
from fedlab.clients.sr.methods import DiffSR
from skimage import data
from skimage.filters import gaussian

from fedlab import image_quality
from fedlab.diffusion import load_unet, make_scheduler

WINDOWS = ((32, 8), (32, 4), (64, 16), (64, 8), (0, 0))


def as_tensor(array) -> torch.Tensor:
    return torch.from_numpy(array).permute(2, 0, 1)[None].float()


def main() -> None:
    torch.set_num_threads(1)
    unet = load_unet(SHIPPED_PRIOR)
    hr = as_tensor(data.astronaut() / 255.0)
    lr = torch.nn.functional.interpolate(hr, size=(128, 128), mode="area")
    t = calibrated_prf(kappa=FITTED_KAPPA).start_step(4.0, make_scheduler().alphas_cumprod)
    print(f"PRF t at x4 with kappa {FITTED_KAPPA:g}: {t}")
    for tile, overlap in WINDOWS:
        sr = DiffSR(unet, make_scheduler(), tile=tile, tile_overlap=overlap if tile else None)
        started = time.perf_counter()
        sr.run(lr, (512, 512), t, generator=torch.Generator().manual_seed(0))
        seconds = time.perf_counter() - started
        print(f"window {tile or 'whole'}/{overlap}: {seconds:.1f} s at 512 x 512, "
              f"{seconds / (512 * 512 / 1e6):.0f} s per output megapixel")  # fmt: skip

    crop = as_tensor(data.astronaut()[100:228, 150:278] / 255.0)
    small = torch.nn.functional.interpolate(crop, size=(32, 32), mode="area")

    def run(tile: int, seed: int) -> torch.Tensor:
        sr = DiffSR(unet, make_scheduler(), steps=20, tile=tile)
        return sr.run(small, (128, 128), 100, generator=torch.Generator().manual_seed(seed))

    whole, tiled, other = run(0, 0), run(32, 0), run(0, 1)
    print(f"PSNR tiled vs whole image {image_quality.psnr(tiled, whole):.1f} dB; "
          f"two seeds, whole image {image_quality.psnr(other, whole):.1f} dB")  # fmt: skip

    image = data.coffee()[100:228, 200:328] / 255.0
    reference = as_tensor(image)
    blurred = as_tensor(gaussian(image, sigma=1.0, channel_axis=-1))
    shifted = torch.roll(reference, 5, dims=-1)
    for name, x in (("1-px blur", blurred), ("5-px shift", shifted)):
        error = float(image_quality.spectral_detail_error(x, reference)[0])
        quality = image_quality.psnr(x, reference)
        print(f"{name}: detail error {error:.1f} dB, PSNR {quality:.1f} dB")


if __name__ == "__main__":
    main()

"""The figures behind docs/cadm.md's bit-depth paragraph (issue 34): the index path, lossless.

For every bit-depth b, carphone (the bundled clip, full resolution, r = 1) goes through
CaDM's own encoder and receiver with the lossless FFV1 codec; printed: whether the
receiver's index planes equal the sender's, PSNR of the received frames against the clip and
their mean colour shift in 8-bit levels.

    OMP_NUM_THREADS=1 python simulations/cadm_bitdepth_path.py [--frames N]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from fedlab.clients.cadm.codec import (
    CodecSpec,
    encode,
    index_planes,
    receive,
    received_planes,
    to_tensor,
)
from fedlab.clients.video import bundled_clip

from fedlab import image_quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=0, help="first N frames (0: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    clip = bundled_clip("carphone", max_frames=args.frames)
    reference = to_tensor(clip)
    print(f"carphone, {len(clip)} frames, r = 1, FFV1")
    for b in range(8, 0, -1):
        encoded = encode(clip, CodecSpec(r=1, b=b, codec="ffv1"))
        exact = np.array_equal(received_planes(encoded), index_planes(clip, b))
        out = receive(encoded)
        shift = float((out - reference).mean() * 255)
        quality = image_quality.psnr(out, reference)
        print(f"b = {b}: index planes exact {exact}, PSNR {quality:.2f} dB, "
              f"mean shift {shift:+.2f} levels")  # fmt: skip


if __name__ == "__main__":
    main()

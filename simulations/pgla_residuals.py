"""Do PGLA and the DnCNN leave the same error behind? Residual agreement per noise level.

For the benchmark's victims and noise draws (simulations/pgla_bench.py), denoise with both and
print each one's gradient cosine, the cosine of their average, the residual norm over the noise
norm, and the cosine between the two residual vectors (``pgla - clean`` against ``dncnn -
clean``). Residuals that point the same way and an average no better than either mean both
denoisers stop at the same error: more training of one alone will not separate them.

Usage (``--pgla`` and ``--dncnn`` default to the shipped denoisers, package data of
``fedlab.attacks.pgla``)::

    python simulations/pgla_residuals.py [--pgla DIR --dncnn DIR] [--levels 0,1,2]
"""

from __future__ import annotations

import argparse

import torch
from fedlab.attacks.pgla.denoisers import load_denoiser
from fedlab.attacks.pgla.shipped import SHIPPED_DENOISERS
from pgla_bench import CLIP, grad_metrics, levels, perturb, victims


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over victims of the benchmark's gradient cosine."""
    return sum(grad_metrics(a, b)["cosine"]) / a.shape[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pgla", default=str(SHIPPED_DENOISERS["pgla"]),
                   help="PGLA denoiser or training run folder (default: shipped)")  # fmt: skip
    p.add_argument("--dncnn", default=str(SHIPPED_DENOISERS["dncnn"]),
                   help="DnCNN denoiser or training run folder (default: shipped)")  # fmt: skip
    p.add_argument("--levels", default="0,1,2", help="indices into the benchmark's levels")
    p.add_argument("--victims", type=int, default=8)
    p.add_argument("--ddim-steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    clean, *_ = victims(args.victims)
    all_levels = levels(clean.shape[1])
    pgla = load_denoiser("pgla", args.pgla, sampler="ddim", steps=args.ddim_steps, seed=args.seed)
    dncnn = load_denoiser("dncnn", args.dncnn)
    print("| level | PGLA | DnCNN | average | residual/noise PGLA | DnCNN | residual cosine |")
    print("|---|---|---|---|---|---|---|")
    for li in (int(v) for v in args.levels.split(",")):
        level = all_levels[li]
        noisy = perturb(clean, level, seed=args.seed * 1000 + li)  # the benchmark's draw
        std = level["std_over_c"] * CLIP
        a = pgla.denoise_batch(noisy, std, clip_norm=CLIP)
        b = dncnn.denoise(noisy, noise_std=std, clip_norm=CLIP)
        noise = (noisy - clean).norm(dim=1)
        ra, rb = ((x - clean).norm(dim=1) / noise for x in (a, b))
        print(
            f"| {level['mechanism']}:{level['std_over_c']} | {_cos(a, clean):.5f} | "
            f"{_cos(b, clean):.5f} | {_cos((a + b) / 2, clean):.5f} | {ra.mean():.3f} | "
            f"{rb.mean():.3f} | {_cos(a - clean, b - clean):.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

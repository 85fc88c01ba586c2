"""PGLA denoising benchmark: gradient cosine and PSNR per denoiser and noise level, timing,
and (optionally) reconstruction quality of an attack on the denoised gradients.

Noise levels are fixed here, before any tuning: Gaussian noise std / C in
{0.001, 0.003, 0.01, 0.03, 0.1} and Laplace noise of std / C in {0.003, 0.01}, each with its
per-release epsilon at delta = 1e-5 (see attacks/pgla/privacy.py for the sensitivities).
Victims: DLG's LeNet (fresh DLG init per victim, seeds 10_000 + i) on 32x32 crops of
scikit-image photos, which no denoiser saw (they were trained on digits). Gradients are
clipped to C = 1 before the noise, as a local-DP client would.

Usage::

    python simulations/pgla_bench.py --pgla runs/pgla-small --dncnn runs/dncnn-small \\
        --out results/pgla-bench [--ddim-steps 10] [--attack ig --attack-iterations 200]

Writes ``results.json``, ``table.md`` and ``gradient_denoising.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fedlab.attacks.pgla.denoisers import load_denoiser
from fedlab.attacks.pgla.privacy import gaussian_epsilon, laplace_epsilon
from fedlab.attacks.pgla.report import write_report
from fedlab.attacks.pgla.surrogate import clean_gradient, clip_l2, victim_images, victim_model

from fedlab.atomic import atomic_write_text

log = logging.getLogger("fedlab.pgla_bench")

CLIP = 1.0
DELTA = 1e-5
GAUSSIAN_LEVELS = (0.001, 0.003, 0.01, 0.03, 0.1)
LAPLACE_LEVELS = (0.003, 0.01)
RECON_LEVELS = (
    "0.003,0.01"  # Gaussian std/C; at 0.001 no denoising already equals the clean ceiling
)
CLASSICAL = ("none", "gaussian", "wiener", "wavelet")


def levels(num_params: int) -> list[dict[str, Any]]:
    """The declared noise levels with their per-release epsilon."""
    out = [
        {"mechanism": "gaussian", "std_over_c": s, "epsilon": gaussian_epsilon(s, delta=DELTA)}
        for s in GAUSSIAN_LEVELS
    ]
    out += [
        {"mechanism": "laplace", "std_over_c": s, "epsilon": laplace_epsilon(s, num_params)}
        for s in LAPLACE_LEVELS
    ]
    return out


def victims(count: int) -> tuple[torch.Tensor, list[torch.nn.Module], torch.Tensor, torch.Tensor]:
    """Clipped clean gradients ``(count, d)``, the models, images and labels."""
    images, labels = victim_images(count)
    models = [victim_model(10_000 + i) for i in range(count)]
    grads = torch.stack(
        [clean_gradient(m, x, y) for m, x, y in zip(models, images, labels, strict=True)]
    )
    for m, n in zip(models, grads.norm(dim=1).tolist(), strict=True):
        m.unclipped_norm = n  # only for the oracle-scale attacker
    return clip_l2(grads, CLIP), models, images, labels


def perturb(clean: torch.Tensor, level: dict[str, Any], seed: int) -> torch.Tensor:
    """Clean + noise of the level's mechanism and std (seeded)."""
    g = torch.Generator().manual_seed(seed)
    std = level["std_over_c"] * CLIP
    if level["mechanism"] == "gaussian":
        return clean + std * torch.randn(clean.shape, generator=g)
    u = torch.rand(clean.shape, generator=g, dtype=torch.float64) - 0.5
    lap = -np.sign(u) * torch.log1p(-2 * u.abs())  # unit-scale Laplace by inversion
    return clean + (std / math.sqrt(2.0)) * lap.float()


def grad_metrics(clean: torch.Tensor, den: torch.Tensor) -> dict[str, list[float]]:
    """Per-victim cosine similarity and PSNR (peak = max |clean|)."""
    cos = torch.nn.functional.cosine_similarity(clean.double(), den.double(), dim=1)
    mse = (clean.double() - den.double()).pow(2).mean(dim=1)
    peak = clean.double().abs().amax(dim=1)
    psnr = 10 * torch.log10(peak**2 / mse.clamp_min(1e-30))
    return {"cosine": cos.tolist(), "psnr": psnr.tolist()}


def build_denoisers(args: argparse.Namespace) -> dict[str, Any]:
    """Every denoiser available: the classical ones always, learned ones when given."""
    keep = set(args.denoisers.split(",")) if args.denoisers else None
    dens: dict[str, Any] = {name: load_denoiser(name) for name in CLASSICAL}
    if args.dncnn:
        dens["dncnn"] = load_denoiser("dncnn", args.dncnn)
    if args.pgla:
        opts = {"sampler": "ddim", "steps": args.ddim_steps, "seed": args.seed}
        dens["pgla"] = load_denoiser("pgla", args.pgla, **opts)
        dens["pgla-fixed"] = load_denoiser("pgla-fixed", args.pgla, fixed_t=args.fixed_t, **opts)
    if args.pgla_cond:
        opts = {"sampler": "ddim", "steps": args.ddim_steps, "seed": args.seed}
        dens["pgla-cond"] = load_denoiser("pgla-cond", args.pgla_cond, **opts)
        dens["pgla-cond-sr3"] = load_denoiser("pgla-cond", args.pgla_cond, start="noise", **opts)
    return {k: v for k, v in dens.items() if keep is None or k in keep}


def run_denoise(den: Any, noisy: torch.Tensor, std: float) -> tuple[torch.Tensor, float]:
    """Denoise the batch at a known noise std; returns the result and seconds per gradient."""
    t0 = time.perf_counter()
    if hasattr(den, "denoise_batch"):
        out = den.denoise_batch(noisy, std, clip_norm=CLIP)
    else:
        out = den.denoise(noisy, noise_std=std, clip_norm=CLIP)
    return out, (time.perf_counter() - t0) / noisy.shape[0]


def timing(
    den: Any,
    clean: torch.Tensor,
    noisy: torch.Tensor,
    std: float,
    steps_list: list[int],
    ddpm: bool = True,
) -> list[dict]:
    """Reverse steps -> seconds per gradient (batch of one and batched) and quality.

    DDIM at every step count on the whole batch (cosine, PSNR) and on one gradient (seconds);
    DDPM (every step from the adaptive start) on one gradient only.
    """
    rows = []
    pipe = den.pipe
    for steps in steps_list:
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(0)  # the conditional variant starts from noise
        pipe.denoise(noisy[:1], std, clip_norm=CLIP, sampler="ddim", steps=steps, generator=gen)
        single = time.perf_counter() - t0
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(0)
        out = pipe.denoise(noisy, std, clip_norm=CLIP, sampler="ddim", steps=steps, generator=gen)
        batched = (time.perf_counter() - t0) / noisy.shape[0]
        m = grad_metrics(clean, out)
        rows.append(
            {
                "sampler": "ddim",
                "std_over_c": std / CLIP,
                "steps": steps,
                "seconds": single,
                "seconds_batched": batched,
                "cosine": stats(m["cosine"]),
                "psnr": stats(m["psnr"]),
            }
        )
    if not ddpm:
        return rows
    t_start = pipe.start_step(std * pipe.transform.clip_norm / CLIP / pipe.transform.scale)
    t0 = time.perf_counter()
    out = pipe.denoise(
        noisy[:1], std, clip_norm=CLIP, sampler="ddpm", generator=torch.Generator().manual_seed(0)
    )
    single = time.perf_counter() - t0
    m = grad_metrics(clean[:1], out)
    rows.append(
        {
            "sampler": "ddpm",
            "std_over_c": std / CLIP,
            "steps": (t_start or 0) + 1,
            "seconds": single,
            "seconds_batched": None,
            "cosine": stats(m["cosine"]),
            "psnr": stats(m["psnr"]),
        }
    )
    return rows


def reconstruct(args: argparse.Namespace, den_grads: torch.Tensor, models: list, images, labels):
    """Attack each victim's denoised gradient; returns per-victim psnr, ssim, label accuracy."""
    from fedlab.attacks import metrics
    from fedlab.attacks.base import AttackInput, ModelSpec
    from fedlab.attacks.pgla.transform import unflatten_gradients

    from fedlab.registry import ATTACKS

    attack = ATTACKS.get(args.attack)(
        max_iterations=args.attack_iterations, restarts=0, seed=args.seed
    )
    spec = ModelSpec("lenet", {"num_classes": 10, "image_size": 32})
    rows: dict[str, list[float]] = {"psnr": [], "ssim": [], "label_accuracy": []}
    for i in range(args.attack_victims):
        params = [p.detach().clone() for p in models[i].parameters()]
        target = den_grads[i]
        if args.oracle_scale:  # undo the clipping with the true norm: an upper-bound attacker
            target = target * (models[i].unclipped_norm / CLIP)
        inp = AttackInput(
            model=spec,
            params=params,
            batch_size=1,
            image_shape=(3, 32, 32),
            num_classes=10,
            gradients=unflatten_gradients(target, params),
        )
        res = attack.reconstruct(inp)
        s = metrics.score(images[i : i + 1], labels[i : i + 1], res.images, res.labels)
        for k in rows:
            rows[k].append(s[k])
    return rows


def stats(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--pgla", default=None, help="PGLA denoiser or training run folder")
    p.add_argument("--dncnn", default=None, help="DnCNN denoiser or training run folder")
    p.add_argument("--pgla-cond", default=None, help="conditional PGLA denoiser or run folder")
    p.add_argument(
        "--recon-levels",
        default=RECON_LEVELS,
        help="Gaussian std/C levels attacked for reconstruction (comma-separated)",
    )
    p.add_argument("--victims", type=int, default=8)
    p.add_argument("--ddim-steps", type=int, default=10, help="DDIM steps of every PGLA variant")
    p.add_argument("--fixed-t", type=int, default=100, help="start step of pgla-fixed")
    p.add_argument("--timing-steps", default="1,5,10,20,50")
    p.add_argument("--no-ddpm", action="store_true", help="skip the full DDPM timing")
    p.add_argument("--denoisers", default=None, help="comma-separated subset (default: all)")
    p.add_argument(
        "--recon-only", action="store_true", help="only the reconstruction levels, no timing"
    )
    p.add_argument("--attack", default=None, help="attack for reconstruction (e.g. ig); none: skip")
    p.add_argument("--attack-iterations", type=int, default=200)
    p.add_argument("--attack-victims", type=int, default=4)
    p.add_argument(
        "--oracle-scale",
        action="store_true",
        help="give the attack the gradient rescaled by the true pre-clipping norm (upper bound; "
        "needed by L2-matching attacks such as dlg/idlg)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    recon_levels = {float(v) for v in args.recon_levels.split(",") if v}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    clean, models, images, labels = victims(args.victims)
    lv = levels(clean.shape[1])
    for level in lv:
        log.info(
            "level %-8s std/C = %-6g epsilon = %.4g (delta %s)",
            level["mechanism"],
            level["std_over_c"],
            level["epsilon"],
            DELTA if level["mechanism"] == "gaussian" else 0,
        )
    dens = build_denoisers(args)
    results: dict[str, Any] = {
        "config": vars(args),
        "clip_norm": CLIP,
        "delta": DELTA,
        "num_params": clean.shape[1],
        "levels": lv,
        "gradient": {},
        "timing": [],
        "reconstruction": {},
    }
    if args.attack:  # the ceiling: the same attack on the clean clipped gradient
        rec = reconstruct(args, clean, models, images, labels)
        results["reconstruction"]["clean"] = {
            "oracle": {k: stats(v) for k, v in rec.items()} | {"per_victim": rec}
        }
        log.info("%s on the clean gradient: psnr %.2f", args.attack, np.mean(rec["psnr"]))
    for li, level in enumerate(lv):
        if args.recon_only and not (
            level["mechanism"] == "gaussian" and level["std_over_c"] in recon_levels
        ):
            continue
        key = f"{level['mechanism']}:{level['std_over_c']}"
        noisy = perturb(clean, level, seed=args.seed * 1000 + li)
        std = level["std_over_c"] * CLIP
        for name, den in dens.items():
            den_grads, sec = run_denoise(den, noisy, std)
            m = grad_metrics(clean, den_grads)
            row = {k: stats(v) for k, v in m.items()} | {
                "seconds_per_gradient": sec,
                "per_victim": m,
            }
            results["gradient"].setdefault(key, {})[name] = row
            log.info(
                "%-16s %-11s cos %.4f±%.4f psnr %6.2f±%.2f dB  %.3f s/grad",
                key,
                name,
                row["cosine"]["mean"],
                row["cosine"]["std"],
                row["psnr"]["mean"],
                row["psnr"]["std"],
                sec,
            )
            if (
                args.attack
                and level["mechanism"] == "gaussian"
                and level["std_over_c"] in recon_levels
            ):
                rec = reconstruct(args, den_grads, models, images, labels)
                results["reconstruction"].setdefault(key, {})[name] = {
                    k: stats(v) for k, v in rec.items()
                } | {"per_victim": rec}
                log.info(
                    "    %s on %s: psnr %.2f ssim %.3f label acc %.2f",
                    args.attack,
                    name,
                    np.mean(rec["psnr"]),
                    np.mean(rec["ssim"]),
                    np.mean(rec["label_accuracy"]),
                )
        atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    steps_list = [int(v) for v in args.timing_steps.split(",") if v]
    for name in ("pgla", "pgla-cond"):
        if name not in dens or args.recon_only:
            continue
        for li in (2, 3):  # gaussian 0.01 and 0.03
            noisy = perturb(clean, lv[li], seed=args.seed * 1000 + li)
            std = lv[li]["std_over_c"] * CLIP
            ddpm = name == "pgla" and li == 2 and not args.no_ddpm
            rows = [
                r | {"denoiser": name}
                for r in timing(dens[name], clean, noisy, std, steps_list, ddpm=ddpm)
            ]
            results["timing"] += rows
            for r in rows:
                log.info(
                    "timing %s std/C %g %s %4d steps: %.3f s per gradient (batched %s), "
                    "cos %.4f psnr %.2f",
                    name,
                    r["std_over_c"],
                    r["sampler"],
                    r["steps"],
                    r["seconds"],
                    r["seconds_batched"],
                    r["cosine"]["mean"],
                    r["psnr"]["mean"],
                )
            atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    write_report(results, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

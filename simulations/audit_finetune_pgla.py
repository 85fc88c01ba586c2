"""Does fine-tuning PGLA on the audited model's gradients help on the audited traces?

Protocol (fixed before running): take the audited model from a finished ``fedlab audit``
(``--audit``, default the ``full`` preset's work folder): the global parameters of the traced
round of its first local DP setting (round 1: the app's seeded initial model, the same in every
setting). Fine-tune the shipped PGLA denoiser (``fedlab.attacks.audit.finetune``) on clipped clean
gradients of that model on the ``sample-patches`` stand-in set (scikit-learn's two sample
photos; the victims come from the ``patches`` dataset's scikit-image photos), clip norm C / lr
(the update bound in gradient units), ``--time-limit-s`` of one CPU thread. Score, on every
traced target of every local DP setting of the audit, the cosine with the true gradient of:
the noisy gradient the server saw, the shipped denoiser's output and the fine-tuned one's.

    python simulations/audit_finetune_pgla.py --audit runs/audit-full --time-limit-s 480
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import torch
from fedlab.attacks.audit.config import SHIPPED_DENOISERS
from fedlab.attacks.audit.finetune import finetune, true_gradient
from fedlab.attacks.pgla.compose import denoise_attack_input
from fedlab.attacks.pgla.denoisers import load_denoiser
from fedlab.attacks.pgla.transform import flatten_gradients

from fedlab.atomic import atomic_write_json, atomic_write_text
from fedlab.traces import TraceReader

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "audit"


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))


def _ig_psnr(
    inp: Any, images: torch.Tensor, labels: torch.Tensor, shipped: Any, tuned: Any
) -> dict[str, float]:
    """PSNR of the audit's IG on the noisy, shipped-denoised and fine-tuned-denoised inputs."""
    from fedlab.attacks import metrics
    from fedlab.attacks.audit.jobs import make_attack

    out = {}
    for name, den in (("none", None), ("shipped", shipped), ("fine-tuned", tuned)):
        x = inp if den is None else denoise_attack_input(inp, den)
        res = make_attack("ig", 1000, 3, 0).reconstruct(x)
        out[f"ig-psnr-{name}"] = metrics.score(
            inp.to_unit_range(images), labels, res.images, res.labels
        )["psnr"]
    return out


def targets(audit: Path) -> list[tuple[str, TraceReader, Any]]:
    """(setting, reader, record) of every attacked target of every local DP setting."""
    out = []
    for folder in sorted((audit / "settings").glob("local-*")):
        setting = json.loads((folder / "setting.json").read_text())
        reader = TraceReader(folder / "run" / "server-private" / "traces")
        canaries = set(setting["canaries"])
        records = sorted(
            (r for r in reader.select_all() if r.client not in canaries), key=lambda r: r.client
        )
        names = {p.name.split("__")[0] for p in (folder / "attacks").glob("*.json")}
        out += [(folder.name, reader, r) for r in records if r.target_id.replace("/", "_") in names]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--audit", default="runs/audit-full")
    parser.add_argument("--work", default="runs/audit-pgla-finetune")
    parser.add_argument("--time-limit-s", type=float, default=480.0)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument(
        "--ig",
        action="store_true",
        help="also run the audit's inverting gradients (1,000 iterations, plateau stop) without "
        "denoising and with each denoiser where the fine-tuned cosine exceeds 0.5",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    found = targets(Path(args.audit))
    _, reader, first = found[0]
    audited = reader.attack_input(first)
    clip = float(audited.dp["clip-norm"]) / float(audited.lr)
    work = Path(args.work)
    if not (work / "latest.json").exists():
        finetune(
            SHIPPED_DENOISERS["pgla"],
            audited,
            work,
            steps=args.steps,
            time_limit_s=args.time_limit_s,
            clip_norm=clip,
        )
    latest = json.loads((work / "latest.json").read_text())
    shipped = load_denoiser("pgla", SHIPPED_DENOISERS["pgla"])
    tuned = load_denoiser("pgla", work)
    rows = []
    for setting, rd, record in found:
        inp = rd.attack_input(record)
        images, labels = rd.ground_truth(record)
        clean = true_gradient(inp, images, labels)
        noisy = flatten_gradients(inp.target_gradients())
        row = {"setting": setting, "target": record.target_id, "noisy": _cos(noisy, clean)}
        for name, den in (("shipped", shipped), ("fine-tuned", tuned)):
            out = denoise_attack_input(inp, den).gradients
            row[name] = _cos(flatten_gradients(out), clean)
        if args.ig and row["fine-tuned"] > 0.5:
            row.update(_ig_psnr(inp, images, labels, shipped, tuned))
        rows.append(row)
        print(row, flush=True)
    settings = sorted({r["setting"] for r in rows}, key=lambda s: float(s.split("eps")[1]))
    lines = [
        "| setting | targets | noisy | shipped PGLA | fine-tuned PGLA |",
        "|---|---|---|---|---|",
    ]
    for s in settings:
        mine = [r for r in rows if r["setting"] == s]
        med = {k: statistics.median(r[k] for r in mine) for k in ("noisy", "shipped", "fine-tuned")}
        lines.append(
            f"| {s} | {len(mine)} | {med['noisy']:.3f} | {med['shipped']:.3f} | "
            f"{med['fine-tuned']:.3f} |"
        )
    lines += [
        "",
        f"Median cosine with the true gradient. Fine-tuning: {latest['step']} steps in "
        f"{latest['elapsed_s']:.0f} s on one thread, clip norm {clip:g} (C / lr).",
    ]
    ig = [r for r in rows if "ig-psnr-none" in r]
    for s in settings:
        mine = [r for r in ig if r["setting"] == s]
        if mine:
            med = {
                k: statistics.median(r[f"ig-psnr-{k}"] for r in mine)
                for k in ("none", "shipped", "fine-tuned")
            }
            lines.append(
                f"IG PSNR at {s} (median of {len(mine)}): none {med['none']:.2f} dB, "
                f"shipped {med['shipped']:.2f} dB, fine-tuned {med['fine-tuned']:.2f} dB."
            )
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        OUT / "pgla_finetune.json",
        {
            "audit": str(args.audit),
            "clip_norm": clip,
            "steps": latest["step"],
            "elapsed_s": latest["elapsed_s"],
            "history": latest["history"],
            "rows": rows,
        },
    )
    atomic_write_text(OUT / "pgla_finetune.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

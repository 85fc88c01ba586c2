"""CaDM study (docs/cadm.md, protocol declared there before this ran).

    python simulations/cadm_study.py            # evaluate, write study.json, table, plot
    python simulations/cadm_study.py --report   # tables and plot again from study.json

Test clips carphone (176x144) and bikes (160x128 from 320x136), 30 frames each, never trained
on; pairs (2, 8), (2, 6), (4, 8), (4, 5) at x264 CRF 23, 28, 33, 38; full-resolution x264 at
CRF 23-48. Methods: bicubic, the CNN baseline, Diff-SR (the shipped Diff-SR prior with its
calibrated PRF start step, training-free), the codec-unaware diffusion decoder
(simulations/results/cadm/decoder-unaware) and the codec-aware one shipped as package data
(clients/cadm/weights/decoder), both trained by simulations/cadm_train.py through
the streaming_cadm app, evaluated by the app's own code (fedlab.clients.cadm.evaluate).
Writes simulations/results/cadm/{study.json, table.md, rd.png}. One thread.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "cadm"
PAIRS = [(2, 8), (2, 6), (4, 8), (4, 5)]
CRFS = [23, 28, 33, 38]
X264_CRFS = [23, 28, 33, 38, 43, 48]
CLIPS = ("carphone", "bikes")
FRAMES = 30
METHODS = ("bicubic", "cnn", "diffsr", "cadm-unaware", "cadm")


def diffsr_restorer() -> tuple:
    """Diff-SR on the reception: the shipped prior, PRF start step at scale r (the Diff-SR
    app's calibrated kappa), the same noise for every frame (as the CaDM decoders do)."""
    from fedlab.clients.cadm.model import param_bytes
    from fedlab.clients.sr.config import SHIPPED_PRIOR, DiffSRConfig
    from fedlab.clients.sr.evaluate import (
        PRF_CALIBRATION_CROPS,
        PRF_CALIBRATION_SIZE,
        calibrated_prf,
    )
    from fedlab.clients.sr.methods import DiffSR

    from fedlab.diffusion.models import load_unet
    from fedlab.diffusion.schedule import make_scheduler

    defaults = DiffSRConfig()
    unet = load_unet(SHIPPED_PRIOR)
    sr = DiffSR(unet, make_scheduler(), steps=defaults.sample_steps)
    prf = calibrated_prf(PRF_CALIBRATION_CROPS, PRF_CALIBRATION_SIZE, defaults.prf_kappa)

    def restore(up: torch.Tensor, r: int, b: int) -> torch.Tensor:
        size = tuple(up.shape[-2:])
        with torch.no_grad():
            return torch.cat([
                sr.prf(up[i : i + 1], size, prf, float(r),
                       generator=torch.Generator().manual_seed(0))[0]
                for i in range(len(up))
            ])  # fmt: skip

    return restore, param_bytes(unet)


def run_study(frames: int, methods_run: tuple[str, ...] = METHODS,
              clips: tuple[str, ...] = CLIPS) -> dict:  # fmt: skip
    from fedlab.clients.cadm.config import SHIPPED_DECODER
    from fedlab.clients.cadm.data import test_clip
    from fedlab.clients.cadm.evaluate import evaluate_clip
    from fedlab.clients.cadm.model import load_decoder, load_small_sr, param_bytes

    aware = load_decoder(SHIPPED_DECODER)
    unaware = load_decoder(OUT / "decoder-unaware")
    cnn = load_small_sr(OUT / "cnn")
    cnn_bytes = param_bytes(cnn)
    methods = {
        "bicubic": (None, 0),
        "cnn": (lambda up, r, b: cnn.restore(up), cnn_bytes),
        "diffsr": diffsr_restorer() if "diffsr" in methods_run else None,
        "cadm-unaware": (lambda up, r, b: unaware.restore(up, r, b), unaware.model_bytes()),
        "cadm": (lambda up, r, b: aware.restore(up, r, b), aware.model_bytes()),
    }
    methods = {k: v for k, v in methods.items() if k in methods_run}
    rows = []
    start = time.perf_counter()
    for name in clips:
        rows += evaluate_clip(test_clip(name, frames), name, pairs=PAIRS, crfs=CRFS,
                              x264_crfs=X264_CRFS, methods=methods, progress=True)  # fmt: skip
    return {
        "protocol": {"clips": list(clips), "frames": frames, "pairs": PAIRS, "crfs": CRFS,
                     "x264-crfs": X264_CRFS, "methods": list(methods),
                     "steps": aware.meta.steps, "codec": "x264", "preset": "veryfast"},
        "seconds": round(time.perf_counter() - start, 1),
        "rows": rows,
    }  # fmt: skip


def summarise(study: dict) -> dict:
    from fedlab.clients.cadm.evaluate import bd_rates

    rows = study["rows"]
    out: dict = {"per-pair": {}, "goal": {}, "bd-rate": {}}
    for metric in ("psnr", "vmaf"):
        for (clip, method, r, b), v in bd_rates(rows, metric).items():
            out["bd-rate"].setdefault(f"{method} r{r}b{b}", {})[f"{clip}-{metric}"] = v
    for r, b in study["protocol"]["pairs"]:
        for method in study["protocol"]["methods"]:
            sel = [x for x in rows if x["method"] == method and (x["r"], x["b"]) == (r, b)]
            fps = [x["decode-fps"] for x in sel if x["decode-fps"]]
            out["per-pair"][f"{method} r{r}b{b}"] = {
                k: float(np.mean([x[k] for x in sel]))
                for k in ("bytes", "psnr", "ssim", "vmaf", "flicker", "flicker-source",
                          "temporal-error", "model-bytes")
            } | {"decode-fps": float(np.mean(fps)) if fps else None}  # fmt: skip
        a, u = out["per-pair"][f"cadm r{r}b{b}"], out["per-pair"][f"cadm-unaware r{r}b{b}"]
        d_psnr, d_vmaf = a["psnr"] - u["psnr"], a["vmaf"] - u["vmaf"]
        out["goal"][f"r{r}b{b}"] = {"dpsnr": d_psnr, "dvmaf": d_vmaf,
                                    "met": bool(d_psnr >= 0.3 and d_vmaf >= 0)}  # fmt: skip
    x = [r for r in rows if r["method"] == "x264"]
    out["per-pair"]["x264 full-res"] = {
        k: float(np.mean([r[k] for r in x]))
        for k in ("bytes", "psnr", "ssim", "vmaf", "flicker", "flicker-source", "temporal-error")
    } | {"model-bytes": 0.0, "decode-fps": None}  # fmt: skip
    return out


def _fmt(v: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "n/a" if v is None else f"{v:{spec}}{suffix}"


def _bd(bd: dict, metric: str) -> str:
    return " / ".join(_fmt(bd.get(f"{clip}-{metric}"), "+.0f", "%") for clip in CLIPS)


def table(study: dict, summary: dict) -> str:
    clip_bytes = np.mean([r["bytes"] for r in study["rows"] if r["method"] == "bicubic"])
    lines = [
        "| method | (r, b) | stream KB | PSNR | SSIM | VMAF | flicker (src) | model KB "
        "(÷ stream) | BD-rate PSNR carphone / bikes | BD-rate VMAF carphone / bikes | fps |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, m in summary["per-pair"].items():
        method, _, pair = key.rpartition(" ")
        bd = summary["bd-rate"].get(key, {})
        amort = (
            f"{m['model-bytes'] / 1e3:.0f} ({m['model-bytes'] / clip_bytes:.0f}x)"
            if m["model-bytes"]
            else "0"
        )
        lines.append(
            f"| {method} | {pair} | {m['bytes'] / 1e3:.1f} | {m['psnr']:.2f} | {m['ssim']:.3f} "
            f"| {m['vmaf']:.1f} | {m['flicker']:.2f} ({m['flicker-source']:.2f}) | {amort} | "
            f"{_bd(bd, 'psnr')} | {_bd(bd, 'vmaf')} | "
            f"{_fmt(m['decode-fps'], '.1f')} |"
        )  # fmt: skip
    lines += ["", "| (r, b) | codec-aware − unaware PSNR (dB) | VMAF | goal (>= 0.3 dB, "
              "no VMAF loss) |", "|---|---|---|---|"]  # fmt: skip
    for pair, g in summary["goal"].items():
        lines.append(f"| {pair} | {g['dpsnr']:+.2f} | {g['dvmaf']:+.2f} | "
                     f"{'met' if g['met'] else 'not met'} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def fix_table(before: dict, after: dict) -> str:
    """What the bit-depth fix alone moved: the same models, the old path against the fixed one
    (means over CRFs and clips, per method and pair)."""
    lines = ["| method | (r, b) | stream KB old -> fixed | PSNR old -> fixed (change) | "
             "VMAF old -> fixed |", "|---|---|---|---|---|"]  # fmt: skip
    for key, new in after["summary"]["per-pair"].items():
        old = before["summary"]["per-pair"].get(key)
        if old is None:
            continue
        method, _, pair = key.rpartition(" ")
        lines.append(
            f"| {method} | {pair} | {old['bytes'] / 1e3:.2f} -> {new['bytes'] / 1e3:.2f} | "
            f"{old['psnr']:.2f} -> {new['psnr']:.2f} ({new['psnr'] - old['psnr']:+.2f}) | "
            f"{old['vmaf']:.1f} -> {new['vmaf']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", action="store_true", help="rebuild outputs from study.json")
    parser.add_argument("--frames", type=int, default=FRAMES)
    parser.add_argument("--methods", default=",".join(METHODS), help="a subset of the methods")
    parser.add_argument("--clips", default=",".join(CLIPS), help="run these clips only")
    parser.add_argument("--tag", default="", help="write study-TAG.json etc. (e.g. one clip)")
    parser.add_argument("--merge", default="", help="TAG1,TAG2: join their rows into study.json")
    parser.add_argument(
        "--fix-table",
        default="",
        metavar="BEFORE,AFTER",
        help="tags of two study JSONs: write table-fix.md (what the fix moved)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    from fedlab.clients.cadm.evaluate import rd_plot

    from fedlab.atomic import atomic_write, atomic_write_text

    if args.fix_table:
        before, after = (json.loads((OUT / f"study-{t}.json").read_text())
                         for t in args.fix_table.split(","))  # fmt: skip
        atomic_write_text(OUT / "table-fix.md", fix_table(before, after))
        print(fix_table(before, after))
        return
    suffix = f"-{args.tag}" if args.tag else ""
    path = OUT / f"study{suffix}.json"
    if args.merge:
        parts = [json.loads((OUT / f"study-{t}.json").read_text()) for t in args.merge.split(",")]
        study = parts[0] | {"rows": [row for part in parts for row in part["rows"]],
                            "seconds": sum(part["seconds"] for part in parts)}  # fmt: skip
        study["protocol"]["clips"] = [c for part in parts for c in part["protocol"]["clips"]]
    elif args.report:
        study = json.loads(path.read_text())
    else:
        study = run_study(args.frames, tuple(args.methods.split(",")),
                          tuple(args.clips.split(",")))  # fmt: skip
    study["summary"] = summarise(study)
    atomic_write_text(path, json.dumps(study, indent=1))
    atomic_write_text(OUT / f"table{suffix}.md", table(study, study["summary"]))
    atomic_write(OUT / f"rd{suffix}.png", lambda p: rd_plot(study["rows"], p))
    print(table(study, study["summary"]))  # the script's result


if __name__ == "__main__":
    main()

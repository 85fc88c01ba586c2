"""Markdown table and plot of a PGLA benchmark ``results.json`` (simulations/pgla_bench.py)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from fedlab.atomic import atomic_write, atomic_write_text


def _fmt(cell: dict[str, float], digits: int) -> str:
    return f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    """Tables: levels with epsilon; cosine and PSNR per denoiser and level; reconstruction;
    timing."""
    levels = results["levels"]
    keys = [
        k
        for k in (f"{lv['mechanism']}:{lv['std_over_c']}" for lv in levels)
        if k in results["gradient"]
    ]
    names = list(results["gradient"][keys[0]])
    lines = ["| level | std/C | epsilon (per release) |", "|---|---|---|"]
    for lv in levels:
        d = f"delta={results['delta']}" if lv["mechanism"] == "gaussian" else "delta=0"
        lines.append(f"| {lv['mechanism']} | {lv['std_over_c']} | {lv['epsilon']:.4g} ({d}) |")
    n_victims = len(results["gradient"][keys[0]][names[0]]["per_victim"]["cosine"])
    for metric, digits in (("cosine", 4), ("psnr", 2)):
        title = "gradient cosine" if metric == "cosine" else "gradient PSNR (dB, peak max|g|)"
        lines += [
            "",
            f"**{title}**, mean ± std over {n_victims} victims",
            "",
        ]
        lines.append("| denoiser | " + " | ".join(keys) + " |")
        lines.append("|---" * (len(keys) + 1) + "|")
        for name in names:
            cells = []
            for k in keys:
                row = results["gradient"].get(k, {}).get(name)
                cells.append(_fmt(row[metric], digits) if row else "-")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += paired(results, keys, names)
    lines += boundary(results, keys, names)
    if results.get("reconstruction"):
        cfg = results["config"]
        lines += [
            "",
            f"**reconstruction** ({cfg['attack']}, {cfg['attack_iterations']} "
            f"iterations cap, no restarts, {cfg['attack_victims']} victims)",
            "",
            "| level | denoiser | PSNR (dB) | gain over none (dB) | SSIM | label acc |",
            "|---|---|---|---|---|---|",
        ]
        for k, per in results["reconstruction"].items():
            base = per.get("none")
            for name, r in per.items():
                gain = f"{r['psnr']['mean'] - base['psnr']['mean']:+.2f}" if base else "-"
                lines.append(
                    f"| {k} | {name} | {_fmt(r['psnr'], 2)} | {gain} | {_fmt(r['ssim'], 3)} | "
                    f"{_fmt(r['label_accuracy'], 2)} |"
                )
        lines += recon_gains(results)
    if results.get("timing"):
        lines += [
            "",
            "**PGLA: reverse steps against seconds per denoised gradient (CPU, one thread) and "
            "quality**",
            "",
            "| denoiser | std/C | sampler | reverse steps | s/gradient (batch 1) | "
            "s/gradient (batched) | cosine | PSNR (dB) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in results["timing"]:
            batched = "-" if r.get("seconds_batched") is None else f"{r['seconds_batched']:.3f}"
            lines.append(
                f"| {r.get('denoiser', 'pgla')} | {r.get('std_over_c', '-')} | {r['sampler']} | "
                f"{r['steps']} | "
                f"{r['seconds']:.3f} | {batched} | "
                + (
                    f"{_fmt(r['cosine'], 4)} | {_fmt(r['psnr'], 2)} |"
                    if "cosine" in r
                    else "- | - |"
                )
            )
    return "\n".join(lines) + "\n"


def paired(results: dict[str, Any], keys: list[str], names: list[str]) -> list[str]:
    """PGLA minus the best baseline (by mean cosine) per level, paired over victims."""
    if "pgla" not in names:
        return []
    baselines = [n for n in names if not n.startswith("pgla")]
    lines = [
        "",
        "**PGLA against the best baseline**, gradient cosine paired over victims",
        "",
        "| level | best baseline | PGLA - baseline (mean ± std) | PGLA ahead on |",
        "|---|---|---|---|",
    ]
    for k in keys:
        per = results["gradient"][k]
        best = max(baselines, key=lambda n: per[n]["cosine"]["mean"])
        ours = per["pgla"]["per_victim"]["cosine"]
        theirs = per[best]["per_victim"]["cosine"]
        diffs = [a - b for a, b in zip(ours, theirs, strict=True)]
        mean, std = statistics.fmean(diffs), statistics.pstdev(diffs)
        ahead = sum(d > 0 for d in diffs)
        lines.append(f"| {k} | {best} | {mean:+.5f} ± {std:.5f} | {ahead}/{len(diffs)} |")
    return lines


def recon_gains(results: dict[str, Any]) -> list[str]:
    """Reconstruction PSNR gain over no denoising, paired over victims, with a 95 % interval
    (Student t over the victims) so that "clearly above" a bar can be read off."""
    from scipy import stats

    lines = [
        "",
        "**reconstruction PSNR gain over no denoising**, paired over victims",
        "",
        "| level | denoiser | gain (dB, mean ± std) | 95 % interval | victims improved |",
        "|---|---|---|---|---|",
    ]
    for k, per in results["reconstruction"].items():
        if "none" not in per:
            continue
        base = per["none"]["per_victim"]["psnr"]
        for name, r in per.items():
            if name == "none":
                continue
            diffs = [a - b for a, b in zip(r["per_victim"]["psnr"], base, strict=True)]
            mean = statistics.fmean(diffs)
            std, interval = 0.0, "-"  # one victim has no spread to speak of
            if len(diffs) > 1:
                std = statistics.stdev(diffs)
                half = stats.t.ppf(0.975, len(diffs) - 1) * std / len(diffs) ** 0.5
                interval = f"{mean - half:+.2f} .. {mean + half:+.2f}"
            lines.append(
                f"| {k} | {name} | {mean:+.2f} ± {std:.2f} | {interval} | "
                f"{sum(d > 0 for d in diffs)}/{len(diffs)} |"
            )
    return lines


def boundary(results: dict[str, Any], keys: list[str], names: list[str]) -> list[str]:
    """Per denoiser: the strongest privacy (smallest epsilon) at which its mean gradient cosine
    is still >= 0.5 and still above no denoising, and its seconds per gradient."""
    eps = {f"{lv['mechanism']}:{lv['std_over_c']}": lv["epsilon"] for lv in results["levels"]}
    lines = [
        "",
        "**where each denoiser stops helping**: the smallest per-release epsilon at which its "
        "mean gradient cosine is still >= 0.5, and still above no denoising (all levels)",
        "",
        "| denoiser | smallest epsilon with cosine >= 0.5 | smallest epsilon where it beats "
        "none | s/gradient (mean over levels) |",
        "|---|---|---|---|",
    ]
    grad = results["gradient"]
    for name in names:
        useful = [eps[k] for k in keys if grad[k][name]["cosine"]["mean"] >= 0.5]
        helps = [
            eps[k]
            for k in keys
            if "none" in grad[k]
            and grad[k][name]["cosine"]["mean"] > grad[k]["none"]["cosine"]["mean"]
        ]
        secs = [grad[k][name].get("seconds_per_gradient", 0.0) for k in keys]
        lines.append(f"| {name} | {min(useful):.4g} | " if useful else f"| {name} | none | ")
        lines[-1] += (
            f"{min(helps):.4g} | " if helps else "- | "
        ) + f"{sum(secs) / len(secs):.3f} |"
    return lines


def plot(results: dict[str, Any], path: Path) -> Path:
    """Cosine and PSNR against std/C (Gaussian levels), one line per denoiser."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    gauss = [
        lv
        for lv in results["levels"]
        if lv["mechanism"] == "gaussian" and f"gaussian:{lv['std_over_c']}" in results["gradient"]
    ]
    xs = [lv["std_over_c"] for lv in gauss]
    names = list(next(iter(results["gradient"].values())))
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("cosine", "psnr"), strict=True):
        for name in names:
            rows = [results["gradient"][f"gaussian:{x}"][name][metric] for x in xs]
            ax.errorbar(
                xs,
                [r["mean"] for r in rows],
                yerr=[r["std"] for r in rows],
                label=name,
                marker="o",
                capsize=3,
            )
        ax.set_xscale("log")
        ax.set_xlabel("Gaussian noise std / clip norm C")
        ax.set_ylabel("gradient cosine" if metric == "cosine" else "gradient PSNR (dB)")
        ax.grid(alpha=0.3)
    ax2 = axes[0].secondary_xaxis("top")
    ax2.set_xticks(xs, [f"{lv['epsilon']:.0e}" for lv in gauss], fontsize=7)
    ax2.set_xlabel("epsilon per release (delta 1e-5)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=120, format="png"))
    return path


def write_report(results: dict[str, Any], out: Path) -> None:
    """``table.md`` and ``gradient_denoising.png`` under ``out``."""
    atomic_write_text(out / "table.md", markdown(results))
    plot(results, out / "gradient_denoising.png")

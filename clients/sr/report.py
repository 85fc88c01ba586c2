"""Tables and the plot of the Diff-SR study, regenerated from its JSON (never typed by hand).

``markdown(results)`` gives the full tables and ``compact(results)`` the short one at the top
of docs/diffsr.md; :func:`write_report` writes ``simulations/results/diffsr/study.md`` and
``study.png`` and replaces the text between the ``<!-- diffsr:... -->`` markers of
docs/diffsr.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from fedlab.atomic import atomic_write, atomic_write_text

METRIC_NAMES = {"psnr": "PSNR", "ssim": "SSIM", "haarpsi": "HaarPSI", "gmsd": "GMSD",
                "lr-psnr": "LR-PSNR", "detail": "detail error (dB)"}  # fmt: skip
LEVEL_TEXT = {"A": "20 DDIM steps; SDEdit rows seed 0, PRF, ILVR and DDNM rows seeds 0 and 1"}
RESULTS_DIR = Path("simulations") / "results" / "diffsr"


def with_prior_results(results: dict[str, Any], root: Path = Path()) -> dict[str, Any]:
    """The study JSON plus the prior's training history and two-sample curve, if saved."""
    out = dict(results)
    for key, name in (("prior", "prior_training.json"), ("two-sample", "two_sample.json")):
        path = root / RESULTS_DIR / name
        if path.is_file():
            out[key] = json.loads(path.read_text())
    return out


def within_one_step(prf_t: float, oracle: int, grid: list[int]) -> bool:
    """``prf_t`` lies between the grid neighbours of the oracle t (the grid is log-spaced,
    so a step is a factor of about 2)."""
    i = grid.index(oracle)
    return grid[max(i - 1, 0)] <= prf_t <= grid[min(i + 1, len(grid) - 1)]


def _grid(scale_entry: dict[str, Any]) -> list[int]:
    return sorted(int(t) for t in scale_entry["detail"])


def _level(entry: dict[str, Any]) -> str:
    level = entry.get("level")
    return LEVEL_TEXT.get(level, f"level {level}")


def _seeds(metrics: dict[str, float], name: str, metric: str, tag: str) -> list[float]:
    return [v for k, v in sorted(metrics.items())
            if re.fullmatch(rf"{re.escape(name)}-{metric}-{tag}-s\d+", k)]  # fmt: skip


def method_rows(scale_result: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """Method -> metric -> per-seed values, for one scale of the test."""
    tag = next(k for k in scale_result["guided"] if k.startswith("bicubic-psnr-")).split("-")[2]
    merged = {**scale_result["guided"], **scale_result.get("fixed", {})}
    names = ["bicubic", "cnn"] + sorted(
        {k.split("-")[0] for k in merged if re.match(r"t\d+-", k)}, key=lambda n: int(n[1:])
    ) + ["prf", "ilvr", "ddnm"]  # fmt: skip
    rows = {}
    for name in names:
        values = {m: _seeds(merged, name, m, tag) for m in METRIC_NAMES}
        if any(values.values()):
            rows[name] = values
    return rows


def _cell(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def _label(name: str, prf_t: float | None) -> str:
    if name.startswith("t") and name[1:].isdigit():
        return f"SDEdit t={name[1:]}"
    labels = {"bicubic": "bicubic", "cnn": "CNN (LIIF-like)", "ilvr": "ILVR-style",
              "ddnm": "DDNM-style"}  # fmt: skip
    if name == "prf":
        return f"**PRF (ours)**, t={prf_t:.0f}" if prf_t is not None else "**PRF (ours)**"
    return labels[name]


def _by_scale(scales: dict[str, Any]) -> list[tuple[str, Any]]:
    """Entries of a per-scale dict in increasing scale (parallel runs finish in any order)."""
    return sorted(scales.items(), key=lambda kv: kv[1]["scale"])


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """Goal checks: PRF vs oracle t on calibration and on the positive control; the means
    over scales of HaarPSI and the detail error per method on the test."""
    cal = results.get("calibration", {})
    out: dict[str, Any] = {"within-one-step": 0, "scales": len(cal.get("scales", {}))}
    for tag, c in cal.get("scales", {}).items():
        out["within-one-step"] += within_one_step(cal["prf-t"][tag], c["oracle-t"], _grid(c))
    control = results.get("control", {}).get("scales", {})
    if control:
        grid = sorted({int(k.split("-")[0][1:]) for c in control.values()
                       for k in c["metrics"] if re.match(r"t\d+-detail-", k)})  # fmt: skip
        out["control-oracle-above-0"] = sum(c["oracle-t"] > 0 for c in control.values())
        out["control-within-one-step"] = sum(
            c["oracle-t"] > 0 and within_one_step(c["prf-t"], c["oracle-t"], grid)
            for c in control.values()
        )
        out["control-scales"] = len(control)
    test = results.get("test", {}).get("scales", {})
    if not test:
        return out
    for metric in ("haarpsi", "detail", "psnr"):
        per_method: dict[str, list[float]] = {}
        for sc in test.values():
            for name, vals in method_rows(sc).items():
                per_method.setdefault(name, []).append(_mean(vals[metric]))
        out[f"{metric}-avg"] = {k: float(np.mean(v)) for k, v in per_method.items()
                                if len(v) == len(test)}  # fmt: skip
    return out


def _prior_lines(prior: dict[str, Any]) -> list[str]:
    lines = [
        "#### Prior: federated vs central at equal optimizer steps",
        "",
        "Held-out denoising loss (noise-prediction MSE, 32 fixed crops of the held-out "
        "images, t = 50..750, fixed noise), every 1,000 steps; lower is better.",
        "",
        "| optimizer steps | central | federated (4 clients, FedAvg) |",
        "|---|---|---|",
    ]
    central = {h["step"]: h["denoise-loss"] for h in prior.get("central", {}).get("history", [])}
    federated = {
        h["steps"]: h["denoise-loss"] for h in prior.get("federated", {}).get("history", [])
    }
    steps = sorted(s for s in set(central) | set(federated) if s % 1000 == 0)
    for step in steps:
        c, f = central.get(step), federated.get(step)
        lines.append(
            f"| {step} | {'-' if c is None else f'{c:.4f}'} | {'-' if f is None else f'{f:.4f}'} |"
        )
    return [*lines, ""]


def _two_sample_lines(records: list[dict[str, Any]]) -> list[str]:
    lines = [
        "#### Two-sample test over training (0.5: indistinguishable from real crops)",
        "",
        "Held-out accuracy of the fixed classifier telling 64 DDIM-50 samples from pure noise "
        "from 64 real 32-px crops of the training corpus; the controls beside each row are "
        "computed on the same reference crops.",
        "",
        "| prior | x0 clipped | samples vs real | real vs real | blurred real vs real | sheet |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        blur = next((v for k, v in r.items() if k.startswith("blur-")), float("nan"))
        clip = "yes" if r.get("clip-x0") else "no"
        lines.append(f"| {r['label']} | {clip} | {r['prior-vs-real']:.3f} | "
                     f"{r['real-vs-real']:.3f} | {blur:.3f} | `{r['sheet']}` |")  # fmt: skip
    return [*lines, ""]


def _calibration_lines(cal: dict[str, Any]) -> list[str]:
    lines = ["#### Calibration (8 crops of training images): oracle t and PRF t", "",
             f"PRF kappa fitted on these crops (log-scale distance to the oracle t's): "
             f"**{cal.get('kappa', float('nan')):g}**. Reverse steps: {_level(cal)}.", "",
             "| scale | oracle t (lowest detail error) | detail at oracle t | detail at t=0 | "
             "HaarPSI at oracle t | HaarPSI at t=0 | best-HaarPSI t | PRF t (fitted kappa) | "
             "PRF t (kappa 1) | within one step |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for tag, c in _by_scale(cal["scales"]):
        d = {int(k): v for k, v in c["detail"].items()}
        h = {int(k): v for k, v in c["haarpsi"].items()}
        oracle, prf_t = int(c["oracle-t"]), cal.get("prf-t", {}).get(tag)
        within = prf_t is not None and within_one_step(prf_t, oracle, _grid(c))
        lines.append(
            f"| {c['scale']:g} | {oracle} | {d[oracle]:.2f} | {d[0]:.2f} | {h[oracle]:.4f} | "
            f"{h[0]:.4f} | {c['oracle-t-haarpsi']} | {prf_t} | "
            f"{cal.get('prf-t-kappa1', {}).get(tag)} | {'yes' if within else 'no'} |"
        )
    return [*lines, ""]


def _control_lines(control: dict[str, Any]) -> list[str]:
    lines = ["#### Positive control: held-out frames of the prior's own training clip", "",
             "8 crops (64 px) of bigbuckbunny frames 120, 124, 128 (training used frames "
             "0-112), 20 DDIM steps, seed 0. Detail error in dB (lower is better) / HaarPSI.",
             "",
             "| scale | oracle t (lowest detail error) | SDEdit at oracle t | bicubic | CNN | "
             "PRF (t) | within one step |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for tag, c in _by_scale(control["scales"]):
        m, oracle = c["metrics"], int(c["oracle-t"])
        grid = sorted(int(k.split("-")[0][1:]) for k in m if re.match(r"t\d+-detail-", k))

        def cell(name: str, m: dict = m, tag: str = tag) -> str:
            return f"{m[f'{name}-detail-{tag}-s0']:.2f} / {m[f'{name}-haarpsi-{tag}-s0']:.4f}"

        within = oracle > 0 and within_one_step(c["prf-t"], oracle, grid)
        lines.append(
            f"| {c['scale']:g} | {oracle} | {cell(f't{oracle}')} | {cell('bicubic')} | "
            f"{cell('cnn')} | {cell('prf')} ({c['prf-t']:.0f}) | {'yes' if within else 'no'} |"
        )
    return [*lines, ""]


def markdown(results: dict[str, Any]) -> str:
    """The full report: prior training, two-sample curve, calibration, positive control,
    test tables per scale, timing."""
    lines: list[str] = []
    if results.get("prior"):
        lines += _prior_lines(results["prior"])
    if results.get("two-sample"):
        lines += _two_sample_lines(results["two-sample"])
    if results.get("calibration"):
        lines += _calibration_lines(results["calibration"])
    if results.get("control", {}).get("scales"):
        lines += _control_lines(results["control"])
    test = results.get("test", {}).get("scales", {})
    for tag, sc in _by_scale(test):
        if "guided" not in sc:
            continue
        prf_t = sc["guided"].get(f"prf-t-{tag}")
        lines += [f"#### Test, scale {sc['scale']:g} (24 held-out crops, 64 px, "
                  f"{_level(results['test'])})", "",
                  "| method | " + " | ".join(METRIC_NAMES.values()) + " |",
                  "|---" * (len(METRIC_NAMES) + 1) + "|"]  # fmt: skip
        for name, vals in method_rows(sc).items():
            cells = [_cell(vals[m], 4 if m in ("ssim", "haarpsi", "gmsd") else 2)
                     for m in METRIC_NAMES]  # fmt: skip
            lines.append(f"| {_label(name, prf_t)} | " + " | ".join(cells) + " |")
        lines.append("")
    timing = results.get("timing")
    if timing:
        lines += [f"#### Seconds per {timing['image']} image on one CPU thread (t start "
                  f"{timing['t-start']}; {timing.get('note', 'one run')})", "",
                  "| DDIM steps asked (taken) | " + " | ".join(
                      f"{r['steps']} ({r.get('steps-taken', r['steps'])})"
                      for r in timing["rows"]) + " |",
                  "|---" * (len(timing["rows"]) + 1) + "|",
                  "| seconds | " + " | ".join(f"{r['seconds']:.2f}" for r in timing["rows"]) + " |",
                  ""]  # fmt: skip
    return "\n".join(lines)


def compact(results: dict[str, Any]) -> str:
    """The summary of docs/diffsr.md: HaarPSI and detail error per scale and method (mean
    over seeds), and the goal checks."""
    test = results.get("test", {}).get("scales", {})
    if not test:
        return "(study not run yet)\n"
    scales = [sc for _, sc in _by_scale(test) if "guided" in sc]
    lines: list[str] = []
    for metric, label in (("haarpsi", "HaarPSI (higher is better)"),
                          ("detail", "detail error, dB (lower is better)")):  # fmt: skip
        rows: dict[str, list[str]] = {}
        for sc in scales:
            for name, vals in method_rows(sc).items():
                rows.setdefault(name, []).append(f"{_mean(vals[metric]):.3f}")
        lines += [f"| {label}, test | " + " | ".join(f"x{sc['scale']:g}" for sc in scales)
                  + " |", "|---" * (len(scales) + 1) + "|"]  # fmt: skip
        lines += [f"| {_label(n, None)} | " + " | ".join(c) + " |" for n, c in rows.items()]
        lines.append("")
    info = summary(results)
    h, d = info["haarpsi-avg"], info["detail-avg"]
    lines.append(
        f"Averaged over scales (HaarPSI / detail error): PRF {h['prf']:.4f} / {d['prf']:.2f}, "
        f"bicubic {h['bicubic']:.4f} / {d['bicubic']:.2f}, CNN {h.get('cnn', float('nan')):.4f}"
        f" / {d.get('cnn', float('nan')):.2f}. PRF's t within one grid step of the calibration "
        f"oracle at {info['within-one-step']} of {info['scales']} scales."
    )
    if "control-scales" in info:
        lines.append(
            f"Positive control: oracle t above 0 at {info['control-oracle-above-0']} of "
            f"{info['control-scales']} scales, PRF's t within one grid step of it at "
            f"{info['control-within-one-step']}."
        )
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> Path:
    """Detail error and HaarPSI against the start step t per scale (test; control detail),
    with PRF's t (stars)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    test = results.get("test", {}).get("scales", {})
    control = results.get("control", {}).get("scales", {})
    fig = Figure(figsize=(12, 4))
    axes = fig.subplots(1, 3)
    panels = (("haarpsi", "HaarPSI (test)"), ("detail", "detail error, dB (test)"))
    for ax, (metric, title) in zip(axes[:2], panels, strict=True):
        for i, (tag, sc) in enumerate(_by_scale(test)):
            rows = method_rows(sc)
            ts = [int(n[1:]) for n in rows if n.startswith("t") and n[1:].isdigit()]
            ys = [_mean(rows["bicubic"][metric])] + [_mean(rows[f"t{t}"][metric]) for t in ts]
            ax.plot([0, *ts], ys, "-o", color=f"C{i}", ms=3, label=f"x{sc['scale']:g}")
            prf_t = sc["guided"].get(f"prf-t-{tag}")
            if prf_t is not None and "prf" in rows:
                ax.plot([prf_t], [_mean(rows["prf"][metric])], "*", color=f"C{i}", ms=12)
        ax.set_title(title)
    ax = axes[2]
    for i, (tag, c) in enumerate(_by_scale(control)):
        m = c["metrics"]
        ts = sorted(int(k.split("-")[0][1:]) for k in m if re.match(r"t\d+-detail-", k))
        ax.plot(ts, [m[f"t{t}-detail-{tag}-s0"] for t in ts], "-o", color=f"C{i}", ms=3,
                label=f"x{c['scale']:g}")  # fmt: skip
        ax.plot([c["prf-t"]], [m[f"prf-detail-{tag}-s0"]], "*", color=f"C{i}", ms=12)
    ax.set_title("detail error, dB (positive control)")
    for ax in axes:
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("start step t (0: bicubic)")
    axes[0].legend(fontsize=8, ncol=2)
    fig.suptitle("Diff-SR: SDEdit at fixed t (lines), PRF (stars)")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=80))
    return path


def replace_between(text: str, name: str, body: str) -> str:
    start, end = f"<!-- diffsr:{name}:start -->", f"<!-- diffsr:{name}:end -->"
    if start not in text or end not in text:
        return text
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body.rstrip()}\n{end}{tail}"


def write_report(results: dict[str, Any], root: Path) -> None:
    out = root / "simulations" / "results" / "diffsr"
    full = markdown(results)
    atomic_write_text(out / "study.md", full + "\n")
    if results.get("test", {}).get("scales"):
        plot(results, out / "study.png")
    docs = root / "docs" / "diffsr.md"
    text = replace_between(docs.read_text(), "results", full)
    atomic_write_text(docs, replace_between(text, "summary", compact(results)))

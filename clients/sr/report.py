"""Tables and the plot of the Diff-SR study, regenerated from its JSON (never typed by hand).

``markdown(results)`` gives the full tables and ``compact(results)`` the short one at the top
of docs/diffsr.md; :func:`write_report` writes ``simulations/results/diffsr/study.md`` and
``study.png`` and replaces the text between the ``<!-- diffsr:... -->`` markers of
docs/diffsr.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from fedlab.atomic import atomic_write, atomic_write_text

METRIC_NAMES = {"psnr": "PSNR", "ssim": "SSIM", "haarpsi": "HaarPSI", "gmsd": "GMSD",
                "lr-psnr": "LR-PSNR"}  # fmt: skip
GRID_STEP = 75
LEVEL_TEXT = {"A": "level A (20 DDIM steps, every sampled row over seeds 0 and 1)",
              "B": "level B (10 DDIM steps, fixed-t rows seed 0 only)"}  # fmt: skip


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
    per_image = scale_result.get("per-image", {})  # PRF per image: its own app run
    values = {m: _seeds(per_image, "prf", m, tag) for m in METRIC_NAMES}
    if any(values.values()):
        rows["prf-image"] = values
    return rows


def _cell(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def _label(name: str, prf_t: float | None, image_t: float | None = None) -> str:
    if name.startswith("t") and name[1:].isdigit():
        return f"SDEdit t={name[1:]}"
    labels = {"bicubic": "bicubic", "cnn": "CNN (LIIF-like)", "ilvr": "ILVR-style",
              "ddnm": "DDNM-style"}  # fmt: skip
    if name == "prf":
        return f"**PRF (ours)**, t={prf_t:.0f}" if prf_t is not None else "**PRF (ours)**"
    if name == "prf-image":
        mean_t = f", mean t={image_t:.1f}" if image_t is not None else ""
        return f"PRF per image (ours){mean_t}"
    return labels[name]


def _by_scale(scales: dict[str, Any]) -> list[tuple[str, Any]]:
    """Entries of a per-scale dict in increasing scale (parallel runs finish in any order)."""
    return sorted(scales.items(), key=lambda kv: kv[1]["scale"])


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """Goal checks: PRF vs oracle t, PRF vs the best single fixed t, bicubic/CNN wins."""
    cal = results.get("calibration", {})
    test = results.get("test", {}).get("scales", {})
    out: dict[str, Any] = {"within-one-step": 0, "scales": len(cal.get("scales", {}))}
    for tag, c in cal.get("scales", {}).items():
        if abs(cal["prf-t"][tag] - c["oracle-t"]) <= GRID_STEP:
            out["within-one-step"] += 1
    if not test:
        return out
    per_method: dict[str, list[float]] = {}
    for s in test.values():
        for name, vals in method_rows(s).items():
            per_method.setdefault(name, []).append(_mean(vals["haarpsi"]))
    complete = {k: v for k, v in per_method.items() if len(v) == len(test)}
    fixed = {k: float(np.mean(v)) for k, v in complete.items() if k.startswith("t")}
    out["haarpsi-avg"] = {k: float(np.mean(v)) for k, v in complete.items()}
    if fixed:
        best = max(fixed, key=fixed.get)
        out["best-fixed"] = best
        out["prf-minus-best-fixed"] = out["haarpsi-avg"]["prf"] - fixed[best]
    return out


def markdown(results: dict[str, Any]) -> str:
    """The full report: prior training, calibration, test tables per scale, timing."""
    lines: list[str] = []
    prior = results.get("prior", {})
    if prior:
        lines += [
            "#### Prior: federated vs central at equal optimizer steps",
            "",
            "Held-out denoising loss (noise-prediction MSE, 32 fixed crops of the held-out "
            "images, t = 50..750, fixed noise); lower is better.",
            "",
            "| optimizer steps | central | federated (4 clients, FedAvg) |",
            "|---|---|---|",
        ]
        central = {
            h["step"]: h["denoise-loss"] for h in prior.get("central", {}).get("history", [])
        }
        federated = {
            h["steps"]: h["denoise-loss"] for h in prior.get("federated", {}).get("history", [])
        }
        for step in sorted(set(central) | set(federated)):
            c, f = central.get(step), federated.get(step)
            lines.append(
                f"| {step} | {'-' if c is None else f'{c:.4f}'} | "
                f"{'-' if f is None else f'{f:.4f}'} |"
            )
        lines.append("")
    cal = results.get("calibration")
    if cal:
        lines += ["#### Calibration (8 crops of training images): oracle t and PRF t", "",
                  f"PRF kappa fitted on these crops: **{cal.get('kappa', float('nan')):g}**. "
                  f"Reverse steps: {_level(cal)}.", "",
                  "| scale | oracle t (best HaarPSI) | oracle t > 0 | HaarPSI at oracle t | "
                  "HaarPSI at t=0 | PRF t (fitted kappa) | PRF t (kappa 1) | within one step |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for tag, c in _by_scale(cal["scales"]):
            h = {int(k): v for k, v in c["haarpsi"].items()}
            prf_t = cal.get("prf-t", {}).get(tag)
            within = (
                "yes" if prf_t is not None and abs(prf_t - c["oracle-t"]) <= GRID_STEP else "no"
            )
            lines.append(
                f"| {c['scale']:g} | {c['oracle-t']} | {'yes' if c['oracle-t'] > 0 else 'no'} | "
                f"{h[int(c['oracle-t'])]:.4f} | {h[0]:.4f} | {prf_t} | "
                f"{cal.get('prf-t-kappa1', {}).get(tag)} | {within} |"
            )
        lines.append("")
    test = results.get("test", {}).get("scales", {})
    for tag, s in _by_scale(test):
        if "guided" not in s:
            continue
        prf_t = s["guided"].get(f"prf-t-{tag}")
        image_t = s.get("per-image", {}).get(f"prf-t-{tag}")
        lines += [f"#### Test, scale {s['scale']:g} (24 held-out crops, 64 px, "
                  f"{_level(results['test'])})", "",
                  "| method | " + " | ".join(METRIC_NAMES.values()) + " |",
                  "|---" * (len(METRIC_NAMES) + 1) + "|"]  # fmt: skip
        for name, vals in method_rows(s).items():
            cells = [_cell(vals[m], 4 if m in ("ssim", "haarpsi", "gmsd") else 2)
                     for m in METRIC_NAMES]  # fmt: skip
            lines.append(f"| {_label(name, prf_t, image_t)} | " + " | ".join(cells) + " |")
        lines.append("")
    explore = results.get("explore-kappa1", {}).get("scales", {})
    if explore:
        lines += ["#### Exploratory, declared after the test: the plain rule kappa = 1", "",
                  "Not part of the declared protocol and not used for any goal: PRF, ILVR and "
                  "DDNM started at the PRF t of kappa = 1 instead of the fitted kappa; same test "
                  f"crops and seeds, {_level(results['explore-kappa1'])}. HaarPSI / PSNR, "
                  "mean ± std over seeds 0 and 1.", "",
                  "| scale | t (kappa 1) | bicubic | PRF | ILVR-style | DDNM-style |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for tag, s in _by_scale(explore):
            rows = method_rows(s)
            cells = [f"{_cell(rows[n]['haarpsi'], 4)} / {_cell(rows[n]['psnr'], 2)}"
                     for n in ("bicubic", "prf", "ilvr", "ddnm") if n in rows]  # fmt: skip
            t = s["guided"].get(f"prf-t-{tag}", float("nan"))
            lines.append(f"| {s['scale']:g} | {t:.0f} | " + " | ".join(cells) + " |")
        lines.append("")
    ibp = results.get("explore-ibp")
    if ibp:
        r = ibp["result"]
        tags = sorted({k.split("-")[-2] for k in r if k.startswith("ibp-psnr-")},
                      key=lambda t: float(t[1:]))  # fmt: skip
        lines += ["#### Exploratory, declared after the test: back-projection without the prior",
                  "", f"`ibp`: {ibp['iterations']} back-projection steps from the bicubic input, "
                  f"no diffusion prior (not used for any goal; run with {_level(ibp)}). "
                  "HaarPSI / PSNR.", "",
                  "| scale | bicubic | back-projection only |", "|---|---|---|"]  # fmt: skip
        for tag in tags:
            cells = [f"{r[f'{n}-haarpsi-{tag}-s0']:.4f} / {r[f'{n}-psnr-{tag}-s0']:.2f}"
                     for n in ("bicubic", "ibp")]  # fmt: skip
            lines.append(f"| {tag[1:]} | " + " | ".join(cells) + " |")
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
    """The summary of docs/diffsr.md: HaarPSI per scale and method (mean over seeds), and
    the goal checks."""
    test = results.get("test", {}).get("scales", {})
    if not test:
        return "(study not run yet)\n"
    scales = [s for _, s in _by_scale(test) if "guided" in s]
    rows: dict[str, list[str]] = {}
    for s in scales:
        for name, vals in method_rows(s).items():
            rows.setdefault(name, []).append(f"{_mean(vals['haarpsi']):.3f}")
    head = "| HaarPSI (test, mean over seeds) | " + " | ".join(
        f"x{s['scale']:g}" for s in scales) + " |"  # fmt: skip
    lines = [head, "|---" * (len(scales) + 1) + "|"]
    for name, cells in rows.items():
        lines.append(f"| {_label(name, None)} | " + " | ".join(cells) + " |")
    info = summary(results)
    if "best-fixed" in info:
        avg = info["haarpsi-avg"]
        image = f"PRF per image {avg['prf-image']:.4f}, " if "prf-image" in avg else ""
        lines += ["", f"Averaged over scales: PRF {avg['prf']:.4f}, {image}best single fixed t "
                  f"({info['best-fixed'][1:]}) {avg[info['best-fixed']]:.4f}, bicubic "
                  f"{avg['bicubic']:.4f}, CNN {avg.get('cnn', float('nan')):.4f}; PRF's t within "
                  f"one grid step of the calibration oracle at {info['within-one-step']} of "
                  f"{info['scales']} scales."]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> Path:
    """HaarPSI against the start step t per scale (test), with PRF's t and the oracle t."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    test = results.get("test", {}).get("scales", {})
    cal = results.get("calibration", {}).get("scales", {})
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    for i, (tag, s) in enumerate(_by_scale(test)):
        rows = method_rows(s)
        ts = [0] + [int(n[1:]) for n in rows if n.startswith("t") and n[1:].isdigit()]
        hs = [_mean(rows["bicubic"]["haarpsi"])] + [
            _mean(rows[f"t{t}"]["haarpsi"]) for t in ts[1:]]  # fmt: skip
        color = f"C{i}"
        ax.plot(ts, hs, "-o", color=color, ms=3, label=f"x{s['scale']:g}")
        prf_t = s["guided"].get(f"prf-t-{tag}")
        if prf_t is not None and "prf" in rows:
            ax.plot([prf_t], [_mean(rows["prf"]["haarpsi"])], "*", color=color, ms=12)
        if tag in cal:
            ax.axvline(cal[tag]["oracle-t"], color=color, ls=":", lw=0.8)
    ax.set_xlabel("start step t (0: bicubic)")
    ax.set_ylabel("HaarPSI (test crops)")
    ax.set_title("Diff-SR: fixed t (lines), PRF (stars), calibration oracle t (dotted)")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=90))
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

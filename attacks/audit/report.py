"""The audit's outputs: ``audit.json`` (every figure) and one self-contained ``report.html``.

The HTML embeds its plots as PNG data URIs and needs no network and no other file. A small
inline script marks, once the page has loaded, how many plots decoded and how many table rows
exist (``data-plots-ok`` and ``data-rows`` on ``<body>``), which the headless-browser test reads.

Thresholds, fixed before any run (``docs/audit.md``): an attack "succeeds" on a setting when the
median PSNR over its targets exceeds the median PSNR of the dataset-mean image against the same
targets plus 3 dB, or its label accuracy exceeds chance plus two standard errors
(``1/K + 2 sqrt((1/K)(1 - 1/K)/n)`` for K classes and n labels). The boundary of a mode is the
largest epsilon of that mode at which no attack and denoiser succeeds.

Fail closed: a setting where any configured attack or denoiser errored, or where fewer traced
targets than configured were attacked, is **unknown**, never "holds". A mode with an unknown
setting has no boundary (``None``, with the reason under ``boundary-unknown``), whatever its
other settings show: the missing attack could have succeeded at that epsilon, so no epsilon of
that mode can be called the largest safe one.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

from fedlab.attacks.audit.config import AuditConfig

from fedlab.atomic import atomic_write_json, atomic_write_text

PSNR_MARGIN_DB = 3.0


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(statistics.median(values)) if values else None


def verdict(s: dict[str, Any], targets: int) -> tuple[str, str | None]:
    """``leaks``, ``holds`` or ``unknown`` (with the reason) for a summarised setting.

    Unknown when any attack or denoiser row errored, or fewer than ``targets`` traced targets
    were attacked: an attack that did not run cannot show that nothing leaks. A setting with
    an error is unknown even where another attack succeeded (its row still says so).
    """
    errors = [f"{key}: {err or 'error'}" for key, c in s["attacks"].items() for err in c["errors"]]
    if errors:
        return "unknown", f"{len(errors)} attack row(s) errored; first: {errors[0]}"
    traced = len(s.get("targets") or [])
    if traced < targets:
        return "unknown", f"{traced} of {targets} configured targets traced and attacked"
    if s["any-target-attack-succeeds"]:
        return "leaks", None
    if not any(c["n"] for key, c in s["attacks"].items() if key.startswith("trace:")):
        return "unknown", "no attack on a traced target ran"
    return "holds", None


def summarise(
    settings: dict[str, Any], rows: list[dict[str, Any]], targets: int = 0
) -> dict[str, Any]:
    """Per setting: attack cells (median and spread), thresholds, success, verdict; boundary.

    ``targets`` is the configured number of traced targets per setting (fewer: unknown).
    """
    for name, s in settings.items():
        mine = [r for r in rows if r["setting"] == name]
        k = max(int(s.get("num-classes") or 10), 2)
        thr_psnr = (_median(s.get("mean-image-psnr", [])) or 0.0) + PSNR_MARGIN_DB
        cells: dict[str, Any] = {}
        for r in mine:
            key = f"{r['kind']}:{r['attack']}:{r['denoiser']}"
            cells.setdefault(key, []).append(r)
        out = {}
        for key, rs in sorted(cells.items()):
            ok = [r for r in rs if r.get("status") == "ok"]
            psnr = [r["psnr"] for r in ok]
            labels = [r["label_accuracy"] for r in ok if r.get("label_accuracy") is not None]
            n = max(len(labels), 1)
            thr_label = 1 / k + 2 * math.sqrt((1 / k) * (1 - 1 / k) / n)
            med = _median(psnr)
            label_acc = sum(labels) / len(labels) if labels else None
            out[key] = {
                "n": len(ok),
                "skipped": sum(r.get("status") == "skipped" for r in rs),
                "errors": [r.get("error") for r in rs if r.get("status") == "error"],
                "psnr-median": med,
                "psnr-min": min(psnr) if psnr else None,
                "psnr-max": max(psnr) if psnr else None,
                "ssim-median": _median([r["ssim"] for r in ok]),
                "label-accuracy": label_acc,
                "label-threshold": thr_label,
                "seconds-median": _median([r["seconds"] for r in ok]),
                "iterations-median": _median([r["iterations"] for r in ok]),
                "succeeds": bool(ok)
                and (
                    (med is not None and med > thr_psnr)
                    or (label_acc is not None and label_acc > thr_label)
                ),
            }
        s["psnr-threshold"] = thr_psnr
        s["attacks"] = out
        s["any-target-attack-succeeds"] = any(
            c["succeeds"] for key, c in out.items() if key.startswith("trace:")
        )
        s["verdict"], s["unknown-reason"] = verdict(s, targets)
    boundary: dict[str, Any] = {}
    unknown: dict[str, str] = {}
    for mode in ("central", "local"):
        mine = {n: s for n, s in settings.items() if s["mode"] == mode}
        bad = [f"{n}: {s['unknown-reason']}" for n, s in mine.items() if s["verdict"] == "unknown"]
        if bad:
            boundary[mode] = None
            unknown[mode] = "unknown setting(s), so no boundary: " + "; ".join(bad)
            continue
        safe = [s["epsilon-target"] for s in mine.values() if s["verdict"] == "holds"]
        boundary[mode] = max(safe) if safe else None
    return {
        "boundary": boundary,
        "boundary-unknown": unknown,
        "unknown": [n for n, s in settings.items() if s["verdict"] == "unknown"],
    }


def boundary_text(data: dict[str, Any], mode: str) -> str:
    """A mode's boundary for humans: the epsilon, ``-`` (none holds) or ``unknown (...)``."""
    why = data.get("boundary-unknown", {}).get(mode)
    if why:
        return f"unknown ({why})"
    value = data["boundary"][mode]
    return "-" if value is None else f"{value:g}"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode()


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isinf(v):
            return "inf"
        return f"{v:.{digits}g}"
    return html.escape(str(v))


def _plots(settings: dict[str, Any]) -> dict[str, str]:
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    names = list(settings)
    plots = {}
    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    for i, (stat, marker) in enumerate(
        (("final", "o"), ("all-iterates", "s"), ("per-release", "^"))
    ):
        xs, ys, lo, hi = [], [], [], []
        for j, n in enumerate(names):
            e = settings[n]["estimates"][stat]
            if e["epsilon"] is None or not math.isfinite(e["epsilon"]):
                continue
            xs.append(j + (i - 1) * 0.15)
            ys.append(e["epsilon"])
            lo.append(e["epsilon"] - e["low"])
            hi.append(e["high"] - e["epsilon"])
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt=marker, capsize=3, label=f"estimate: {stat}")
    acc = [settings[n]["accountant"].get("epsilon") for n in names]
    ax.scatter(
        [j for j, a in enumerate(acc) if a is not None],
        [a for a in acc if a is not None],
        marker="_",
        s=400,
        color="k",
        label="accountant",
        zorder=5,
    )
    ax.set_xticks(range(len(names)), names, rotation=15, fontsize=8)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("epsilon (capped at 50)")
    ax.legend(fontsize=7)
    ax.set_title("Accountant epsilon and empirical estimate (bootstrap 95 %)", fontsize=9)
    fig.tight_layout()
    plots["privacy"] = _png(fig)

    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    for n in names:
        u = [v for v in settings[n]["utility"] if v is not None]
        ax.plot(range(1, len(u) + 1), u, marker=".", label=n)
    ax.set_xlabel("round")
    ax.set_ylabel("held-out accuracy")
    ax.legend(fontsize=7)
    ax.set_title("Utility per round (canaries present)", fontsize=9)
    fig.tight_layout()
    plots["utility"] = _png(fig)

    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    keys = sorted({k for n in names for k in settings[n]["attacks"]})
    width = 0.8 / max(len(keys), 1)
    for i, key in enumerate(keys):
        ys = [settings[n]["attacks"].get(key, {}).get("psnr-median") for n in names]
        xs = [j + (i - len(keys) / 2) * width for j in range(len(names))]
        ax.bar(
            [x for x, y in zip(xs, ys, strict=True) if y is not None],
            [y for y in ys if y is not None],
            width=width,
            label=key,
        )
    for j, n in enumerate(names):
        ax.hlines(
            settings[n]["psnr-threshold"],
            j - 0.45,
            j + 0.45,
            colors="k",
            linestyles="dashed",
            label="threshold" if j == 0 else None,
        )
    ax.set_xticks(range(len(names)), names, rotation=15, fontsize=8)
    ax.set_ylabel("median PSNR (dB)")
    ax.legend(fontsize=6, ncol=2)
    ax.set_title("Reconstruction PSNR per setting (dashed: mean image + 3 dB)", fontsize=9)
    fig.tight_layout()
    plots["psnr"] = _png(fig)
    return plots


def _grid(out: Path, name: str, rows: list[dict[str, Any]]) -> str | None:
    """Truth (top) against each attack's reconstruction of the setting's targets."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state
    from safetensors.torch import load_file

    cells = []
    for r in rows:
        if r["setting"] != name or r.get("status") != "ok":
            continue
        file = (
            out
            / "settings"
            / name
            / "attacks"
            / f"{r['target'].replace('/', '_')}__{r['attack']}__{r['denoiser']}.safetensors"
        )
        if file.exists():
            t = load_file(file)
            cells.append(
                (
                    f"{r['target'].split('/')[-1]}\n{r['attack']}/{r['denoiser']}",
                    t["truth"][0],
                    t["reconstruction"][0],
                    r["psnr"],
                )
            )
    if not cells:
        return None
    cells = cells[:12]
    fig = Figure(figsize=(1.4 * len(cells), 3.2))
    axes = fig.subplots(2, len(cells), squeeze=False)
    for j, (title, truth, recon, psnr) in enumerate(cells):
        for i, img in enumerate((truth, recon)):
            axes[i][j].imshow(
                img.permute(1, 2, 0).clamp(0, 1).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1
            )
            axes[i][j].axis("off")
        axes[0][j].set_title(title, fontsize=5)
        axes[1][j].set_title(f"{psnr:.1f} dB", fontsize=6)
    fig.tight_layout()
    return _png(fig)


def estimate_cell(v: dict[str, Any], stat: str) -> tuple[str, str, str]:
    """(pooled, separate, bound) texts of one estimate; ``exceeds`` marks a flag."""

    def one(x: dict[str, Any]) -> str:
        flag = " exceeds" if x.get("exceeds") else ""
        return f"{_num(x['epsilon'])} [{_num(x['low'])}, {_num(x['high'])}]{flag}"

    sep = v.get("separate")
    bound = f" ({_num(v['accountant'])})" if stat == "per-release" else ""
    return one(v), one(sep) if sep else "-", bound


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.3g}"
    return str(v)


def verdict_text(s: dict[str, Any]) -> str:
    """``leaks``, ``holds`` or ``unknown: <reason>``."""
    v = s.get("verdict", "-")
    return f"unknown: {s['unknown-reason']}" if v == "unknown" else v


def attack_text(c: dict[str, Any]) -> str:
    """A cell's PSNR median and spread, ``skipped``, and any error text."""
    parts = []
    if c.get("n"):
        parts.append(f"{_num(c.get('psnr-median'))} [{_num(c.get('psnr-min'))}, ")
        parts[-1] += f"{_num(c.get('psnr-max'))}]"
    elif c.get("skipped"):
        parts.append("skipped")
    errors = c.get("errors") or []
    if errors:
        parts.append(f"error ({len(errors)}): {errors[0] or 'error'}")
    return "; ".join(parts) or "-"


def _table(settings: dict[str, Any]) -> str:
    head = (
        "setting",
        "verdict",
        "accountant eps",
        "final-model est. [95 %] pooled / separate",
        "all-iterates est. [95 %] pooled / separate",
        "per-release est. [95 %] pooled / separate (bound)",
        "accuracy",
        "attack / denoiser",
        "PSNR med [min, max]",
        "SSIM med",
        "label acc",
        "succeeds",
    )
    out = [
        "<table id='settings'><thead><tr>"
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr></thead><tbody>"
    ]
    for name, s in settings.items():
        est = s["estimates"]

        def e(stat: str, est: dict[str, Any] = est) -> str:
            pooled, sep, bound = (html.escape(t) for t in estimate_cell(est[stat], stat))
            pooled = pooled.replace(" exceeds", " <b class='bad'>exceeds</b>")
            sep = sep.replace(" exceeds", " <b class='bad'>exceeds</b>")
            return f"{pooled} /<br>sep. {sep}{bound}"

        util = [u for u in s["utility"] if u is not None]
        cells = s["attacks"] or {"-": {}}
        unknown = s.get("verdict") == "unknown"
        for i, (key, c) in enumerate(cells.items()):
            first = (
                [
                    html.escape(name),
                    (f"<b class='bad'>{html.escape(verdict_text(s))}</b>")
                    if unknown
                    else html.escape(verdict_text(s)),
                    _fmt(s["accountant"].get("epsilon")),
                    e("final"),
                    e("all-iterates"),
                    e("per-release"),
                    _fmt(util[-1] if util else None),
                ]
                if i == 0
                else [""] * 7
            )
            text = html.escape(attack_text(c))
            if c.get("errors"):
                text = f"<span class='bad'>{text}</span>"
            rest = [
                html.escape(key),
                text,
                _fmt(c.get("ssim-median")),
                _fmt(c.get("label-accuracy")),
                "yes" if c.get("succeeds") else "no",
            ]
            out.append("<tr>" + "".join(f"<td>{v}</td>" for v in first + rest) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fedlab audit: {app}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto;font-size:14px}}
table{{border-collapse:collapse;font-size:12px}}td,th{{border:1px solid #bbb;padding:2px 5px}}
.bad{{color:#b00}}img{{max-width:100%}}</style></head>
<body data-plots-ok="0" data-rows="0">
<h1>fedlab audit of <code>{app}</code></h1>
<p>{n} settings, wall time {seconds:.0f} s. Boundary (largest epsilon at which no attack beats
the thresholds fixed in advance): central DP {b_central}, local DP {b_local}.</p>
{unknown}
<h2>What is measured</h2>
<ul>
<li><b>Under central DP the server sees each client's update without noise</b> (clipped only):
the attacks on traced targets show what a curious server recovers. What anyone else sees is the
released, noised aggregate: rows <code>aggregate:*</code> attack it.</li>
<li>Under local DP each reply is clipped and noised on the client: the server sees that.</li>
<li>The empirical epsilon is an <b>estimate, not a bound</b> (Andrew et al., ICLR 2024): canary
clients ({canary_share:.0%} of the population at most, sampled like clients) each send one fixed
random direction of the clip norm; the cosines of their directions with the final model delta
(final model), the largest cosine with a round's aggregate (all iterates) and with each of their
own replies (per release, the server's view) are compared with directions never inserted.
Utility is measured with the canaries present.</li>
<li>"exceeds": the lower end of the estimate's 95 % interval is above the accountant's
epsilon. "pooled" fits one variance to the canary and null statistics (a Gaussian mechanism's
two outputs share one); "separate" fits two, as Andrew et al. do.</li>
<li>A setting is <b>unknown</b> when any configured attack or denoiser errored or fewer traced
targets than configured were attacked; a mode with an unknown setting has no boundary, and the
command exits with code 3.</li>
</ul>
<h2>Settings</h2>
{table}
<h2>Plots</h2>
<img class="plot" alt="privacy" src="data:image/png;base64,{p_privacy}">
<img class="plot" alt="utility" src="data:image/png;base64,{p_utility}">
<img class="plot" alt="psnr" src="data:image/png;base64,{p_psnr}">
<h2>Reconstructions (top: truth, bottom: reconstruction)</h2>
{grids}
<script>
window.addEventListener("load", function () {{
  var imgs = document.querySelectorAll("img.plot"), ok = 0;
  imgs.forEach(function (i) {{ if (i.complete && i.naturalWidth > 0) ok += 1; }});
  document.body.setAttribute("data-plots-ok", String(ok));
  document.body.setAttribute("data-plots", String(imgs.length));
  document.body.setAttribute("data-rows",
    String(document.querySelectorAll("#settings tbody tr").length));
}});
</script>
</body></html>
"""


def write_report(
    out: Path,
    audit: AuditConfig,
    app: str,
    settings: dict[str, Any],
    rows: list[dict[str, Any]],
    seconds: float,
    attack_seconds: float | None = None,
) -> dict[str, Any]:
    """Write ``audit.json`` and ``report.html`` atomically; return the JSON object.

    ``attack_seconds``: wall time of the attack stage, from the first attack job handed out to
    the last row back (None: not measured).
    """
    extra = summarise(settings, rows, audit.targets)
    compact = {
        n: {k: v for k, v in s.items() if k not in ("statistics", "sampled")}
        for n, s in settings.items()
    }
    data = {
        "app": app,
        "config": audit.to_json(),
        "seconds": round(seconds, 1),
        "attack-seconds": None if attack_seconds is None else round(attack_seconds, 1),
        "boundary": extra["boundary"],
        "boundary-unknown": extra["boundary-unknown"],
        "unknown": extra["unknown"],
        "settings": compact,
        "rows": rows,
    }
    atomic_write_json(out / "audit.json", data)
    plots = _plots(settings)
    grids = []
    for name in settings:
        png = _grid(out, name, rows)
        if png:
            grids.append(
                f"<h3>{html.escape(name)}</h3><img class='plot' alt='{html.escape(name)}'"
                f" src='data:image/png;base64,{png}'>"
            )
    page = PAGE.format(
        app=html.escape(app),
        n=len(settings),
        seconds=seconds,
        table=_table(settings),
        b_central=html.escape(boundary_text(extra, "central")),
        b_local=html.escape(boundary_text(extra, "local")),
        unknown=(
            "<p class='bad' id='unknown'><b>Incomplete audit</b>: unknown setting(s) "
            + html.escape(", ".join(extra["unknown"]))
            + " (an attack or denoiser errored, or targets are missing; see their rows).</p>"
        )
        if extra["unknown"]
        else "",
        canary_share=audit.canary_share,
        p_privacy=plots["privacy"],
        p_utility=plots["utility"],
        p_psnr=plots["psnr"],
        grids="\n".join(grids),
    )
    atomic_write_text(out / "report.html", page)
    return json.loads(json.dumps(data))

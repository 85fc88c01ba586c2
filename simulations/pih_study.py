"""The FreePIH study: tuning, test table, content-against-style plot, timing; all app runs.

Protocol declared in docs/freepih.md ("Declared before tuning or testing") before running:

- ``tuning``: one ``harmonization`` app run (4 clients, the shipped federated prior, no
  training) on the 8 tuning composites with the whole grid; the headline FreePIH (t, g) is the
  lowest style distance with edge F1 >= 0.7 (else the highest edge F1).
- ``test``: the same run on the 24 test composites.
- ``timing``: seconds per image (batch 1, one thread) against the number of DDIM steps.
- ``central``: the headline FreePIH setting and SDEdit on the test composites with the
  centrally trained prior (``prior-central``, same steps), if it was trained.
- ``style-inference``: how often ``fedlab harmonize``'s default (no ``--style``) infers the
  right style of the 24 test backgrounds (a diagnostic of the command, not of FreePIH).
- ``figure``: 8 test composites (2 per style) through the client's own method runs: cut,
  histogram, Reinhard, SDEdit t = 50, FreePIH g = 0 and the headline (``examples.png``).
- ``report``: tables (into docs/freepih.md between the ``pih-table`` markers)
  and the plot, from ``simulations/results/pih/study.json``.

``python simulations/pih_study.py all`` runs everything; a step already in the JSON is
skipped (delete it to rerun).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fedlab.clients.harmonization.app import harmonization  # noqa: E402
from fedlab.clients.harmonization.config import SHIPPED_PRIOR  # noqa: E402

from fedlab.atomic import atomic_write, atomic_write_json, atomic_write_text  # noqa: E402
from fedlab.inprocess import run_in_process  # noqa: E402

log = logging.getLogger("fedlab.pih_study")

SDEDIT_T = (50, 100, 200, 300, 400, 600)
FREEPIH_T = (100, 200, 300)
GUIDANCE = (0.0, 1.0, 3.0)
STEPS, TIMING_STEPS = 10, (5, 10, 20)
EDGE_F1_MIN = 0.7
LEVEL = "A: 10 DDIM steps, seed 0, 64-px composites, 1,000-step CPU prior"
RESULTS_DIR = ROOT / "simulations" / "results" / "pih"
RESULTS = RESULTS_DIR / "study.json"
PLOT = RESULTS_DIR / "content_style.png"
RUNS = ROOT / "runs" / "pih-study"
BASELINES = ("cut", "histogram", "reinhard")
METRICS = ("ssim", "haarpsi", "edge-f1", "colour-dist", "texture-dist", "style-dist",
           "style-dist-in", "bg-error", "seconds")  # fmt: skip


def load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def save(data: dict) -> None:
    atomic_write_json(RESULTS, data)


def app_run(name: str, overrides: dict) -> dict[str, float]:
    """One ``harmonization`` app run (one round, no training); the clients' mean metrics."""
    out = RUNS / name
    config = harmonization.resolve_config({
        "num-server-rounds": 1, "num-supernodes": 4, "train-prior": False, "device": "cpu",
        "out-dir": str(out), **overrides,
    })  # fmt: skip
    start = time.perf_counter()
    summary = run_in_process(harmonization, config)
    if summary["stopped-early"]:
        raise RuntimeError(f"{name} stopped early: {summary['stopped-early']}")
    metrics = json.loads((out / "history.json").read_text())[-1]["client-evaluate"]
    log.info("%s: %.0f s", name, time.perf_counter() - start)
    return {**metrics, "run-seconds": round(time.perf_counter() - start, 1)}


def grid_overrides(composites: str) -> dict:
    return {
        "composites": composites, "sample-steps": STEPS,
        "methods": "cut,histogram,reinhard,sdedit,freepih",
        "sdedit-t": ",".join(map(str, SDEDIT_T)), "freepih-t": ",".join(map(str, FREEPIH_T)),
        "guidance": ",".join(f"{g:g}" for g in GUIDANCE),
    }  # fmt: skip


def method_names() -> list[str]:
    return [*BASELINES, *(f"sdedit-t{t}" for t in SDEDIT_T),
            *(f"freepih-t{t}-g{g:g}" for t in FREEPIH_T for g in GUIDANCE)]  # fmt: skip


def rows_of(metrics: dict) -> dict[str, dict[str, float]]:
    return {m: {k: metrics[f"{m}-{k}"] for k in METRICS} for m in method_names()}


def headline(rows: dict[str, dict[str, float]]) -> str:
    """The declared tuning rule: lowest style distance with edge F1 >= 0.7, else best F1."""
    fp = {m: r for m, r in rows.items() if m.startswith("freepih")}
    ok = {m: r for m, r in fp.items() if r["edge-f1"] >= EDGE_F1_MIN}
    if ok:
        return min(ok, key=lambda m: ok[m]["style-dist"])
    return max(fp, key=lambda m: fp[m]["edge-f1"])


def run_set(step: str) -> None:
    data = load()
    if step in data:
        log.info("%s already in %s; skipped", step, RESULTS)
        return
    composites = "tuning" if step == "tuning" else "test"
    metrics = app_run(step, grid_overrides(composites))
    entry = {"level": LEVEL, "composites": composites, "run-seconds": metrics["run-seconds"],
             "rows": rows_of(metrics)}  # fmt: skip
    if step == "tuning":
        entry["headline"] = headline(entry["rows"])
        log.info("headline FreePIH setting (tuning): %s", entry["headline"])
    data = load()
    data[step] = entry
    save(data)


def timing() -> None:
    data = load()
    if "timing" in data:
        return
    rows = {}
    for steps in TIMING_STEPS:
        m = app_run(f"timing-{steps}", {
            "composites": "test", "max-composites": 4, "sample-steps": steps,
            "methods": "sdedit,freepih", "sdedit-t": "200", "freepih-t": "200",
            "guidance": "0,1",
        })  # fmt: skip
        rows[str(steps)] = {
            name: m[f"{name}-seconds"]
            for name in ("sdedit-t200", "freepih-t200-g0", "freepih-t200-g1")
        }
    data = load()
    data["timing"] = {"level": "batch 1, one thread, 4 test composites, mean per image",
                      "threads": torch.get_num_threads(), "rows": rows}  # fmt: skip
    save(data)


def central() -> None:
    data = load()
    if "central-prior" in data:
        return
    folder = RESULTS_DIR / "prior-central"
    if not folder.is_dir():
        raise SystemExit(f"{folder} does not exist: run simulations/pih_train_prior.py central")
    best = data["tuning"]["headline"]  # freepih-t<t>-g<g>
    t, g = best.split("-")[1][1:], best.split("-")[2][1:]
    names = [best, *(f"sdedit-t{s}" for s in SDEDIT_T)]
    m = app_run("prior-central", {
        "composites": "test", "sample-steps": STEPS, "methods": "sdedit,freepih",
        "sdedit-t": ",".join(map(str, SDEDIT_T)), "freepih-t": t, "guidance": g,
        "init-from": str(folder),
    })  # fmt: skip
    # the federated rows are the test step's: the same composites, seeds and steps
    rows = {"federated": {n: data["test"]["rows"][n] for n in names},
            "central": {n: {k: m[f"{n}-{k}"] for k in METRICS} for n in names}}  # fmt: skip
    data = load()
    data["central-prior"] = {"level": LEVEL, "rows": rows}
    save(data)


def style_inference() -> None:
    from fedlab.clients.harmonization.command import infer_style
    from fedlab.clients.harmonization.data import STYLES, composite, test_specs

    from fedlab.diffusion import load_unet, make_scheduler

    data = load()
    if "style-inference" in data:
        return
    unet, scheduler = load_unet(SHIPPED_PRIOR), make_scheduler()
    names = (*STYLES, "photo")
    rows = {}
    for spec in test_specs():
        c = composite(spec)
        rows[spec.name] = names[infer_style(unet, scheduler, c.background[None], c.mask[None])]
    right = sum(rows[s.name] == s.style for s in test_specs())
    data = load()
    data["style-inference"] = {"correct": right, "of": len(rows), "inferred": rows}
    save(data)


def figure() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from fedlab.clients.harmonization.data import composite, style_index, test_specs
    from fedlab.clients.harmonization.evaluate import method_runs

    from fedlab.diffusion import load_unet, make_scheduler

    best = load()["tuning"]["headline"]
    t, g = best.split("-")[1][1:], best.split("-")[2][1:]
    config = harmonization.resolve_config({
        "methods": "cut,histogram,reinhard,sdedit,freepih", "sdedit-t": "50", "freepih-t": t,
        "guidance": f"0,{g}", "sample-steps": STEPS,
    })  # fmt: skip
    items = [composite(s) for s in test_specs()[::3]]
    x = torch.stack([c.composite for c in items])
    masks = torch.stack([c.mask for c in items])
    labels = torch.tensor([style_index(c.style) for c in items])
    runs = method_runs(config, load_unet(config.prior_folder()), make_scheduler())
    with torch.no_grad():
        outs = {name: run(x, masks, labels) for name, run in runs.items()}
    fig, axes = plt.subplots(len(items), len(outs), figsize=(1.6 * len(outs), 1.6 * len(items)))
    for j, (name, images) in enumerate(outs.items()):
        axes[0, j].set_title(name, fontsize=7)
        for i, img in enumerate(images):
            axes[i, j].imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
            axes[i, j].axis("off")
    fig.tight_layout()
    atomic_write(RESULTS_DIR / "examples.png", lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)


# ---------------------------------------------------------------------------- report


def sdedit_ssim_at(rows: dict, style: float, key: str = "ssim") -> float | None:
    """SDEdit's content at a style distance (its t points joined in order of style
    distance); None outside its range."""
    pts = sorted((rows[f"sdedit-t{t}"]["style-dist"], rows[f"sdedit-t{t}"][key])
                 for t in SDEDIT_T)  # fmt: skip
    xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    if not xs[0] <= style <= xs[-1]:
        return None
    return float(np.interp(style, xs, ys))


def goals(data: dict) -> dict:
    rows, best = data["test"]["rows"], data["tuning"]["headline"]
    out: dict = {"headline": best, "content-at-equal-style": {}}
    for m, r in rows.items():
        if m.startswith("freepih"):
            ref = sdedit_ssim_at(rows, r["style-dist"])
            ref_h = sdedit_ssim_at(rows, r["style-dist"], "haarpsi")
            out["content-at-equal-style"][m] = {
                "ssim": r["ssim"], "sdedit-ssim": ref, "haarpsi": r["haarpsi"],
                "sdedit-haarpsi": ref_h,
                "above": None if ref is None else bool(r["ssim"] > ref),
            }  # fmt: skip
    h = rows[best]
    out["goal-1"] = out["content-at-equal-style"][best]["above"]
    # SDEdit settings at least as harmonized (style) that keep at least as much content
    out["headline-dominated-by"] = [
        f"sdedit-t{t}" for t in SDEDIT_T
        if rows[f"sdedit-t{t}"]["style-dist"] <= h["style-dist"]
        and rows[f"sdedit-t{t}"]["ssim"] >= h["ssim"]
    ]  # fmt: skip
    if out["goal-1"] is None and out["headline-dominated-by"]:
        out["goal-1"] = False  # out of SDEdit's range, but an SDEdit point beats it on both
    out["goal-2"] = bool(h["style-dist"] < rows["cut"]["style-dist"]
                         and h["style-dist"] < rows["histogram"]["style-dist"]
                         and h["edge-f1"] >= EDGE_F1_MIN)  # fmt: skip
    out["goal-3"] = all(rows[m]["bg-error"] == 0 for m in rows if not m.startswith("sdedit"))
    return out


def table(data: dict) -> str:
    rows, best = data["test"]["rows"], data["tuning"]["headline"]
    lines = [
        f"24 test composites, means (level {data['test']['level']}); headline FreePIH setting "
        f"chosen on the 8 tuning composites: **{best}**.",
        "",
        "| method | SSIM | HaarPSI | edge F1 | colour dist | texture dist | style dist | "
        "style dist (input bg) | bg error | s / image |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, r in rows.items():
        name = f"**{m}**" if m == best else m
        lines.append(
            f"| {name} | {r['ssim']:.3f} | {r['haarpsi']:.3f} | {r['edge-f1']:.3f} | "
            f"{r['colour-dist']:.3f} | {r['texture-dist']:.3f} | {r['style-dist']:.3f} | "
            f"{r['style-dist-in']:.3f} | {r['bg-error']:.3g} | {r['seconds']:.2f} |"
        )
    g = goals(data)
    lines += ["", "FreePIH against SDEdit at equal style distance (SSIM; SDEdit interpolated "
              "between its t points):", "",
              "| FreePIH | style dist | SSIM | SDEdit SSIM there | HaarPSI | SDEdit HaarPSI "
              "there |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for m, c in g["content-at-equal-style"].items():
        ref = "out of range" if c["sdedit-ssim"] is None else f"{c['sdedit-ssim']:.3f}"
        ref_h = "out of range" if c["sdedit-haarpsi"] is None else f"{c['sdedit-haarpsi']:.3f}"
        lines.append(f"| {m} | {rows[m]['style-dist']:.3f} | {c['ssim']:.3f} | {ref} | "
                     f"{c['haarpsi']:.3f} | {ref_h} |")  # fmt: skip
    verdict = {True: "met", False: "not met", None: "not comparable"}
    dominated = g["headline-dominated-by"]
    if dominated:
        d = rows[dominated[0]]
        lines += ["", f"The headline FreePIH (style distance {rows[best]['style-dist']:.3f}, SSIM "
                  f"{rows[best]['ssim']:.3f}) is dominated by {', '.join(dominated)}: e.g. "
                  f"{dominated[0]} has style distance {d['style-dist']:.3f} and SSIM "
                  f"{d['ssim']:.3f}."]  # fmt: skip
    lines += [
        "",
        f"Goals: (1) more content than SDEdit at equal style distance: "
        f"{verdict[g['goal-1']]}; (2) style distance below cut-and-paste and histogram "
        f"matching with edge F1 >= 0.7: {verdict[g['goal-2']]}; (3) background error "
        f"exactly 0 for every method that keeps the background: {verdict[g['goal-3']]}.",
    ]
    if "timing" in data:
        t = data["timing"]["rows"]
        lines += ["", "Seconds per 64-px image on CPU (one thread, batch 1, 4 test composites):",
                  "", "| DDIM steps | SDEdit t=200 | FreePIH t=200 g=0 | FreePIH t=200 g=1 |",
                  "|---|---|---|---|"]  # fmt: skip
        for steps, r in t.items():
            lines.append(f"| {steps} | {r['sdedit-t200']:.2f} | {r['freepih-t200-g0']:.2f} | "
                         f"{r['freepih-t200-g1']:.2f} |")  # fmt: skip
    if "style-inference" in data:
        si = data["style-inference"]
        lines += [
            "",
            f"`fedlab harmonize` without `--style` infers the right style of "
            f"{si['correct']} of {si['of']} test backgrounds (chance: 1 in 5).",
        ]
    if "central-prior" in data:
        c = data["central-prior"]["rows"]
        lines += ["", "Federated against central prior (1,000 steps each), same test composites:",
                  "", "| method | SSIM fed | SSIM central | style dist fed | style dist central |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for n in c["federated"]:
            f, k = c["federated"][n], c["central"][n]
            lines.append(f"| {n} | {f['ssim']:.3f} | {k['ssim']:.3f} | {f['style-dist']:.3f} | "
                         f"{k['style-dist']:.3f} |")  # fmt: skip
    return "\n".join(lines)


def plot(data: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["test"]["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key in zip(axes, ("ssim", "haarpsi"), strict=True):
        sd = [(rows[f"sdedit-t{t}"]["style-dist"], rows[f"sdedit-t{t}"][key], t)
              for t in SDEDIT_T]  # fmt: skip
        ax.plot([p[0] for p in sd], [p[1] for p in sd], "k.-", label="SDEdit (t)")
        sd_in = [rows[f"sdedit-t{t}"]["style-dist-in"] for t in SDEDIT_T]
        ax.plot(sd_in, [p[1] for p in sd], ".:", color="grey",
                label="SDEdit, style dist against the input background")  # fmt: skip
        for x, y, t in sd:
            ax.annotate(f"{t}", (x, y), fontsize=7)
        for g, marker in zip(GUIDANCE, ("o", "s", "^"), strict=True):
            pts = [(rows[f"freepih-t{t}-g{g:g}"]["style-dist"], rows[f"freepih-t{t}-g{g:g}"][key])
                   for t in FREEPIH_T]  # fmt: skip
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, linestyle="-",
                    label=f"FreePIH g={g:g} (t {FREEPIH_T[0]}-{FREEPIH_T[-1]})")  # fmt: skip
        for name, marker in zip(BASELINES, ("x", "+", "D"), strict=True):
            ax.plot(rows[name]["style-dist"], rows[name][key], marker, color="grey",
                    label=name)  # fmt: skip
        ax.set_xlabel("style distance fg vs bg (lower = more harmonized)")
        ax.set_ylabel(f"content: {key} of grey fg vs source")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("FreePIH vs SDEdit on the 24 test composites (shipped federated prior)")
    fig.tight_layout()
    atomic_write(PLOT, lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)


def replace_between(path: Path, text: str) -> None:
    src = path.read_text()
    pattern = re.compile(r"(<!-- pih-table -->\n).*?(<!-- /pih-table -->)", re.S)
    if not pattern.search(src):
        raise SystemExit(f"{path} has no <!-- pih-table --> markers")
    atomic_write_text(path, pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), src))


def report() -> None:
    data = load()
    text = table(data)
    data["goals"] = goals(data)
    save(data)
    plot(data)
    replace_between(ROOT / "docs" / "freepih.md", text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    every = ("tuning", "test", "timing", "style-inference", "central", "figure", "report")
    parser.add_argument("step", choices=(*every, "all"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    steps = every if args.step == "all" else (args.step,)
    for step in steps:
        {"tuning": lambda: run_set("tuning"), "test": lambda: run_set("test"),
         "timing": timing, "style-inference": style_inference, "central": central,
         "figure": figure, "report": report}[step]()  # fmt: skip


if __name__ == "__main__":
    main()

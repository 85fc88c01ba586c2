"""The Diff-SR study: calibration oracle, PRF fit, test table, timing; every cell an app run.

Protocol declared in docs/diffsr.md ("Study protocol") before running. Steps:

- ``calibrate``: per scale, a ``diffsr`` app run (4 clients, ``eval-images=calibration``,
  ``train-prior=false``) of SDEdit at every t of the log-spaced oracle grid; oracle t = lowest
  mean detail error (:mod:`fedlab.clients.sr.metrics`); ``kappa`` of the PRF fitted to the
  oracle t's on a log scale. The commands do not read it from here: the
  fitted value ships as ``FITTED_KAPPA`` in clients/sr/config.py (a test checks that it equals
  this file's); a refit that changes it says so, and the constant is then updated by hand.
- ``control``: the positive control, per scale: SDEdit on the grid, bicubic, CNN and PRF on
  crops of the clip frames held out from the prior's training (``eval-images=control``);
  oracle t = lowest mean detail error.
- ``test``: per scale, ``diffsr`` app runs on the clients' held-out crops with every method.
- ``timing``: seconds per 64-px image against the number of DDIM steps.
- ``report``: tables (markdown) and the plot from ``simulations/results/diffsr/study.json``.

``python simulations/diffsr_study.py all --level A`` runs everything; results are saved after
every app run, and a step already in the JSON is skipped (delete it to rerun). A calibration
or test of another level in the JSON is refused: move the file aside first.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fedlab.clients.sr.app import diffsr  # noqa: E402
from fedlab.clients.sr.config import FITTED_KAPPA, SHIPPED_PRIOR  # noqa: E402
from fedlab.clients.sr.evaluate import calibrated_prf, heldout_crops, scale_tag  # noqa: E402
from fedlab.clients.sr.methods import DiffSR  # noqa: E402
from fedlab.clients.sr.prf import fit_kappa  # noqa: E402
from fedlab.clients.sr.report import with_prior_results, write_report  # noqa: E402

from fedlab.atomic import atomic_write_json  # noqa: E402
from fedlab.diffusion import load_unet, make_scheduler  # noqa: E402
from fedlab.diffusion.sampling import plan  # noqa: E402
from fedlab.inprocess import run_in_process  # noqa: E402

log = logging.getLogger("fedlab.diffsr_study")

SCALES = (1.5, 2.0, 2.5, 3.0, 4.0, 6.0)
ORACLE_GRID = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256)
ORACLE_METRIC = "detail"  # lower is better
FIXED_T = ORACLE_GRID[1:]
CAL_CROPS, CONTROL_CROPS, TEST_CROPS, CROP = 2, 2, 6, 64
LEVELS = {"A": {"steps": 20, "fixed_seeds": "0"}}
RESULTS_DIR = ROOT / "simulations" / "results" / "diffsr"
RESULTS = RESULTS_DIR / "study.json"
RUNS = ROOT / "runs" / "diffsr-study"


def load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def save(data: dict) -> None:
    atomic_write_json(RESULTS, data)


def update(change: Callable[[dict], None]) -> dict:
    """Load, change and save the results under a lock (test steps may run in parallel)."""
    RUNS.mkdir(parents=True, exist_ok=True)
    with open(RUNS / "study.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = load()
        change(data)
        save(data)
    return data


def app_run(name: str, overrides: dict) -> dict[str, float]:
    """One ``diffsr`` app run (one round, no training); the clients' aggregated metrics."""
    out = RUNS / name
    config = diffsr.resolve_config({
        "num-server-rounds": 1, "num-supernodes": 4, "train-prior": False, "device": "cpu",
        "eval-crop-size": CROP, "out-dir": str(out), **overrides,
    })  # fmt: skip
    start = time.perf_counter()
    summary = run_in_process(diffsr, config)
    history = json.loads((out / "history.json").read_text())
    metrics = history[-1]["client-evaluate"]
    log.info("%s: %.0f s", name, time.perf_counter() - start)
    if summary["stopped-early"]:
        raise RuntimeError(f"{name} stopped early: {summary['stopped-early']}")
    return {**metrics, "seconds": round(time.perf_counter() - start, 1)}


def check_level(data: dict, step: str, level: str) -> None:
    """Refuse to mix levels: a step's rows all come from one number of reverse steps."""
    have = data.get(step, {}).get("level", level)
    if have != level:
        raise SystemExit(
            f"error: {RESULTS} holds the {step} at level {have}, not {level}; move it aside "
            f"(e.g. to study_level{have}.json) to run level {level} from scratch"
        )


def oracle_t(values: dict[int, float]) -> int:
    """The grid t with the lowest detail error (ties: the smaller t)."""
    return min(values, key=lambda t: (values[t], t))


def calibrate(level: str) -> None:
    data = load()
    check_level(data, "calibration", level)
    cal = data.setdefault("calibration", {"level": level, "scales": {}})
    steps = LEVELS[level]["steps"]
    for scale in SCALES:
        tag = scale_tag(scale)
        if tag in cal["scales"]:
            continue
        m = app_run(f"calibration-{tag}", {
            "eval-images": "calibration", "eval-crops": CAL_CROPS, "scales": str(scale),
            "methods": "sdedit", "fixed-t": ",".join(map(str, ORACLE_GRID)),
            "sample-seeds": "0", "sample-steps": steps,
        })  # fmt: skip
        by_t = {metric: {t: m[f"t{t}-{metric}-{tag}-s0"] for t in ORACLE_GRID}
                for metric in ("haarpsi", "detail", "psnr")}  # fmt: skip
        cal["scales"][tag] = {"scale": scale, **by_t,
                              "oracle-t": oracle_t(by_t[ORACLE_METRIC]),
                              "oracle-t-haarpsi": max(by_t["haarpsi"], key=by_t["haarpsi"].get),
                              "seconds": m["seconds"]}  # fmt: skip
        save(data)
    oracle = {v["scale"]: v["oracle-t"] for v in cal["scales"].values()}
    ac = make_scheduler().alphas_cumprod
    prf = calibrated_prf()  # the 8 calibration crops (2 per client, 64 px)
    kappa = fit_kappa(prf, oracle, ac, log_scale=True)
    fitted = prf.with_kappa(kappa)
    cal["kappa"] = kappa
    cal["prf-t"] = {scale_tag(s): fitted.start_step(s, ac) for s in SCALES}
    cal["prf-t-kappa1"] = {scale_tag(s): prf.start_step(s, ac) for s in SCALES}
    save(data)
    log.info("oracle t %s; kappa %.3g -> PRF t %s", oracle, kappa, cal["prf-t"])
    if kappa != FITTED_KAPPA:
        log.warning("fitted kappa %g differs from the shipped FITTED_KAPPA %g: set it in "
                    "clients/sr/config.py", kappa, FITTED_KAPPA)  # fmt: skip


def test(level: str, scales: tuple[float, ...] = SCALES) -> None:
    data = load()
    check_level(data, "test", level)
    if data.get("calibration", {}).get("level") != level:
        raise SystemExit(f"error: no level-{level} calibration in {RESULTS}; run calibrate first")
    kappa = data["calibration"]["kappa"]
    lv = LEVELS[level]
    update(lambda d: d.setdefault("test", {"level": level, "kappa": kappa, "scales": {}}))
    for scale in scales:
        tag = scale_tag(scale)
        common = {"eval-crops": TEST_CROPS, "scales": str(scale), "sample-steps": lv["steps"],
                  "prf-kappa": kappa}  # fmt: skip
        cells = {
            "guided": {**common, "methods": "bicubic,cnn,prf,ilvr,ddnm", "sample-seeds": "0,1"},
            "fixed": {**common, "methods": "sdedit", "fixed-t": ",".join(map(str, FIXED_T)),
                      "sample-seeds": lv["fixed_seeds"]},
        }  # fmt: skip
        for cell, overrides in cells.items():
            if cell in load()["test"]["scales"].get(tag, {}):
                continue
            result = app_run(f"test-{tag}-{cell}", overrides)

            def put(
                d: dict,
                tag: str = tag,
                cell: str = cell,
                result: dict = result,
                scale: float = scale,
            ) -> None:
                d["test"]["scales"].setdefault(tag, {"scale": scale})[cell] = result

            update(put)


def control(level: str, scales: tuple[float, ...] = SCALES) -> None:
    """The positive control: held-out frames of the prior's own training clip."""
    data = load()
    if data.get("calibration", {}).get("level") != level:
        raise SystemExit(f"error: no level-{level} calibration in {RESULTS}; run calibrate first")
    check_level(data, "control", level)
    kappa = data["calibration"]["kappa"]
    steps = LEVELS[level]["steps"]
    update(lambda d: d.setdefault("control", {"level": level, "kappa": kappa, "scales": {}}))
    for scale in scales:
        tag = scale_tag(scale)
        if tag in load()["control"]["scales"]:
            continue
        m = app_run(f"control-{tag}", {
            "eval-images": "control", "eval-crops": CONTROL_CROPS, "scales": str(scale),
            "methods": "bicubic,cnn,sdedit,prf", "fixed-t": ",".join(map(str, ORACLE_GRID)),
            "sample-seeds": "0", "sample-steps": steps, "prf-kappa": kappa,
        })  # fmt: skip
        detail = {t: m[f"t{t}-detail-{tag}-s0"] for t in ORACLE_GRID}
        entry = {"scale": scale, "oracle-t": oracle_t(detail), "prf-t": m[f"prf-t-{tag}"],
                 "metrics": m}  # fmt: skip

        def put(d: dict, tag: str = tag, entry: dict = entry) -> None:
            d["control"]["scales"][tag] = entry

        update(put)


def timing() -> None:
    unet = load_unet(SHIPPED_PRIOR)
    hr = heldout_crops(0, 1, CROP)
    from fedlab.clients.sr.degrade import downsample

    lr = downsample(hr, 4.0)
    rows = []
    for steps in (5, 10, 20, 50):
        sr = DiffSR(unet, make_scheduler(), steps=steps)
        sr.run(lr, (CROP, CROP), 300)  # warm-up
        times = []
        for _ in range(3):  # the machine is shared: the fastest of 3 runs
            start = time.perf_counter()
            sr.run(lr, (CROP, CROP), 300, generator=torch.Generator().manual_seed(0))
            times.append(time.perf_counter() - start)
        taken = len(plan(make_scheduler().config, 300, sampler="ddim", steps=steps)[1])
        rows.append({"steps": steps, "steps-taken": taken, "seconds": round(min(times), 3)})
    timing_entry = {
        "image": f"{CROP}x{CROP}",
        "t-start": 300,
        "threads": 1,
        "rows": rows,
        "note": "fastest of 3 runs on a shared 2-core machine",
    }
    # under the lock: a test step in another process may have saved since this one started
    update(lambda d: d.__setitem__("timing", timing_entry))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("calibrate", "control", "test", "timing", "report", "all"))
    parser.add_argument("--level", choices=tuple(LEVELS), default="A")
    parser.add_argument("--scales", default="", help="test only these scales, e.g. 1.5,2")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    np.seterr(all="ignore")
    if args.step in ("calibrate", "all"):
        calibrate(args.level)
    if args.step in ("test", "all"):
        chosen = tuple(float(x) for x in args.scales.split(",")) if args.scales else SCALES
        test(args.level, chosen)
    if args.step in ("control", "all"):
        chosen = tuple(float(x) for x in args.scales.split(",")) if args.scales else SCALES
        control(args.level, chosen)
    if args.step in ("timing", "all"):
        timing()
    if args.step in ("report", "all"):
        write_report(with_prior_results(load()), ROOT)


if __name__ == "__main__":
    main()

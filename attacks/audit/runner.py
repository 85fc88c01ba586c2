"""The audit sweep: every setting is a real run of the app, then its traces are attacked.

Layout of ``--out``::

    audit-config.json          the audit's config (a resumed audit must be given the same)
    settings/<name>/run/       the app's run folder (config, history, model, traces)
    settings/<name>/setting.json   accountant, canary estimates, utility, targets (written last)
    settings/<name>/attacks/<target>__<attack>__<denoiser>.json (+ .safetensors)
    audit.json, report.html    :mod:`fedlab.attacks.audit.report`

Resume: a setting with ``setting.json`` is not run again (a run killed midway is started over,
its folder replaced); an attack whose row exists is not run again, unless the row is an error.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fedlab.attacks.audit.canaries import (
    CanaryMod,
    ObservingGrid,
    canary_statistics,
    flat,
    with_canaries,
)
from fedlab.attacks.audit.config import AuditConfig, Setting
from fedlab.attacks.audit.estimate import estimate_epsilon, exceeds, gaussian_pair_epsilon
from tqdm import tqdm

from fedlab.appspec import AppSpec
from fedlab.atomic import atomic_save_tensors, atomic_write_json
from fedlab.errors import FedlabError
from fedlab.flower_compat import ensure_task_identity
from fedlab.key_groups import RunConfig
from fedlab.outputs import output_folder

log = logging.getLogger("fedlab.audit")

DP_KEYS = ("dp_mode", "target_epsilon", "local_epsilon", "clip_norm")


@dataclass(frozen=True)
class Planned:
    """A setting resolved against the app: its run config, population and canaries."""

    setting: Setting
    config: RunConfig
    canaries: tuple[int, ...]

    @property
    def name(self) -> str:
        return self.setting.name


def resolve_settings(spec: AppSpec, audit: AuditConfig, out: Path) -> list[Planned]:
    """Every setting's run config, resolved and checked by the app before anything runs.

    Raises
    ------
    FedlabError
        One line: an app that cannot record traces or has no DP-FedAvg keys, an epsilon the
        sampling cannot reach, a population too small for one canary, any key the app refuses.
    """
    if "record-traces" not in spec.config_cls.keys():
        raise FedlabError(
            f"audit: app {spec.name!r} cannot record gradient traces "
            "(record-traces is in its ignored keys); audit an app that records "
            "them, e.g. dpfedavg"
        )
    fields = set(spec.config_cls.__dataclass_fields__)
    missing = [k for k in DP_KEYS if k not in fields]
    if missing:
        raise FedlabError(
            f"audit: app {spec.name!r} has no {', '.join(missing)} keys; the audit "
            "sweeps DP-FedAvg's dp-mode, target-epsilon and local-epsilon "
            "(use dpfedavg or an app built on DPFedAvgConfig)"
        )
    base = {
        **audit.run,
        "record-traces": True,
        "trace-rounds": str(audit.trace_round),
        "trace-clients": "",
        "trace-batch-size": 1,
    }
    planned = []
    for setting in audit.settings:
        layer = {
            **base,
            **setting.overrides(),
            "out-dir": str(out / "settings" / setting.name / "run"),
        }
        try:
            config = spec.resolve_config(layer)
            n = config.num_supernodes
            if audit.trace_round > config.num_server_rounds:
                raise FedlabError(
                    f"trace-round {audit.trace_round} > num-server-rounds "
                    f"{config.num_server_rounds}"
                )
            k = int(math.floor(audit.canary_share * n + 1e-9))
            if k < 2:
                raise FedlabError(
                    f"{n} clients leave room for {k} canaries at canary-share "
                    f"{audit.canary_share}; need at least 2 (num-supernodes >= "
                    f"{math.ceil(2 / audit.canary_share)})"
                )
            if spec.check is not None:
                spec.check(config, n)
        except FedlabError as exc:
            raise FedlabError(f"audit setting {setting.name}: {exc}") from None
        planned.append(Planned(setting, config, tuple(range(n - k, n))))
    return planned


def accountant(setting: Setting, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The app's own privacy figures after the last round (epsilon None: no guarantee)."""
    train = history[-1].get("train", {}) if history else {}
    if setting.mode == "central":
        return {
            "epsilon": train.get("dp-client-epsilon"),
            "delta": train.get("dp-delta"),
            "what": "client-level, RDP, Poisson sampling (the app's accountant)",
        }
    if setting.mode == "local":
        return {
            "epsilon": train.get("dp-local-epsilon-total-max"),
            "delta": train.get("dp-delta"),
            "per-release": train.get("dp-local-epsilon-per-release"),
            "noise-std": train.get("dp-local-noise-std"),
            "clip-norm": train.get("dp-clip-norm"),
            "what": "local, composed over the most releases of any client",
        }
    return {"epsilon": None, "delta": None, "what": "no DP: no guarantee"}


def _per_release_bound(acc: dict[str, Any], delta: float) -> float | None:
    """Epsilon the claimed Gaussian noise gives a canary's reply (distance C, add/remove)."""
    std, clip = acc.get("noise-std"), acc.get("clip-norm")
    if not std or not clip:
        return None
    return gaussian_pair_epsilon(float(clip) / float(std), 1.0, 0.0, 1.0, delta)


def estimates_of(
    stats: dict[str, Any], acc: dict[str, Any], mode: str, delta: float, audit: AuditConfig
) -> dict[str, Any]:
    """The three estimates from the canary statistics, each with the epsilon it is compared
    with and whether it exceeds it (its lower end above that epsilon).

    The pooled fit (one variance) is the estimate; ``separate`` beside it is Andrew et al.'s fit
    (two variances), with its own interval and ``exceeds`` against the same epsilon.
    """
    bounds = {
        "final": acc["epsilon"],
        "all-iterates": acc["epsilon"],
        "per-release": _per_release_bound(acc, delta) if mode == "local" else None,
    }
    out = {}
    for key, v in stats.items():
        bound = bounds[key]
        fits = {}
        for pooled in (True, False):
            est = estimate_epsilon(
                np.array(v["observed"]),
                np.array(v["null"]),
                delta,
                resamples=audit.bootstrap,
                seed=audit.seed,
                pooled=pooled,
            ).to_json()
            est["exceeds"] = exceeds(est["low"], bound)
            fits[pooled] = est
        out[key] = {
            **fits[True],
            "accountant": bound,
            "separate": {k: fits[False][k] for k in ("epsilon", "low", "high", "exceeds")},
        }
    return out


def run_setting(spec: AppSpec, plan: Planned, audit: AuditConfig, folder: Path) -> dict[str, Any]:
    """Run the app with canaries for one setting; write and return ``setting.json``."""
    path = folder / "setting.json"
    if path.exists():  # resumed: the estimates are recomputed from the stored statistics
        done = json.loads(path.read_text())
        delta = float(done["accountant"].get("delta") or getattr(plan.config, "delta", 1e-5))
        done["estimates"] = estimates_of(
            done["statistics"], done["accountant"], done["mode"], delta, audit
        )
        return done
    run_dir = Path(plan.config.out_dir)
    if run_dir.exists():  # a run killed midway starts over
        shutil.rmtree(run_dir)
    config = plan.config
    clip = float(config.clip_norm)  # type: ignore[attr-defined]
    audited = with_canaries(spec, CanaryMod(frozenset(plan.canaries), clip, audit.seed))
    ensure_task_identity()
    keep = {audit.trace_round, audit.trace_round + 1}
    grid = ObservingGrid(audited, config, config.num_supernodes, plan.canaries, keep=keep)
    started = time.perf_counter()
    summary = audited.run_server(grid, config)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    from safetensors.numpy import load_file

    final_arrays = {
        k: v.astype(np.float64)
        for k, v in load_file(run_dir / "model.safetensors").items()
        if np.issubdtype(v.dtype, np.floating)
    }
    stats = canary_statistics(
        grid.seen, flat(final_arrays), list(plan.canaries), audit.seed, audit.null_canaries
    )
    history = json.loads((run_dir / "history.json").read_text())
    acc = accountant(plan.setting, history)
    delta = float(acc.get("delta") or getattr(config, "delta", 1e-5))
    estimates = estimates_of(stats, acc, plan.setting.mode, delta, audit)
    aggregate = None
    if plan.setting.mode == "central" and audit.trace_round in grid.seen.arrays:
        after = grid.seen.arrays.get(audit.trace_round + 1) or final_arrays
        before = grid.seen.arrays[audit.trace_round]
        aggregate = folder / "aggregate.safetensors"
        atomic_save_tensors(
            aggregate,
            {k: torch.from_numpy((after[k] - before[k]).astype(np.float32)) for k in before},
        )
    result = {
        "setting": plan.name,
        "mode": plan.setting.mode,
        "epsilon-target": plan.setting.epsilon,
        "run-seconds": round(seconds, 2),
        "rounds": summary.get("rounds-finished"),
        "population": config.num_supernodes,
        "canaries": list(plan.canaries),
        "canary-norm": clip,
        "accountant": acc,
        "estimates": estimates,
        "utility": [h.get("evaluate", {}).get("accuracy") for h in history],
        "statistics": stats,
        "aggregate": str(aggregate) if aggregate else None,
        "sampled": {str(k): v for k, v in grid.seen.sampled.items()},
    }
    atomic_write_json(path, result)
    return result


def plan_jobs(
    plan: Planned, result: dict[str, Any], audit: AuditConfig, folder: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The attack job of one setting (every target, denoiser and attack), and its targets'
    threshold figures."""
    from fedlab import image_quality
    from fedlab.traces import TraceReader
    from fedlab.workload import build_workload

    trace = folder / "run" / "server-private" / "traces"
    reader = TraceReader(trace, strict=True)
    records = [
        r
        for r in reader.select_all()
        if r.round == audit.trace_round and r.client not in set(plan.canaries)
    ]
    records.sort(key=lambda r: r.client)
    targets = records[: audit.targets]
    test = build_workload(plan.config).test_dataset()
    mean_image = test.images.float().mean(0)
    baseline = []
    for r in targets:
        images = reader.attack_input(r).to_unit_range(reader.ground_truth(r)[0])
        baseline.extend(image_quality.psnr(img, mean_image) for img in images)
    common = {
        "setting": plan.name,
        "trace": str(trace),
        "max_iterations": audit.max_iterations,
        "patience": audit.patience,
        "seed": audit.seed,
    }
    items = []
    for r in targets:
        for den in audit.denoisers:
            for attack in audit.attacks:
                items.append(
                    {
                        "kind": "trace",
                        "target": r.target_id,
                        "record": r.target_id,
                        "truth_records": [r.target_id],
                        "attack": attack,
                        "denoiser": den,
                        "denoiser_dir": audit.denoiser_dir(den),
                        "out": str(folder / "attacks" / _job_name(r.target_id, attack, den)),
                    }
                )
    if result.get("aggregate") and targets and audit.attack_aggregate:
        name = f"aggregate-{audit.trace_round}"
        for attack in audit.attacks:
            items.append(
                {
                    "kind": "aggregate",
                    "target": name,
                    "record": targets[0].target_id,
                    "truth_records": [r.target_id for r in records],
                    "aggregate": result["aggregate"],
                    "attack": attack,
                    "denoiser": "none",
                    "denoiser_dir": None,
                    "out": str(folder / "attacks" / _job_name(name, attack, "none")),
                }
            )
    jobs = [{**common, "items": items}] if items else []
    info = {
        "targets": [r.target_id for r in targets],
        "num-classes": test.num_classes,
        "mean-image-psnr": [float(v) for v in baseline],
    }
    return jobs, info


def _job_name(target: str, attack: str, denoiser: str) -> str:
    return f"{target.replace('/', '_')}__{attack}__{denoiser}.json"


def check_resume(out: Path, audit: AuditConfig, app: str) -> None:
    """Refuse to resume an audit of another config into the same folder."""
    path = out / "audit-config.json"
    mine = json.loads(json.dumps({**audit.to_json(), "app": app, "workers": None}))
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            old = None  # unreadable: not this audit's config, refused below
        if old != mine:
            raise FedlabError(
                f"audit: {out} holds an audit of another config; give another "
                "--out, or the same config to resume it"
            )
    else:
        atomic_write_json(output_folder(out) / path.name, mine)


def run_audit(spec: AppSpec, audit: AuditConfig, out: Path, app: str) -> dict[str, Any]:
    """The whole audit; returns what :func:`fedlab.attacks.audit.report.write_report` wrote."""
    from fedlab.attacks.audit.jobs import init_worker, run_job
    from fedlab.attacks.audit.report import write_report

    started = time.perf_counter()
    if out.exists() and not out.is_dir():
        raise FedlabError(f"--out {str(out)!r} is a file, not a folder; give a folder")
    plans = resolve_settings(spec, audit, out)  # every refusal before any run
    check_resume(out, audit, app)
    pool: Executor | None = None
    if audit.workers > 0:
        pool = ProcessPoolExecutor(
            max_workers=audit.workers, mp_context=get_context("spawn"), initializer=init_worker
        )
        # The workers start (and import torch) now, while the settings run or are planned.
        for _ in range(audit.workers):
            pool.submit(init_worker)
    futures: list[Future] = []
    inline: list[dict[str, Any]] = []
    settings: dict[str, Any] = {}
    attacks_started: float | None = None
    try:
        for plan in tqdm(plans, desc="settings", unit="setting"):
            folder = out / "settings" / plan.name
            result = run_setting(spec, plan, audit, folder)
            jobs, info = plan_jobs(plan, result, audit, folder)
            settings[plan.name] = {**result, **info}
            if pool is None:
                inline.extend(jobs)
            else:
                attacks_started = attacks_started or time.perf_counter()
                futures.extend(pool.submit(run_job, job) for job in jobs)
        rows = []
        if pool is None:
            attacks_started = time.perf_counter()
            for job in tqdm(inline, desc="attacks", unit="setting"):
                rows.extend(run_job(job))
        else:
            for fut in tqdm(
                as_completed(futures), total=len(futures), desc="attacks", unit="setting"
            ):
                rows.extend(fut.result())
        attack_seconds = time.perf_counter() - (attacks_started or time.perf_counter())
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    seconds = time.perf_counter() - started
    return write_report(out, audit, app, settings, rows, seconds, attack_seconds)

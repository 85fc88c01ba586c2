"""The attacks of one setting, as a picklable job for a process pool (one torch thread each).

A job holds one item per (target, denoiser, attack). It reads the trace the audit recorded,
denoises each target once for all of its attacks (a denoiser costs about as much as an attack),
runs the attacks with the audit's cap and plateau stop, scores each against the ground truth and
writes its row (and the reconstruction) atomically. An attack that offers ``reconstruct_many``
(inverting gradients) attacks all of the setting's targets at once, as one batched problem on
their shared model; the others go one target at a time. An item whose row exists is not run
again (resume), unless that row is an error, which is retried.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
from fedlab.attacks import metrics
from fedlab.attacks.base import AttackInput, reconstruct_each
from fedlab.attacks.inverting import InvertingGradients

from fedlab.atomic import atomic_save_tensors, atomic_write_json
from fedlab.errors import FedlabError
from fedlab.registry import ATTACKS

log = logging.getLogger("fedlab.audit")


def make_attack(name: str, max_iterations: int, patience: int, seed: int) -> Any:
    """The audit's attack ``name``: no restarts, the cap, the plateau stop."""
    if name == "ig":
        return InvertingGradients(
            max_iterations=max_iterations, restarts=0, patience=patience, seed=seed
        )
    cls = ATTACKS.get(name)
    try:
        return cls(max_iterations=max_iterations, restarts=0, seed=seed)
    except TypeError:  # an attack of a plugin with other options: its defaults
        return cls(seed=seed)


def noisy(inp: AttackInput) -> bool:
    """Whether what the server saw carries noise (local DP)."""
    dp = inp.dp or {}
    return float(dp.get("noise-std", 0.0) or 0.0) > 0


def init_worker() -> None:
    torch.set_num_threads(1)


def run_job(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one job (see the module docstring); returns a row per item, in its order."""
    torch.set_num_threads(1)
    rows: dict[int, dict[str, Any]] = {}
    pending: dict[str, list[int]] = {}  # attack -> items still to run
    for n, item in enumerate(job["items"]):
        out = Path(item["out"])
        if out.exists():
            done = json.loads(out.read_text())
            if done.get("status") != "error":  # an errored row is retried on resume
                rows[n] = done
                continue
        pending.setdefault(item["attack"], []).append(n)
    inputs: dict[tuple[str, str], dict[str, Any]] = {}  # (target, denoiser): read once
    for attack, items in pending.items():
        ready = []
        for n in items:
            item = job["items"][n]
            key = (item["target"], item["denoiser"])
            try:
                if key not in inputs:
                    inputs[key] = _attack_input({**job, **item})
            except Exception as exc:  # noqa: BLE001  one failed target must not end the audit
                inputs[key] = {"error": exc}
            if "error" in inputs[key]:
                rows[n] = _finish(job, item, _error_row(item, inputs[key]["error"]))
            elif inputs[key].get("skipped"):
                reason = inputs[key]["skipped"]
                rows[n] = _finish(job, item, {"status": "skipped", "reason": reason})
            else:
                ready.append(n)
        rows.update(_run_attack(job, attack, ready, inputs))
    return [rows[n] for n in range(len(job["items"]))]


def _run_attack(
    job: dict[str, Any], name: str, items: list[int], inputs: dict[tuple[str, str], Any]
) -> dict[int, dict[str, Any]]:
    """Attack ``name`` on the ready ``items``: batched when it offers ``reconstruct_many``."""
    if not items:
        return {}
    attack = make_attack(name, job["max_iterations"], job["patience"], job["seed"])
    targets = [inputs[(job["items"][n]["target"], job["items"][n]["denoiser"])] for n in items]
    results = reconstruct_each(attack, [t["input"] for t in targets])
    rows = {}
    for n, target, res in zip(items, targets, results, strict=True):
        item = job["items"][n]
        try:
            if isinstance(res, Exception):
                raise res
            row = _scored(item, target, res, Path(item["out"]))
        except Exception as exc:  # noqa: BLE001  one failed target must not end the audit
            row = _error_row(item, exc)
        rows[n] = _finish(job, item, row)
    return rows


def _error_row(item: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, FedlabError):
        return {"status": "error", "error": " ".join(str(exc).split())}
    log.error("%s: unexpected error: %s: %s", item["target"], type(exc).__name__, exc)
    return {"status": "error", "error": f"{type(exc).__name__}: {exc}"}


def _finish(job: dict[str, Any], item: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    row = {"setting": job["setting"], **{k: item[k] for k in ("target", "denoiser", "kind")}}
    row["attack"] = item["attack"]
    row.update(result)
    atomic_write_json(Path(item["out"]), row)
    return row


def _attack_input(job: dict[str, Any]) -> dict[str, Any]:
    """What the attacks of ``job`` are given, denoised if asked, and the ground truths."""
    from fedlab.traces import TraceReader

    reader = TraceReader(job["trace"], strict=True)
    records = {r.target_id: r for r in reader.select_all()}
    record = records[job["record"]]
    inp = reader.attack_input(record)
    truths = [reader.ground_truth(records[t]) for t in job["truth_records"]]
    if job["kind"] == "aggregate":
        from safetensors.torch import load_file

        agg = load_file(job["aggregate"])
        names = record.param_names or [n for n, _ in inp.build_model().named_parameters()]
        inp = dataclasses.replace(
            inp,
            update=[agg[n].float() for n in names],
            gradients=None,
            dp={"released-aggregate": True},
        )
    if job["denoiser"] != "none":
        if not noisy(inp):
            return {"skipped": "no noise on what the server sees"}
        from fedlab.attacks.pgla.compose import denoise_attack_input
        from fedlab.attacks.pgla.denoisers import load_denoiser

        inp = denoise_attack_input(inp, load_denoiser(job["denoiser"], job["denoiser_dir"]))
    return {"input": inp, "truths": truths}


def _scored(item: dict[str, Any], target: dict[str, Any], res: Any, out: Path) -> dict[str, Any]:
    inp: AttackInput = target["input"]
    truths = target["truths"]
    scored = [
        metrics.score(inp.to_unit_range(images), labels, res.images, res.labels)
        for images, labels in truths
    ]
    best = max(range(len(scored)), key=lambda i: scored[i]["psnr"])
    images = inp.to_unit_range(truths[best][0])
    atomic_save_tensors(
        out.with_suffix(".safetensors"), {"truth": images, "reconstruction": res.images}
    )
    label_ok = None
    if item["kind"] == "trace" and res.labels is not None:
        label_ok = scored[best]["label_accuracy"]
    elif res.labels is not None:  # the aggregate: the label of the closest participant's image
        label_ok = float(int(res.labels[0]) == int(truths[best][1][0]))
    return {
        "status": "ok",
        **scored[best],
        "label_accuracy": label_ok,
        "loss": res.loss,
        "iterations": res.iterations,
        "seconds": res.seconds,
    }


__all__ = ["init_worker", "make_attack", "run_job"]

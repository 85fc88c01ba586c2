"""One attack on one target, as a picklable job for a process pool (one torch thread each).

A job reads the trace the audit recorded, optionally denoises the target, runs the attack with
the audit's cap and plateau stop, scores it against the ground truth and writes its row (and the
reconstruction) atomically; a job whose row exists is not run again (resume), unless that row
is an error, which is retried.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
from fedlab.attacks import metrics
from fedlab.attacks.base import AttackInput
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


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job (see the module docstring); returns its row."""
    torch.set_num_threads(1)
    out = Path(job["out"])
    if out.exists():
        done = json.loads(out.read_text())
        if done.get("status") != "error":  # an errored row is retried on resume
            return done
    row: dict[str, Any] = {k: job[k] for k in ("setting", "target", "attack", "denoiser", "kind")}
    try:
        row.update(_attack(job, out))
    except FedlabError as exc:
        row.update(status="error", error=" ".join(str(exc).split()))
    except Exception as exc:  # noqa: BLE001  one failed target must not end the audit
        log.exception("%s: unexpected error", job["target"])
        row.update(status="error", error=f"{type(exc).__name__}: {exc}")
    atomic_write_json(out, row)
    return row


def _attack(job: dict[str, Any], out: Path) -> dict[str, Any]:
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
            return {"status": "skipped", "reason": "no noise on what the server sees"}
        from fedlab.attacks.pgla.compose import denoise_attack_input
        from fedlab.attacks.pgla.denoisers import load_denoiser

        inp = denoise_attack_input(inp, load_denoiser(job["denoiser"], job["denoiser_dir"]))
    attack = make_attack(job["attack"], job["max_iterations"], job["patience"], job["seed"])
    res = attack.reconstruct(inp)
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
    if job["kind"] == "trace" and res.labels is not None:
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

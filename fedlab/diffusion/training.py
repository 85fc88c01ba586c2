"""Training a diffusion model through THE loop (:func:`fedlab.training.train`), with resume.

:func:`denoising_step` is the epsilon-prediction step the loop calls (timesteps and noise from
torch's RNG, which the loop seeds). :func:`train_with_checkpoints` runs the loop in chunks of
``checkpoint_every`` steps and writes after each chunk a complete folder
``checkpoints/step-N`` (the UNet's ``save_pretrained`` folder plus ``optimizer.pt`` and
``trainer_state.json``, written under a temporary name, then renamed) and ``latest.json``
naming it; a second call on the same folder resumes from there with the optimizer state (read
with ``torch.load(weights_only=True)``), the step count and the history. Chunk ``k`` is
seeded by ``(seed, k)``, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from fedlab.atomic import atomic_write_text
from fedlab.errors import FedlabError
from fedlab.training import StepFn, TrainConfig, train

log = logging.getLogger("fedlab.diffusion")

LATEST_FILE = "latest.json"
OPTIMIZER_FILE = "optimizer.pt"


def denoising_step(
    scheduler: Any, *, t_max: int | None = None, conditional: bool = False
) -> StepFn:
    """The DDPM training step: noise ``x0`` to a uniform ``t``, regress the noise (MSE).

    Parameters
    ----------
    scheduler : DDPMScheduler
    t_max : int, optional
        Draw ``t`` in ``0..t_max - 1`` (all ``T`` steps by default).
    conditional : bool
        Batches are ``(images, class_labels)`` for a ``num_class_embeds`` UNet.
    """
    total = scheduler.config.num_train_timesteps
    t_max = total if t_max is None else t_max
    if not 1 <= t_max <= total:
        raise FedlabError(f"t_max {t_max} must be in 1..{total}")

    def step(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        x0 = batch[0]
        noise = torch.randn_like(x0)
        t = torch.randint(0, t_max, (x0.shape[0],), device=x0.device)
        xt = scheduler.add_noise(x0, noise, t)
        labels = batch[1] if conditional else None
        pred = model(xt, t, class_labels=labels).sample
        return F.mse_loss(pred, noise), {}

    return step


@torch.no_grad()
def heldout_denoising_loss(
    model: nn.Module,
    scheduler: Any,
    images: torch.Tensor,
    *,
    timesteps: tuple[int, ...] = (50, 150, 300, 500, 750),
    seed: int = 0,
    batch_size: int = 64,
    class_labels: torch.Tensor | None = None,
) -> dict[str, float]:
    """Mean noise-prediction MSE on fixed ``images`` at fixed ``timesteps`` and fixed noise.

    The same images, steps and noise for every model, so two models compare directly; a
    class-conditional model gets each image's ``class_labels``.
    Returns ``{"denoise-loss": mean, "denoise-loss-t<t>": per step}``.
    """
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    out: dict[str, float] = {}
    for t in timesteps:
        noise = torch.randn(images.shape, generator=gen)
        total, count = 0.0, 0
        for i in range(0, len(images), batch_size):
            x0 = images[i : i + batch_size].to(device)
            n = noise[i : i + batch_size].to(device)
            tt = torch.full((len(x0),), t, dtype=torch.long, device=device)
            labels = None
            if class_labels is not None:
                labels = class_labels[i : i + batch_size].to(device)
            pred = model(scheduler.add_noise(x0, n, tt), tt, class_labels=labels).sample
            total += float(F.mse_loss(pred, n, reduction="sum"))
            count += n.numel()
        out[f"denoise-loss-t{t}"] = total / count
    out["denoise-loss"] = sum(out.values()) / len(timesteps)
    return out


def read_latest(out: Path) -> dict[str, Any] | None:
    """The ``latest.json`` record of a training folder, or ``None``."""
    path = out / LATEST_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FedlabError(f"{path} is corrupt ({exc}); delete it to start over") from None


def train_with_checkpoints(
    model: nn.Module,
    dataset: Dataset,
    step_fn: StepFn,
    config: TrainConfig,
    *,
    out: str | Path,
    total_steps: int,
    checkpoint_every: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None,
    keep: int = 2,
) -> dict[str, Any]:
    """Train ``model`` (a diffusers ModelMixin) to ``total_steps`` steps, resuming from ``out``.

    Each chunk is one call of :func:`fedlab.training.train` with ``steps=checkpoint_every``;
    the optimizer state carries over chunks (and resumes) through the loop's ``prepare``
    hook. ``evaluate(model)`` adds metrics to each chunk's history entry.

    Returns
    -------
    dict
        ``{"step", "history", "checkpoint"}`` of the last checkpoint.
    """
    out = Path(out)
    if total_steps < 1 or checkpoint_every < 1:
        raise FedlabError(
            f"total_steps={total_steps}, checkpoint_every={checkpoint_every}: both must be >= 1"
        )
    latest = read_latest(out)
    step, history, opt_state = 0, [], None
    if latest is not None:
        ckpt = out / latest["path"]
        loaded = type(model).from_pretrained(
            ckpt, use_safetensors=True, local_files_only=True, low_cpu_mem_usage=False
        )
        model.load_state_dict(loaded.state_dict())
        opt_state = torch.load(ckpt / OPTIMIZER_FILE, weights_only=True)
        step, history = int(latest["step"]), list(latest.get("history", []))
        log.info("resuming %s at step %d", out, step)
    holder: dict[str, torch.optim.Optimizer] = {}

    def prepare(m: nn.Module, opt: torch.optim.Optimizer, loader: Any) -> tuple:
        if holder.get("state") is not None:
            opt.load_state_dict(holder.pop("state"))  # type: ignore[arg-type]
        holder["opt"] = opt
        return m, opt, loader

    holder["state"] = opt_state  # type: ignore[assignment]
    while step < total_steps:
        n = min(checkpoint_every, total_steps - step)
        chunk = step // checkpoint_every
        result = train(
            model, dataset, step_fn, replace(config, steps=n), device=device,
            seed=seed * 1_000_003 + chunk, prepare=prepare,
        )  # fmt: skip
        holder["state"] = holder["opt"].state_dict()  # type: ignore[assignment]
        step += result.steps
        entry = {"step": step, "train-loss": result.metrics.get("loss", float("nan")),
                 "seconds": round(result.seconds, 2)}  # fmt: skip
        if evaluate is not None:
            entry.update(evaluate(model))
            model.train()
        history.append(entry)
        log.info("step %d  %s", step, "  ".join(f"{k}={v:.4g}" for k, v in entry.items()))
        ckpt = _write_checkpoint(out, step, model, holder["state"], history, config, keep)
    return {"step": step, "history": history, "checkpoint": str(read_latest(out)["path"])}


def _write_checkpoint(
    out: Path, step: int, model: Any, opt_state: Any, history: list, config: TrainConfig,
    keep: int,
) -> Path:  # fmt: skip
    def write(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True)
        torch.save(opt_state, folder / OPTIMIZER_FILE)

    state = {"history": history, "train-config": asdict(config)}
    return write_checkpoint(out, step, write, state, keep=keep)


def write_checkpoint(
    out: Path, step: int, write: Callable[[Path], None], state: dict[str, Any], *, keep: int
) -> Path:
    """Write ``checkpoints/step-N`` via ``write(folder)``, then point ``latest.json`` at it.

    The folder is written under a temporary name and renamed, so a crash leaves the previous
    checkpoint and ``latest.json`` intact; only the newest ``keep`` checkpoints are kept.
    """
    final = out / "checkpoints" / f"step-{step:07d}"
    tmp = out / "checkpoints" / f".tmp-step-{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    state = {"step": step, **state}
    atomic_write_text(tmp / "trainer_state.json", json.dumps(state, indent=2) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    latest = {"path": str(final.relative_to(out)), **state}
    atomic_write_text(out / LATEST_FILE, json.dumps(latest, indent=2) + "\n")
    old = sorted(p for p in (out / "checkpoints").glob("step-*") if p != final)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final

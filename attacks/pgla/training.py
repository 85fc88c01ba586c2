"""Training the learned gradient denoisers (PGLA's UNet and the DnCNN baseline), with resume.

One loop, :func:`run_loop`, serves both: it draws clean clipped gradients from the surrogate
stream, asks the model-specific ``loss_fn`` for a loss, steps AdamW with a linear warm-up, shows
a tqdm bar and calls ``save`` every ``checkpoint_every`` steps and at the end (also when the
time limit stops it). A checkpoint is a complete folder ``checkpoints/step-N`` (written under a
temporary name, then renamed) plus ``latest.json`` (written atomically) naming it; resuming
reads ``latest.json`` and continues with the optimizer state and step count.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from fedlab.diffusion.training import LATEST_FILE, read_latest  # noqa: F401 - re-exported
from fedlab.diffusion.training import write_checkpoint as write_diffusion_checkpoint
from fedlab.errors import FedlabError
from fedlab.model_folder import read_json_object, show, where

log = logging.getLogger(f"fedlab.{__name__}")

CONFIG_FILE = "train_config.json"
KEEP_CHECKPOINTS = 2
DENOISER_KINDS = ("pgla", "pgla-cond", "dncnn")
TIMESTEP_PRIORS = ("uniform", "noise-range")


@dataclass
class DenoiserTrainConfig:
    """Everything a training run depends on; saved as ``train_config.json`` beside the weights.

    Parameters
    ----------
    denoiser : str
        ``"pgla"`` (diffusion UNet), ``"pgla-cond"`` (the conditional variant: the UNet also
        sees the noisy gradient and its noise level) or ``"dncnn"``.
    surrogate : str
        Surrogate dataset (see :data:`fedlab.attacks.pgla.surrogate.SURROGATES`).
    seed : int
        Seeds the gradient stream and the model initialisation.
    clip_norm : float
        L2 clip norm applied to every training gradient.
    batch_size, lr, warmup_steps, max_steps : int, float, int, int
        Optimisation.
    time_limit_s : float
        Wall-clock budget of one invocation (0: none); the run checkpoints and stops there.
    checkpoint_every : int
        Steps between checkpoints.
    num_fit : int
        Clean gradients used to fit the transform's scale.
    model : dict
        ``UNet2DModel`` keyword arguments (pgla) or DnCNN ``depth``/``channels`` (dncnn).
    noise_range : list of float
        Observation noise std in data units, drawn log-uniform in this range: DnCNN's and
        pgla-cond's training noise, and the range ``timesteps="noise-range"`` covers.
    timesteps : str
        pgla only: ``"uniform"`` (DDPM's ``t`` uniform in ``0..T-1``) or ``"noise-range"``
        (``t`` uniform in ``0..t*(M)`` with ``M`` log-uniform in ``noise_range``: the steps a
        reverse chain visits for noise in that range, the same prior DnCNN trains on).
    init_from : str
        A denoiser folder (or training run folder) whose weights start the model: fine-tuning.
        A pgla-cond model may start from a pgla one (the extra input starts at zero weight).
    threads : int
        ``torch.set_num_threads`` for the run (0: leave as is).
    device : str
        ``"cpu"``, or ``"auto"`` for CUDA when torch sees it.
    """

    denoiser: str = "pgla"
    surrogate: str = "digits"
    seed: int = 0
    clip_norm: float = 1.0
    batch_size: int = 8
    lr: float = 5e-4
    warmup_steps: int = 100
    max_steps: int = 1000
    time_limit_s: float = 0.0
    checkpoint_every: int = 100
    num_fit: int = 256
    model: dict[str, Any] = field(default_factory=dict)
    noise_range: list[float] = field(default_factory=lambda: [0.05, 20.0])
    timesteps: str = "uniform"
    init_from: str = ""
    threads: int = 0
    device: str = "cpu"

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, max_parameters: int | None = None
    ) -> DenoiserTrainConfig:
        """Build from a dict, refusing unknown keys and bad values (``max_parameters``: the cap
        on an ``init_from`` model, see :meth:`validate`)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FedlabError(
                f"unknown training config keys {unknown}; allowed: {', '.join(sorted(known))}"
            )
        cfg = cls(**data)
        cfg.validate(max_parameters=max_parameters)
        return cfg

    @classmethod
    def from_file(cls, path: str | Path) -> DenoiserTrainConfig:
        """Read a JSON config file."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise FedlabError(
                f"training config {str(path)!r} not found; give a JSON file"
            ) from None
        except json.JSONDecodeError as exc:
            raise FedlabError(f"training config {str(path)!r} is not valid JSON ({exc})") from None

    def validate(self, *, max_parameters: int | None = None) -> None:
        """Raise :class:`FedlabError` on a value out of range.

        An ``init_from`` folder is checked as the run will load it, allocating nothing (its
        configs typed and bounded, the model counted on the meta device against
        ``max_parameters``, default :data:`fedlab.limits.MAX_MODEL_PARAMETERS`, and its
        weights' header matched).
        """
        from fedlab.attacks.pgla.surrogate import SURROGATES

        if self.denoiser not in DENOISER_KINDS:
            raise FedlabError(
                f"denoiser {self.denoiser!r} unknown; allowed: {', '.join(DENOISER_KINDS)}"
            )
        if self.timesteps not in TIMESTEP_PRIORS:
            raise FedlabError(
                f"timesteps {self.timesteps!r} unknown; allowed: {', '.join(TIMESTEP_PRIORS)}"
            )
        if self.init_from and not Path(self.init_from).is_dir():
            raise FedlabError(
                f"init_from {self.init_from!r} is not a folder; give a denoiser folder or a "
                "training run folder written by `fedlab pgla train`, or leave it empty"
            )
        if self.init_from and self.denoiser in DENOISER_KINDS:
            if self.denoiser == "dncnn":
                from fedlab.attacks.pgla.dncnn import check_dncnn_folder as check
            else:
                from fedlab.attacks.pgla.pipeline import check_pipeline_folder as check
            check(resolve_checkpoint(self.init_from), max_parameters=max_parameters)
        if self.surrogate not in SURROGATES:
            raise FedlabError(
                f"surrogate {self.surrogate!r} unknown; allowed: {', '.join(SURROGATES)}"
            )
        for name in ("batch_size", "max_steps", "checkpoint_every", "num_fit"):
            if int(getattr(self, name)) < 1:
                raise FedlabError(f"{name} {getattr(self, name)} must be >= 1")
        if self.device not in ("cpu", "auto"):
            raise FedlabError(f"device {self.device!r} must be 'cpu' or 'auto'")
        if not (self.lr > 0 and self.clip_norm > 0 and self.time_limit_s >= 0):
            raise FedlabError("lr and clip_norm must be > 0 and time_limit_s >= 0")
        lo, hi = self.noise_range
        if not 0 < lo <= hi:
            raise FedlabError(f"noise_range {self.noise_range} must satisfy 0 < low <= high")


def resolve_checkpoint(folder: str | Path) -> Path:
    """``folder`` itself, or the checkpoint its ``latest.json`` names (a training run folder).

    ``latest.json`` may come from someone else's folder: it is read size-capped, and its
    ``path`` must name a folder inside ``folder`` (one-line errors otherwise).
    """
    folder = Path(folder)
    if not folder.is_dir() or not (folder / LATEST_FILE).exists():
        return folder
    label = where(folder, "denoiser")
    hint = "restore it, or delete it to use the folder itself"
    latest = read_json_object(folder / LATEST_FILE, label, hint=hint)
    rel = latest.get("path")
    parts = Path(rel).parts if isinstance(rel, str) else ()
    if not parts or Path(rel).is_absolute() or ".." in parts or "\x00" in rel:
        raise FedlabError(
            f"{label}: {LATEST_FILE} field path must name a checkpoint folder inside it (e.g. "
            f"'checkpoints/step-0000100'), got {show(rel)}; {hint}"
        )
    return folder / rel


def write_checkpoint(
    out: Path, step: int, write: Callable[[Path], None], state: dict[str, Any]
) -> Path:
    """:func:`fedlab.diffusion.training.write_checkpoint`, keeping ``KEEP_CHECKPOINTS``."""
    return write_diffusion_checkpoint(out, step, write, state, keep=KEEP_CHECKPOINTS)


def run_loop(
    *,
    model: torch.nn.Module,
    stream: Iterator[torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    cfg: DenoiserTrainConfig,
    save: Callable[[int, torch.optim.Optimizer, dict[str, Any]], None],
    start_step: int = 0,
    optimizer_state: dict[str, Any] | None = None,
    history: list[dict[str, float]] | None = None,
    elapsed_before: float = 0.0,
) -> dict[str, Any]:
    """Train ``model`` until ``cfg.max_steps`` or the time limit; returns the final state."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + start_step + 1) / cfg.warmup_steps)
    )
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + start_step)
    history = list(history or [])
    losses: list[float] = []
    t0 = time.perf_counter()
    step = start_step
    model.train()
    bar = tqdm(total=cfg.max_steps, initial=start_step, desc=f"train {cfg.denoiser}")

    def state() -> dict[str, Any]:
        return {
            "step": step,
            "elapsed_s": round(elapsed_before + time.perf_counter() - t0, 1),
            "history": history,
            "config": asdict(cfg),
        }

    while step < cfg.max_steps:
        loss = loss_fn(next(stream), gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        out_of_time = cfg.time_limit_s and time.perf_counter() - t0 > cfg.time_limit_s
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps or out_of_time:
            history.append(
                {"step": step, "loss": float(np.mean(losses)), "elapsed_s": state()["elapsed_s"]}
            )
            losses = []
            log.info(
                "step %d loss %.5f (%.0f s)", step, history[-1]["loss"], history[-1]["elapsed_s"]
            )
            model.eval()
            save(step, opt, state())
            model.train()
        if out_of_time:
            log.info(
                "time limit %.0f s reached at step %d; resume to continue", cfg.time_limit_s, step
            )
            break
    bar.close()
    model.eval()
    return state()

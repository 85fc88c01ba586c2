"""``train_denoiser(cfg, out)``: fit the transform, build the model, run the loop, resume."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attacks.pgla.dncnn import DnCNN, dncnn_loss, load_dncnn, save_dncnn
from attacks.pgla.pipeline import PGLAPipeline, build_unet
from attacks.pgla.schedule import make_scheduler
from attacks.pgla.surrogate import gradient_stream, surrogate_images
from attacks.pgla.training import CONFIG_FILE, TrainConfig, read_latest, run_loop, write_checkpoint
from attacks.pgla.transform import GradientImageTransform
from fedlab.atomic import atomic_write_text
from fedlab.errors import FedlabError

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"
OPTIMIZER_FILE = "optimizer.pt"


def shipped_configs() -> list[str]:
    """Names of the configs in ``attacks/pgla/configs`` (without ``.json``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def resolve_config(name_or_path: str) -> TrainConfig:
    """A shipped config by name (e.g. ``small``) or a JSON file path."""
    path = Path(name_or_path)
    if not path.suffix and (CONFIG_DIR / f"{name_or_path}.json").exists():
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.exists():
        raise FedlabError(
            f"training config {name_or_path!r} not found; give a JSON file or one of "
            f"{', '.join(shipped_configs())}"
        )
    return TrainConfig.from_file(path)


def pgla_loss(pipe: PGLAPipeline, device: torch.device) -> Any:
    """The DDPM epsilon-prediction loss on gradient images (random draws from a CPU generator)."""
    total = pipe.scheduler.config.num_train_timesteps
    abar = pipe.scheduler.alphas_cumprod

    def loss_fn(flat: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        x = pipe.transform.to_image(flat)
        noise = torch.randn(x.shape, generator=gen)
        t = torch.randint(0, total, (x.shape[0],), generator=gen)
        a = abar[t].view(-1, 1, 1, 1)
        x_t = (a.sqrt() * x + (1 - a).sqrt() * noise).to(device)
        pred = pipe.unet(x_t, t.to(device)).sample
        return torch.nn.functional.mse_loss(pred, noise.to(device))

    return loss_fn


def train_denoiser(cfg: TrainConfig, out: str | Path, *, resume: bool = True) -> dict[str, Any]:
    """Train (or resume) a PGLA or DnCNN denoiser into ``out``; returns the final state.

    ``out`` ends up with ``train_config.json``, ``checkpoints/step-N/`` (a loadable denoiser
    folder each) and ``latest.json``; load with :func:`attacks.pgla.denoisers.load_denoiser`.

    Raises
    ------
    FedlabError
        If ``out`` holds a run with another config and ``resume`` is set.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    latest = read_latest(out) if resume else None
    if latest is not None:
        saved = json.loads((out / CONFIG_FILE).read_text())
        if {k: v for k, v in saved.items() if k not in ("max_steps", "time_limit_s")} != {
            k: v for k, v in asdict(cfg).items() if k not in ("max_steps", "time_limit_s")
        }:
            raise FedlabError(
                f"{out} holds a run with another config ({out / CONFIG_FILE}); use a new --out, "
                "or the same config (only max_steps and time_limit_s may change)"
            )
    atomic_write_text(out / CONFIG_FILE, json.dumps(asdict(cfg), indent=2) + "\n")
    torch.manual_seed(cfg.seed)
    images, labels = surrogate_images(cfg.surrogate, seed=cfg.seed)
    start, opt_state, history, elapsed = 0, None, [], 0.0
    if latest is not None:
        ckpt = out / latest["path"]
        model, transform = _load_model(cfg, ckpt)
        opt_state = torch.load(ckpt / OPTIMIZER_FILE, weights_only=True)
        start, history, elapsed = latest["step"], latest["history"], latest["elapsed_s"]
        log.info("resuming %s from step %d (%s)", cfg.denoiser, start, ckpt)
    else:
        fit = next(
            gradient_stream(
                images,
                labels,
                clip_norm=cfg.clip_norm,
                batch_size=cfg.num_fit,
                seed=cfg.seed + 7919,
            )
        )
        transform = GradientImageTransform.fit(fit, clip_norm=cfg.clip_norm)
        model = _new_model(cfg, transform)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else "cpu")
    model.to(device)
    if cfg.denoiser == "pgla":
        pipe = PGLAPipeline(unet=model, scheduler=make_scheduler(), transform=transform)
        loss_fn = pgla_loss(pipe, device)

        def write(folder: Path) -> None:
            pipe.save_pretrained(folder)
    else:
        loss_fn = dncnn_loss(model, transform, tuple(cfg.noise_range), device)

        def write(folder: Path) -> None:
            save_dncnn(model, transform, folder)

    def save(step: int, opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        def write_all(folder: Path) -> None:
            write(folder)
            torch.save(opt.state_dict(), folder / OPTIMIZER_FILE)

        write_checkpoint(out, step, write_all, state)

    seed = int(np.random.SeedSequence([cfg.seed, start]).generate_state(1)[0])
    stream = gradient_stream(
        images, labels, clip_norm=cfg.clip_norm, batch_size=cfg.batch_size, seed=seed
    )
    n_params = sum(p.numel() for p in model.parameters())
    log.info("%s: %d parameters, transform %s", cfg.denoiser, n_params, transform.to_dict())
    return run_loop(
        model=model,
        stream=stream,
        loss_fn=loss_fn,
        cfg=cfg,
        save=save,
        start_step=start,
        optimizer_state=opt_state,
        history=history,
        elapsed_before=elapsed,
    )


def _new_model(cfg: TrainConfig, transform: GradientImageTransform) -> torch.nn.Module:
    if cfg.denoiser == "pgla":
        return build_unet(sample_size=transform.side, **cfg.model)
    return DnCNN(**cfg.model)


def _load_model(cfg: TrainConfig, folder: Path) -> tuple[torch.nn.Module, GradientImageTransform]:
    if cfg.denoiser == "pgla":
        pipe = PGLAPipeline.from_pretrained(folder)
        return pipe.unet, pipe.transform
    return load_dncnn(folder)

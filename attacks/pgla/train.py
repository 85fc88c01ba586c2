"""``train_denoiser(cfg, out)``: fit the transform, build the model, run the loop, resume."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fedlab.attacks.pgla.dncnn import DnCNN, dncnn_loss, load_dncnn, save_dncnn
from fedlab.attacks.pgla.pipeline import PGLAPipeline, build_unet
from fedlab.attacks.pgla.schedule import make_scheduler, start_timesteps
from fedlab.attacks.pgla.surrogate import gradient_stream, surrogate_images
from fedlab.attacks.pgla.training import (
    CONFIG_FILE,
    DenoiserTrainConfig,
    read_latest,
    resolve_checkpoint,
    run_loop,
    write_checkpoint,
)
from fedlab.attacks.pgla.transform import GradientImageTransform

from fedlab.atomic import atomic_write_text
from fedlab.errors import FedlabError
from fedlab.outputs import output_folder

log = logging.getLogger(f"fedlab.{__name__}")

CONFIG_DIR = Path(__file__).parent / "configs"
OPTIMIZER_FILE = "optimizer.pt"
# init_from only matters when a run starts, so a moved or copied run folder still resumes.
RESUME_MAY_CHANGE = ("max_steps", "time_limit_s", "init_from")


def shipped_configs() -> list[str]:
    """Names of the configs in ``attacks/pgla/configs`` (without ``.json``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def resolve_config(name_or_path: str) -> DenoiserTrainConfig:
    """A shipped config by name (e.g. ``small``) or a JSON file path."""
    path = Path(name_or_path)
    if not path.suffix and (CONFIG_DIR / f"{name_or_path}.json").exists():
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.exists():
        raise FedlabError(
            f"training config {name_or_path!r} not found; give a JSON file or one of "
            f"{', '.join(shipped_configs())}"
        )
    return DenoiserTrainConfig.from_file(path)


def _log_uniform(size: int, noise_range: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    lo, hi = math.log(noise_range[0]), math.log(noise_range[1])
    return torch.exp(lo + (hi - lo) * torch.rand(size, generator=gen))


def pgla_loss(
    pipe: PGLAPipeline,
    device: torch.device,
    *,
    timesteps: str = "uniform",
    noise_range: tuple[float, float] = (0.05, 20.0),
) -> Any:
    """The DDPM epsilon-prediction loss on gradient images (random draws from a CPU generator).

    ``timesteps="uniform"`` draws ``t`` uniform in ``0..T-1``; ``"noise-range"`` draws ``M``
    log-uniform in ``noise_range`` and ``t`` uniform in ``0..t*(M)``. A conditional pipeline
    also draws the observation ``y = x + M * n`` (``M`` log-uniform in ``noise_range``) and
    feeds ``sqrt(abar*) * y`` and ``t*(M)`` beside ``x_t`` (noised independently of ``y``).
    """
    total = pipe.scheduler.config.num_train_timesteps
    abar = pipe.scheduler.alphas_cumprod

    def loss_fn(flat: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        x = pipe.transform.to_image(flat)
        b = x.shape[0]
        noise = torch.randn(x.shape, generator=gen)
        cond = level = None
        if pipe.conditional or timesteps == "noise-range":
            m = _log_uniform(b, noise_range, gen)
            t_star = start_timesteps(abar, m)
        if timesteps == "noise-range" and not pipe.conditional:
            t = (torch.rand(b, generator=gen) * (t_star + 1)).long().clamp_max(total - 1)
        else:
            t = torch.randint(0, total, (b,), generator=gen)
        if pipe.conditional:
            y = x + m.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=gen)
            cond = (y / (1 + m**2).sqrt().view(-1, 1, 1, 1)).to(device)
            level = t_star.float().to(device)
        a = abar[t].view(-1, 1, 1, 1)
        x_t = (a.sqrt() * x + (1 - a).sqrt() * noise).to(device)
        pred = pipe.predict_noise(x_t, t.to(device), cond, level)
        return torch.nn.functional.mse_loss(pred, noise.to(device))

    return loss_fn


def train_denoiser(
    cfg: DenoiserTrainConfig,
    out: str | Path,
    *,
    resume: bool = True,
    max_parameters: int | None = None,
) -> dict[str, Any]:
    """Train (or resume) a PGLA or DnCNN denoiser into ``out``; returns the final state.

    ``out`` ends up with ``train_config.json``, ``checkpoints/step-N/`` (a loadable denoiser
    folder each) and ``latest.json``; load with :func:`fedlab.attacks.pgla.denoisers.load_denoiser`.
    ``max_parameters`` caps a model loaded from a folder (``init_from``, a checkpoint; default
    :data:`fedlab.limits.MAX_MODEL_PARAMETERS`).

    Raises
    ------
    FedlabError
        If ``out`` holds a run with another config and ``resume`` is set.
    """
    out = output_folder(out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    latest = read_latest(out) if resume else None
    if latest is not None:
        try:  # a run saved before a config field existed has that field's default
            saved = asdict(DenoiserTrainConfig(**json.loads((out / CONFIG_FILE).read_text())))
        except (TypeError, ValueError, OSError) as exc:  # ValueError: JSON, huge integers
            raise FedlabError(
                f"{out / CONFIG_FILE} is not a training config ({exc}); use a new --out"
            ) from None
        if {k: v for k, v in saved.items() if k not in RESUME_MAY_CHANGE} != {
            k: v for k, v in asdict(cfg).items() if k not in RESUME_MAY_CHANGE
        }:
            raise FedlabError(
                f"{out} holds a run with another config ({out / CONFIG_FILE}); use a new --out, "
                f"or the same config (only {', '.join(RESUME_MAY_CHANGE)} may change)"
            )
        # A resumed run's weights come from its checkpoint: keep the recorded origin.
        cfg = replace(cfg, init_from=saved["init_from"])
    atomic_write_text(out / CONFIG_FILE, json.dumps(asdict(cfg), indent=2) + "\n")
    torch.manual_seed(cfg.seed)
    images, labels = surrogate_images(cfg.surrogate, seed=cfg.seed)
    start, opt_state, history, elapsed = 0, None, [], 0.0
    if latest is not None:
        ckpt = out / latest["path"]
        model, transform = _load_model(cfg, ckpt, max_parameters)
        opt_state = torch.load(ckpt / OPTIMIZER_FILE, weights_only=True)
        start, history, elapsed = latest["step"], latest["history"], latest["elapsed_s"]
        log.info("resuming %s from step %d (%s)", cfg.denoiser, start, ckpt)
    elif cfg.init_from:
        model, transform = _init_model(cfg, max_parameters)
        log.info("%s starts from the weights in %s", cfg.denoiser, cfg.init_from)
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
    if cfg.denoiser != "dncnn":
        pipe = PGLAPipeline(unet=model, scheduler=make_scheduler(), transform=transform)
        noise_range = (cfg.noise_range[0], cfg.noise_range[1])
        loss_fn = pgla_loss(pipe, device, timesteps=cfg.timesteps, noise_range=noise_range)

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


def _new_model(cfg: DenoiserTrainConfig, transform: GradientImageTransform) -> torch.nn.Module:
    if cfg.denoiser == "dncnn":
        return DnCNN(**cfg.model)
    conditional = cfg.denoiser == "pgla-cond"
    return build_unet(sample_size=transform.side, conditional=conditional, **cfg.model)


def _load_model(
    cfg: DenoiserTrainConfig, folder: Path, max_parameters: int | None = None
) -> tuple[torch.nn.Module, GradientImageTransform]:
    if cfg.denoiser == "dncnn":
        return load_dncnn(folder, max_parameters=max_parameters)
    pipe = PGLAPipeline.from_pretrained(folder, max_parameters=max_parameters)
    _check_kind(cfg, pipe, folder)
    return pipe.unet, pipe.transform


def _check_kind(cfg: DenoiserTrainConfig, pipe: PGLAPipeline, folder: Path) -> None:
    if pipe.conditional != (cfg.denoiser == "pgla-cond"):
        kind = "pgla-cond" if pipe.conditional else "pgla"
        raise FedlabError(f"{folder} holds a {kind} denoiser, but the config trains {cfg.denoiser}")


def _init_model(
    cfg: DenoiserTrainConfig, max_parameters: int | None = None
) -> tuple[torch.nn.Module, GradientImageTransform]:
    """The model for ``cfg`` with weights from ``cfg.init_from`` (its transform too).

    A ``pgla-cond`` model may start from a ``pgla`` one: its second input channel and its
    level embedding's output layer start at zero, so it first behaves exactly like the source.
    """
    folder = resolve_checkpoint(cfg.init_from)
    if cfg.denoiser == "dncnn":
        return load_dncnn(folder, max_parameters=max_parameters)
    source = PGLAPipeline.from_pretrained(folder, max_parameters=max_parameters)
    if source.conditional or cfg.denoiser == "pgla":
        _check_kind(cfg, source, folder)
        return source.unet, source.transform
    config = {
        k: v for k, v in source.unet.config.items() if not k.startswith("_") and k in INIT_KEYS
    }
    unet = build_unet(conditional=True, **config)
    weights = source.unet.state_dict()
    conv = weights["conv_in.weight"]
    weights["conv_in.weight"] = torch.cat([conv, torch.zeros_like(conv)], dim=1)
    missing, unexpected = unet.load_state_dict(weights, strict=False)
    if unexpected or any(not k.startswith("class_embedding.") for k in missing):
        raise FedlabError(
            f"cannot start pgla-cond from {folder}: missing {missing}, unexpected {unexpected}"
        )
    torch.nn.init.zeros_(unet.class_embedding.linear_2.weight)
    torch.nn.init.zeros_(unet.class_embedding.linear_2.bias)
    return unet, source.transform


INIT_KEYS = (
    "sample_size",
    "block_out_channels",
    "layers_per_block",
    "down_block_types",
    "up_block_types",
    "norm_num_groups",
    "attention_head_dim",
    "act_fn",
    "time_embedding_type",
    "freq_shift",
    "flip_sin_to_cos",
    "mid_block_scale_factor",
    "downsample_padding",
    "downsample_type",
    "upsample_type",
    "dropout",
    "norm_eps",
    "resnet_time_scale_shift",
    "add_attention",
)
"""``UNet2DModel`` config keys a conditional model copies from its unconditional source."""

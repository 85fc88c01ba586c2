"""CaDM's decoder: a conditional ``UNet2DModel`` restoring decoded, upsampled frames.

Choices (docs/cadm.md says why):

- **input**: 6 channels, the noisy state (3) concatenated with the conditioning frame, i.e.
  the received stream decoded, bit-depth expanded and bicubically upsampled (3, in [-1, 1]);
- **target**: the residual ``z = (clean - upsampled) / RESIDUAL_SCALE`` (images in [0, 1]),
  predicted directly (``prediction_type="sample"``, x0-prediction), so that few deterministic
  DDIM steps from pure noise suffice; the first step is already the model's posterior-mean
  estimate of the residual;
- **codec condition**: the ``(r, b)`` pair as a class embedding (``num_class_embeds`` = number
  of trained pairs). The codec-unaware decoder is the same UNet with one class (label 0 for
  every pair): same architecture, data, steps and seed;
- **sampling**: the project's one loop, :func:`fedlab.diffusion.reverse`, from ``t = 999``
  with ``steps`` DDIM steps (default 1: the x0-estimate at t = 999, i.e. the posterior
  mean; more steps add sampled detail and lowered PSNR, docs/cadm.md), fixed start noise.

A decoder folder is ``unet/`` (``save_pretrained``, safetensors) plus ``cadm.json`` (pairs,
conditioned, steps, residual scale).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from fedlab.atomic import atomic_write_text
from fedlab.diffusion import build_unet, load_unet, make_scheduler, reverse
from fedlab.errors import FedlabError
from fedlab.field_rules import Bool, Int, ListOf, Number, Tuple
from fedlab.model_folder import (
    MAX_CHANNELS,
    MAX_LAYERS,
    ModelSpec,
    load_model,
    read_json_object,
    validate_record,
    where,
)

RESIDUAL_SCALE = 0.1
T_START = 999
DEFAULT_PAIRS = ((2, 8), (2, 6), (4, 8), (4, 5))
META_FILE = "cadm.json"

CADM_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 32,
    "block_out_channels": (16, 32, 32),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "DownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "UpBlock2D", "UpBlock2D"),
    "norm_num_groups": 8,
}
"""The CPU decoder: about 0.27 M parameters, no attention (fully convolutional)."""

CADM_GPU_CONFIG: dict[str, Any] = {
    "sample_size": 64,
    "block_out_channels": (64, 128, 128, 256),
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    "norm_num_groups": 32,
}
"""A larger decoder for a GPU (documented; not trained here)."""

UNET_CONFIGS = {"tiny": "tiny", "cpu": CADM_UNET_CONFIG, "gpu": CADM_GPU_CONFIG}


def diffusion_scheduler() -> Any:
    """The DDPM schedule (T = 1000, linear betas) with x0 (``sample``) prediction."""
    return make_scheduler(prediction_type="sample")


def build_decoder_unet(config: str = "cpu", *, num_pairs: int, conditioned: bool,
                       sample_size: int = 32) -> nn.Module:  # fmt: skip
    """A fresh 6-in/3-out UNet, class-conditional on the pair (1 class when unaware)."""
    if config not in UNET_CONFIGS:
        raise FedlabError(f"unknown decoder UNet {config!r}; known: {', '.join(UNET_CONFIGS)}")
    return build_unet(
        UNET_CONFIGS[config], channels=3, in_channels=6, sample_size=sample_size,
        num_class_embeds=num_pairs if conditioned else 1,
    )  # fmt: skip


def conditional_eps(unet: nn.Module, cond: torch.Tensor, labels: torch.Tensor):  # noqa: ANN201
    """The model function :func:`fedlab.diffusion.reverse` calls: the state concatenated with
    the conditioning frame (x0-prediction under this scheduler, despite the name)."""

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return unet(torch.cat([x, cond], dim=1), t, class_labels=labels).sample

    return eps


def pair_key(r: int, b: int) -> str:
    return f"r{r}b{b}"


@dataclass
class DecoderMeta:
    """What ``cadm.json`` records beside the UNet."""

    pairs: list[list[int]] = field(default_factory=lambda: [list(p) for p in DEFAULT_PAIRS])
    conditioned: bool = True
    steps: int = 1
    residual_scale: float = RESIDUAL_SCALE


class CadmDecoder:
    """Restores decoded, upsampled frames with the conditional UNet.

    Parameters
    ----------
    unet : UNet2DModel
    meta : DecoderMeta
    """

    def __init__(self, unet: nn.Module, meta: DecoderMeta) -> None:
        self.unet = unet.eval()
        self.meta = meta
        self.scheduler = diffusion_scheduler()
        self.factor = 2 ** (len(unet.config.block_out_channels) - 1)

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return [tuple(p) for p in self.meta.pairs]  # type: ignore[misc]

    def label_of(self, r: int, b: int) -> int:
        """The class label of ``(r, b)``; a one-line error for a pair never trained on."""
        if (r, b) not in self.pairs:
            known = ", ".join(f"({p}, {q})" for p, q in self.pairs)
            raise FedlabError(
                f"this decoder was not trained on (r, b) = ({r}, {b}); it knows {known}: encode "
                "with one of those or train a decoder on that pair"
            )
        return self.pairs.index((r, b)) if self.meta.conditioned else 0

    @torch.no_grad()
    def restore(
        self, up: torch.Tensor, r: int, b: int, *, steps: int = 0, batch: int = 4,
        seed: int = 0, progress: bool = False, label: int | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """Restore frames ``up`` (float ``(T, 3, H, W)`` in [0, 1], the bicubic reception).

        ``label`` overrides the pair's class label (tests: a wrong condition).
        """
        steps = steps or self.meta.steps
        label = self.label_of(r, b) if label is None else label
        t, _, h, w = up.shape
        ph, pw = (-h) % self.factor, (-w) % self.factor
        cond_all = F.pad(up * 2 - 1, (0, pw, 0, ph), mode="reflect") if ph or pw else up * 2 - 1
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn((1, 3, h + ph, w + pw), generator=gen)
        out = []
        iterator: Any = range(0, t, batch)
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc="restore", unit="batch")
        for i in iterator:
            cond = cond_all[i : i + batch]
            labels = torch.full((len(cond),), label, dtype=torch.long)
            x = noise.expand(len(cond), -1, -1, -1).clone()
            z = reverse(conditional_eps(self.unet, cond, labels), self.scheduler.config, x,
                        T_START, sampler="ddim", steps=steps)  # fmt: skip
            out.append(z[..., :h, :w] * self.meta.residual_scale)
        return (up + torch.cat(out)).clamp(0, 1)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        self.unet.save_pretrained(folder / "unet", safe_serialization=True)
        atomic_write_text(folder / META_FILE, json.dumps(asdict(self.meta), indent=2))
        return folder

    def model_bytes(self) -> int:
        """Bytes of the weights as shipped (float32 safetensors payload)."""
        return param_bytes(self.unet)


def param_bytes(module: nn.Module) -> int:
    """Bytes of a model's parameters as stored (what a receiver has to hold)."""
    return sum(p.numel() * p.element_size() for p in module.parameters())


DECODER_HINT = "give a folder written by CadmDecoder.save (e.g. a streaming_cadm run's decoder/)"
#: ``cadm.json``'s fields: every one of :class:`DecoderMeta` (an unknown key is refused: the
#: format is fedlab's own). ``r`` and ``b`` as :class:`~fedlab.clients.cadm.codec.CodecSpec`
#: takes them (``b`` 1-8 bits; ``r`` bounded so that a frame side stays sane).
DECODER_META_FIELDS = {
    "pairs": ListOf(Tuple((Int(1, 64), Int(1, 8))), 1, 256),
    "conditioned": Bool(),
    "steps": Int(1, 1000),
    "residual_scale": Number(0, 100, open_low=True),
}


def load_decoder(folder: str | Path, *, max_parameters: int | None = None) -> CadmDecoder:
    """A decoder folder written by :meth:`CadmDecoder.save` (safetensors only).

    ``cadm.json`` is typed and bounded (:data:`DECODER_META_FIELDS`) and the UNet checked
    before anything is allocated (:func:`fedlab.diffusion.load_unet`): 6 channels in, 3 out,
    one class per pair (one when unaware), at most ``max_parameters`` parameters (default
    :data:`fedlab.limits.MAX_MODEL_PARAMETERS`; a command passes its ``--max-parameters``).
    """
    folder = Path(folder)
    label = where(folder, "decoder")
    if not folder.is_dir():
        raise FedlabError(f"{label} does not exist or is not a folder; {DECODER_HINT}")
    if not (folder / META_FILE).exists():
        raise FedlabError(f"{label} has no {META_FILE}; {DECODER_HINT}")
    raw = read_json_object(folder / META_FILE, label, hint=DECODER_HINT)
    fields = validate_record(raw, DECODER_META_FIELDS, label, META_FILE, DECODER_HINT,
                             extra_keys=False)  # fmt: skip
    meta = DecoderMeta(**fields)
    classes = len(meta.pairs) if meta.conditioned else 1
    require = {"in_channels": (6,), "out_channels": (3,), "num_class_embeds": (classes,)}
    unet = load_unet(folder / "unet", max_parameters=max_parameters, require=require,
                     source="decoder UNet")  # fmt: skip
    return CadmDecoder(unet, meta)


def check_init_from(folder: str | Path, pairs: list[tuple[int, int]], conditioned: bool,
                    residual_scale: float = RESIDUAL_SCALE) -> None:  # fmt: skip
    """The pre-Ray check of ``init-from``: a decoder folder trained on the same pairs,
    conditioning and residual scale (one-line errors naming the folder and the mismatch)."""
    label = where(Path(folder), "init-from")
    hint = "give a decoder folder (a streaming_cadm run's decoder/) or leave init-from empty"
    path = Path(folder)
    if not (path / META_FILE).is_file():
        raise FedlabError(f"{label} has no {META_FILE}; {hint}")
    raw = read_json_object(path / META_FILE, label, hint=hint)
    meta = validate_record(raw, DECODER_META_FIELDS, label, META_FILE, hint, extra_keys=False)
    theirs = [tuple(p) for p in meta["pairs"]]
    if theirs != list(pairs) or meta["conditioned"] != conditioned:
        raise FedlabError(
            f"{label} was trained on pairs {theirs} with conditioned={meta['conditioned']}; this "
            f"run has pairs {list(pairs)} with conditioned={conditioned}: use the same pairs and "
            "conditioning, or leave init-from empty"
        )
    if meta["residual_scale"] != residual_scale:
        raise FedlabError(
            f"{label} predicts residuals at scale {meta['residual_scale']}, this run at "
            f"residual-scale={residual_scale}: use the same scale or leave init-from empty"
        )


class SmallSR(ModelMixin, ConfigMixin):
    """The NAS/NEMO-sized baseline: ``out = up + f(up)``, a few residual blocks.

    Input is the bicubic reception in [0, 1]; no codec condition (one network for all pairs).
    """

    @register_to_config
    def __init__(self, width: int = 32, blocks: int = 4) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(width, width, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(width, width, 3, padding=1),
            )  # fmt: skip
            for _ in range(blocks)
        )
        self.tail = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, up: torch.Tensor) -> torch.Tensor:
        h = self.head(up * 2 - 1)
        for block in self.body:
            h = h + block(h)
        return up + self.tail(h) * RESIDUAL_SCALE

    @torch.no_grad()
    def restore(self, up: torch.Tensor, batch: int = 8) -> torch.Tensor:
        return torch.cat([self(up[i : i + batch]) for i in range(0, len(up), batch)]).clamp(0, 1)


def sr_step(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
    """The CNN baseline's step for THE loop: MSE to the clean patch."""
    clean, up = batch[0], batch[1]
    return F.mse_loss(model(up), clean), {}


SMALL_SR_SPEC = ModelSpec(
    name="SmallSR",
    fields={"width": Int(1, MAX_CHANNELS), "blocks": Int(0, MAX_LAYERS)},
    build=SmallSR,
    hint="fix config.json or train the CNN again (simulations/cadm_train.py)",
)
"""How a :class:`SmallSR` folder is validated and built (:mod:`fedlab.model_folder`)."""


def load_small_sr(folder: str | Path, *, max_parameters: int | None = None) -> SmallSR:
    """The baseline CNN from a ``save_pretrained`` folder, checked before anything is allocated
    (:func:`fedlab.model_folder.load_model`)."""
    model = load_model(folder, SMALL_SR_SPEC, max_parameters=max_parameters, source="CNN")
    return model  # type: ignore[return-value]

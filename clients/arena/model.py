"""A small ViT detector with a dense per-token head that tolerates sparse token inputs.

The frame is cut into ``patch_size`` patches (tokens); each token gets its own learned
positional embedding. The encoder may run on any subset of the tokens (the patches of interest),
each keeping the positional embedding of its own position. Before the head, the features of the
tokens that were not processed are filled in from a *memory* (the keyframe's last-layer
features) plus a learned ``stale`` vector that tells the head "this came from the memory".

The head is dense (CenterNet/FCOS-like, no Hungarian matching), a small convolution over the
token grid: every token predicts an
objectness logit (is a box centre inside this patch?) and a box ``(dx, dy, log w, log h)``: the
centre offset from the patch centre in patch units and the size in patch units. Detections are
the 3x3 local maxima of the objectness map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from fedlab.errors import FedlabError
from fedlab.field_rules import Int, Number
from fedlab.model_folder import (
    MAX_CHANNELS,
    MAX_LAYERS,
    MAX_SIDE,
    ModelSpec,
    check_weights,
    load_model,
    pickle_files,
    read_json_object,
    validate_fields,
    where,
)


class Block(nn.Module):
    """Pre-norm transformer block; can also return each token's received attention."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(
        self, x: torch.Tensor, with_importance: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, n, d = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        importance = None
        if with_importance:  # EViT: attention each token receives, averaged over heads/queries
            attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
            out = attn @ v
            importance = attn.mean(dim=(1, 2))
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(out.transpose(1, 2).reshape(b, n, d))
        x = x + self.fc2(F.gelu(self.fc1(self.norm2(x))))
        return x, importance


class PatchStem(nn.Module):
    """Embeds each patch from its own pixels only (so a kept token never sees a dropped one):
    two stride-2 3x3 convolutions on the patch, then a linear layer."""

    def __init__(self, patch_size: int, dim: int, width: int = 32) -> None:
        super().__init__()
        self.patch = patch_size
        self.conv1 = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, stride=2, padding=1)
        side = math.ceil(math.ceil(patch_size / 2) / 2)
        self.linear = nn.Linear(width * side * side + 3 * patch_size**2, dim)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """``(B, K, 3 p^2)`` -> ``(B, K, dim)``."""
        b, k, _ = patches.shape
        x = patches.reshape(b * k, 3, self.patch, self.patch)
        x = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return self.linear(torch.cat([x.reshape(b, k, -1), patches], dim=-1))


@dataclass
class Detections:
    """Boxes ``(n, 4)`` xyxy in pixels and their scores ``(n,)`` of one frame."""

    boxes: np.ndarray
    scores: np.ndarray


class ArenaViT(ModelMixin, ConfigMixin):
    """ViT detector for square frames of ``image_size`` pixels.

    Parameters
    ----------
    image_size : int
    patch_size : int
    dim, depth, heads : int
        Token width, number of blocks, attention heads.
    mlp_ratio : float
    head_hidden : int
        Hidden width of the head (a 3x3 convolution over the token grid, then 1x1).
    """

    @register_to_config
    def __init__(
        self,
        image_size: int = 96,
        patch_size: int = 8,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        head_hidden: int = 64,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise FedlabError(
                f"image-size {image_size} is not a multiple of patch-size {patch_size}"
            )
        if dim % heads:
            raise FedlabError(f"dim {dim} is not a multiple of heads {heads}")
        self.grid = image_size // patch_size
        self.num_tokens = self.grid**2
        self.patch_embed = PatchStem(patch_size, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, self.num_tokens, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.stale = nn.Parameter(torch.zeros(dim))
        self.head = nn.Sequential(
            nn.Conv2d(dim, head_hidden, 3, padding=1), nn.GELU(), nn.Conv2d(head_hidden, 5, 1)
        )

    # -- input ----------------------------------------------------------------------------------
    def patchify(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` floats -> ``(B, N, 3 p^2)`` patches in row-major token order."""
        p = self.config.patch_size
        if frames.ndim != 4 or frames.shape[1] != 3 or frames.numel() == 0:
            raise FedlabError(
                f"expected frames of shape (B, 3, H, W) with B, H, W >= 1, got "
                f"{tuple(frames.shape)}; an empty frame cannot be detected on"
            )
        b, _, h, w = frames.shape
        if h % p or w % p:
            raise FedlabError(
                f"a {h}x{w} frame is not divisible into {p}-px patches; resize or crop it to a "
                f"multiple of {p} (the detector expects {self.config.image_size}x"
                f"{self.config.image_size})"
            )
        if h != self.config.image_size or w != self.config.image_size:
            raise FedlabError(
                f"a {h}x{w} frame does not match the detector's {self.config.image_size}x"
                f"{self.config.image_size}; resize it first"
            )
        x = frames.reshape(b, 3, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, self.num_tokens, 3 * p * p)

    # -- encoder --------------------------------------------------------------------------------
    def encode(self, patches: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder features of the kept tokens only.

        Parameters
        ----------
        patches : torch.Tensor
            ``(B, K, 3 p^2)``: the kept patches (all ``N`` when ``keep`` is None).
        keep : torch.Tensor, optional
            ``(B, K)`` or ``(K,)`` long: the token index of each kept patch, whose positional
            embedding it receives.

        Returns
        -------
        torch.Tensor
            ``(B, K, dim)`` last-layer features (after the final norm).
        """
        x = self.patch_embed(patches) + self._positions(keep, patches.shape[0])
        for block in self.blocks:
            x, _ = block(x)
        return self.norm(x)

    def _positions(self, keep: torch.Tensor | None, batch: int) -> torch.Tensor:
        if keep is None:
            return self.pos_embed
        if keep.ndim == 1:
            return self.pos_embed[:, keep]
        return self.pos_embed.expand(batch, -1, -1).gather(
            1, keep.unsqueeze(-1).expand(-1, -1, self.pos_embed.shape[-1])
        )

    def assemble(
        self, kept: torch.Tensor, keep: torch.Tensor, memory: torch.Tensor
    ) -> torch.Tensor:
        """Full ``(B, N, dim)`` features: ``kept`` at ``keep``, ``memory + stale`` elsewhere."""
        full = memory + self.stale
        if keep.ndim == 1:
            full = full.clone()
            full[:, keep] = kept
            return full
        return full.scatter(1, keep.unsqueeze(-1).expand(-1, -1, kept.shape[-1]), kept)

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Head outputs ``(B, N, 5)``: objectness logit, dx, dy, log w, log h.

        The head is a 3x3 convolution over the token grid, so each token's box also sees its
        neighbours' features (kept or from the memory)."""
        b, n, d = features.shape
        grid = features.transpose(1, 2).reshape(b, d, self.grid, self.grid)
        return self.head(grid).reshape(b, 5, n).transpose(1, 2)

    def forward(
        self,
        frames: torch.Tensor,
        keep: torch.Tensor | None = None,
        memory: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Head outputs and full features of ``frames`` (all tokens, or ``keep`` + ``memory``)."""
        patches = self.patchify(frames)
        if keep is None:
            features = self.encode(patches)
        else:
            if memory is None:
                raise FedlabError("pruned inference needs the keyframe's features as memory")
            if keep.ndim == 1:
                kept_patches = patches[:, keep]
            else:
                kept_patches = patches.gather(
                    1, keep.unsqueeze(-1).expand(-1, -1, patches.shape[-1])
                )
            features = self.assemble(self.encode(kept_patches, keep), keep, memory)
        return self.predict(features), features

    def forward_evit(
        self, frames: torch.Tensor, keep_count: int, prune_after: int = 1
    ) -> tuple[torch.Tensor, int]:
        """In-model pruning (EViT-style baseline) on a full frame, batch 1.

        After block ``prune_after`` the ``keep_count`` tokens that receive the most attention go
        on through the remaining blocks, with one extra token fusing the others (their
        attention-weighted mean); the others keep their features from that block for the head.

        Returns
        -------
        (head outputs ``(1, N, 5)``, tokens processed summed over blocks)
        """
        patches = self.patchify(frames)
        x = self.patch_embed(patches) + self.pos_embed
        n = x.shape[1]
        processed = 0
        importance = None
        for i, block in enumerate(self.blocks):
            if i < prune_after:
                x, importance = block(x, with_importance=i == prune_after - 1)
                processed += n
                continue
            if i == prune_after:
                assert importance is not None
                order = importance[0].argsort(descending=True)
                top, rest = order[:keep_count], order[keep_count:]
                parked = x
                if len(rest):
                    weights = importance[0, rest] / importance[0, rest].sum().clamp_min(1e-12)
                    fused = (x[:, rest] * weights[:, None]).sum(1, keepdim=True)
                    x = torch.cat([x[:, top], fused], dim=1)
                else:
                    x = x[:, top]
            x, _ = block(x)
            processed += x.shape[1]
        if prune_after >= len(self.blocks):
            return self.predict(self.norm(x)), processed
        full = parked.clone()
        full[:, top] = x[:, :keep_count]
        return self.predict(self.norm(full)), processed


# -- folders --------------------------------------------------------------------------------------
DETECTOR_HINT = (
    "give a folder written by ArenaViT.save_pretrained (e.g. by simulations/arena_study.py train)"
)
#: The weights of a run folder (``streaming_arena``'s global model) and of a detector folder.
RUN_WEIGHTS = "model.safetensors"
DETECTOR_WEIGHTS = "diffusion_pytorch_model.safetensors"


def _detector_problem(fields: dict[str, Any]) -> str | None:
    image, patch = fields.get("image_size", 96), fields.get("patch_size", 8)
    dim, heads = fields.get("dim", 64), fields.get("heads", 4)
    if image % patch:
        return f"field image_size {image} is not a multiple of patch_size {patch}"
    if dim % heads:
        return f"field dim {dim} is not a multiple of heads {heads}"
    return None


DETECTOR_SPEC = ModelSpec(
    name="ArenaViT",
    fields={
        "image_size": Int(1, MAX_SIDE),
        "patch_size": Int(1, 1024),
        "dim": Int(1, MAX_CHANNELS),
        "depth": Int(1, MAX_LAYERS),
        "heads": Int(1, 1024),
        "mlp_ratio": Number(0, 64, open_low=True),
        "head_hidden": Int(1, MAX_CHANNELS),
    },
    build=ArenaViT,
    check=_detector_problem,
    hint=f"fix config.json or {DETECTOR_HINT}",
)
"""How a detector folder is validated and built (:mod:`fedlab.model_folder`)."""


def load_detector(folder: str | Path, *, max_parameters: int | None = None) -> ArenaViT:
    """A detector folder (``save_pretrained``: config.json + safetensors), checked before
    anything is allocated (:func:`fedlab.model_folder.load_model`); no hub access.

    ``max_parameters`` raises the cap (:data:`fedlab.limits.MAX_MODEL_PARAMETERS`); a command
    passes its ``--max-parameters`` here.
    """
    model = load_model(folder, DETECTOR_SPEC, max_parameters=max_parameters, source="detector")
    return model  # type: ignore[return-value]


def check_init_from(
    folder: str | Path, fields: dict[str, Any], *, max_parameters: int | None = None
) -> int:
    """The pre-Ray check of ``init-from``: a run folder (its ``model.safetensors``) or a detector
    folder (its safetensors; its config.json typed and bounded) whose tensors fit the detector
    the run config builds (``fields``: :data:`DETECTOR_SPEC` arguments). Nothing is allocated:
    the detector is built on the meta device, the weights' header read. Returns the parameter
    count.
    """
    folder = Path(folder)
    label = where(folder, "init-from")
    if not folder.is_dir():
        raise FedlabError(
            f"{label} is not a folder; give a run folder or a detector folder "
            "(ArenaViT.save_pretrained), or leave init-from empty"
        )
    if (folder / RUN_WEIGHTS).exists():
        weights = folder / RUN_WEIGHTS
    elif (folder / DETECTOR_WEIGHTS).exists():
        weights = folder / DETECTOR_WEIGHTS
        # A detector folder's config is not what the run builds, but a broken one means the
        # folder is not what the user thinks it is.
        validate_fields(read_json_object(folder / "config.json", label), DETECTOR_SPEC, label)
    else:
        pickles = pickle_files(folder)
        kind = f"only pickled weights ({', '.join(pickles[:3])})" if pickles else "no weights"
        raise FedlabError(
            f"{label} holds {kind}; it needs {RUN_WEIGHTS} (a run folder) or "
            f"{DETECTOR_WEIGHTS} (a detector folder): safetensors only, never a pickle"
        )
    # The run config's detector keys bounded like a folder's (a vit-depth of 10**6 would take
    # minutes to build even on the meta device).
    fields = validate_fields(fields, DETECTOR_SPEC, label, file="the run config's detector")
    count, _ = check_weights(weights, DETECTOR_SPEC, fields, label, max_parameters=max_parameters)
    return count


# -- targets and decoding -------------------------------------------------------------------------
def dense_targets(
    boxes: np.ndarray, image_size: int, patch_size: int, centre_radius: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-token targets of one frame's boxes (FCOS-style centre sampling).

    A token is positive for a box when its patch centre lies within ``centre_radius`` patches
    (and inside the box) of the box centre, and always for the token holding the centre; a
    token claimed by two boxes belongs to the smaller. Positives regress their own offset.

    Returns
    -------
    objectness : ``(N,)`` float32, 1 at positive tokens
    box : ``(N, 4)`` float32 ``dx, dy, log w, log h`` in patch units (box centre minus the
        token centre, and the size) at positive tokens
    region : ``(N,)`` float32, 1 at tokens overlapping any box (used to bias token dropping)
    """
    g = image_size // patch_size
    obj = np.zeros((g, g), np.float32)
    reg = np.zeros((g, g, 4), np.float32)
    region = np.zeros((g, g), np.float32)
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    centres = np.arange(g) + 0.5
    for j in np.argsort(areas)[::-1] if len(boxes) else []:  # larger first, smaller overwrite
        x1, y1, x2, y2 = boxes[j] / patch_size
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        rx = min(centre_radius, (x2 - x1) / 2)
        ry = min(centre_radius, (y2 - y1) / 2)
        mask = np.outer(np.abs(centres - cy) <= ry, np.abs(centres - cx) <= rx)
        mask[min(int(cy), g - 1), min(int(cx), g - 1)] = True
        rows, cols = np.nonzero(mask)
        obj[rows, cols] = 1.0
        reg[rows, cols] = np.stack(
            [cx - centres[cols], cy - centres[rows],
             np.full(len(rows), math.log(x2 - x1)), np.full(len(rows), math.log(y2 - y1))], 1
        )  # fmt: skip
        region[int(y1) : math.ceil(y2), int(x1) : math.ceil(x2)] = 1.0
    return obj.reshape(-1), reg.reshape(-1, 4), region.reshape(-1)


def detection_loss(
    out: torch.Tensor,
    obj: torch.Tensor,
    box: torch.Tensor,
    pos_weight: float = 4.0,
    box_weight: float = 2.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Objectness BCE (positives weighted) plus ``box_weight`` x smooth-L1 box regression at
    the positive tokens."""
    logits = out[..., 0]
    cls = F.binary_cross_entropy_with_logits(
        logits, obj, pos_weight=torch.tensor(pos_weight, device=out.device)
    )
    pos = obj > 0.5
    if pos.any():
        reg = F.smooth_l1_loss(out[..., 1:][pos], box[pos], beta=0.1)
    else:
        reg = out[..., 1:].sum() * 0.0
    return cls + box_weight * reg, {"obj-loss": cls.item(), "box-loss": reg.item()}


@torch.no_grad()
def decode(
    out: torch.Tensor, image_size: int, patch_size: int, *, threshold: float = 0.01, top: int = 30
) -> list[Detections]:
    """Detections per frame from head outputs ``(B, N, 5)``: 3x3 peaks of the objectness."""
    g = image_size // patch_size
    probs = torch.sigmoid(out[..., 0]).reshape(-1, 1, g, g)
    peaks = (probs == F.max_pool2d(probs, 3, 1, 1)) & (probs > threshold)
    result = []
    for b in range(out.shape[0]):
        idx = torch.nonzero(peaks[b, 0].reshape(-1)).squeeze(1)
        scores = probs[b, 0].reshape(-1)[idx]
        if len(idx) > top:
            best = scores.argsort(descending=True)[:top]
            idx, scores = idx[best], scores[best]
        o = out[b, idx, 1:]
        cx = (idx % g + 0.5 + o[:, 0]) * patch_size
        cy = (idx // g + 0.5 + o[:, 1]) * patch_size
        w = torch.exp(o[:, 2].clamp(max=5)) * patch_size
        h = torch.exp(o[:, 3].clamp(max=5)) * patch_size
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        boxes = boxes.clamp(0, image_size)
        result.append(Detections(boxes.numpy().astype(np.float32), scores.numpy()))
    return result


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """``uint8 (..., H, W, 3)`` -> float ``(B, 3, H, W)`` in [0, 1]."""
    arr = np.asarray(frames)
    if arr.size == 0:
        raise FedlabError(f"an empty frame (shape {arr.shape}) cannot be detected on")
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise FedlabError(f"frames must be (H, W, 3) or (T, H, W, 3) RGB, got shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255

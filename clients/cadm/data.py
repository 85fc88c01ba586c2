"""CaDM's clips: training clips (camera pans over photos, bigbuckbunny, procedural), validation
and test clips, and the precomputed patch pairs the decoders train on.

* **Training clips** (``train_clips``), closer to the real test content than procedural video
  alone: clip ``k`` is a camera pan over a bundled training photo when ``k mod 4`` is 0 or 2
  (:func:`photo_pan`: the Diff-SR corpus's photos, never a test photo), a bigbuckbunny crop
  when it is 1 (read at 320x180, a 4x antialiased downscale by libswscale; 96x96 windows,
  16-frame segments from frames 0-111) and a procedural sprite/pan clip from Arena's
  generator when it is 3. Clip ``k`` goes to client ``k mod N``: the clients hold different
  clips (with 4 clients, different kinds of content). ``carphone_distorted`` is never used:
  it is the carphone test clip.
* **Validation clips** (the server's per-round check and the decoders' validation; never in
  a training clip): bigbuckbunny frames 112-127 (176x320, rows 2-177) and a procedural clip
  from a separate seed stream.
* **Test clips** (``test_clip``, never trained on): ``carphone`` (176x144 as shipped) and
  ``bikes`` (640x272 read at 320x136, centre-cropped to 160x128).

A client's training patches are computed once (:func:`patch_tensors`): every clip goes
through the real encoder (:func:`fedlab.clients.cadm.codec.encode`) at every ``(r, b)`` pair
and CRF, is decoded and upsampled, and aligned ``(clean, upsampled, pair index)`` patches are
cut at positions drawn from the seed. With a cache folder they are stored there as
safetensors under a name derived from everything that made them, so rounds, processes and
resumed runs load them instead of encoding again.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from fedlab.clients.cadm.codec import CodecSpec, encode, receive, to_tensor
from torch.utils.data import Dataset

from fedlab.client import derive_seed
from fedlab.errors import FedlabError

TEST_CLIPS = ("carphone", "bikes")
BBB_SIZE = (180, 320)
BBB_TRAIN_FRAMES = 112
BBB_VALIDATION_FRAMES = (112, 128)
CLIP_SIDE = 96
CLIP_FRAMES = 16
PAN_SPEED = 2.5
"""Largest camera speed of a photo pan, pixels per frame along each axis."""
PAN_PHOTOS = (
    "astronaut", "camera", "coins", "rocket", "hubble_deep_field", "brick", "grass", "moon",
    "retina", "immunohistochemistry", "text", "page", "china", "cell",
)  # fmt: skip
"""The Diff-SR training photos (``clients.sr.data.TRAIN_PHOTOS``) large enough to pan over
(``microaneurysms``, 102 px, is not); never a test photo."""
PHOTO_SIDE = 256
"""Shorter side of the photos panned over (the Diff-SR corpus's size)."""
PATCH_FORMAT = 2
"""Bumped whenever the patch recipe changes, so that an old cache entry is never reused."""


@functools.lru_cache(maxsize=1)
def _bigbuckbunny() -> np.ndarray:
    from fedlab.clients.video import bundled_clip

    return bundled_clip("bigbuckbunny", size=BBB_SIZE)


def procedural_clip(seed: int, *, side: int = CLIP_SIDE, frames: int = CLIP_FRAMES) -> np.ndarray:
    """A procedural pan/sprite clip from Arena's generator (``uint8 (T, side, side, 3)``)."""
    from fedlab.clients.procedural_video import VideoSpec, generate_video

    return generate_video(seed, VideoSpec(size=side, frames=frames)).frames


def bbb_crop(index: int, seed: int, *, side: int = CLIP_SIDE, frames: int = CLIP_FRAMES,
             first: int = 0, last: int = BBB_TRAIN_FRAMES) -> np.ndarray:  # fmt: skip
    """A ``side`` x ``side`` window of bigbuckbunny (320x180) over ``frames`` frames in
    ``first .. last - 1``, placed by ``(seed, index)``."""
    clip = _bigbuckbunny()
    rng = np.random.default_rng(derive_seed(seed, "cadm-bbb", index) % 2**32)
    t0 = int(rng.integers(first, max(first + 1, last - frames + 1)))
    y = int(rng.integers(0, clip.shape[1] - side + 1))
    x = int(rng.integers(0, clip.shape[2] - side + 1))
    return np.ascontiguousarray(clip[t0 : t0 + frames, y : y + side, x : x + side])


def photo_pan(index: int, seed: int, *, side: int = CLIP_SIDE,
              frames: int = CLIP_FRAMES) -> np.ndarray:  # fmt: skip
    """A camera pan over a bundled training photo: a ``side`` x ``side`` window moving at a
    constant sub-pixel velocity (up to :data:`PAN_SPEED` px per frame on each axis, bilinear
    resampling), photo, start and velocity placed by ``(seed, index)``. ``uint8 (T, s, s, 3)``."""
    from fedlab.image_io import bundled_photo

    rng = np.random.default_rng(derive_seed(seed, "cadm-pan", index) % 2**32)
    photo = bundled_photo(PAN_PHOTOS[int(rng.integers(len(PAN_PHOTOS)))], PHOTO_SIDE)
    _, h, w = photo.shape
    velocity = rng.uniform(-PAN_SPEED, PAN_SPEED, size=2) * (frames - 1)
    room = np.array([h - side - 1, w - side - 1]) - np.abs(velocity)
    if (room < 0).any():
        raise FedlabError(f"photo {h}x{w} is too small for a {side}-px pan over {frames} frames")
    start = rng.uniform(0, room) + np.maximum(-velocity, 0)
    ys = torch.arange(side, dtype=torch.float64)
    out = []
    for i in range(frames):
        y, x = start + velocity * i / max(1, frames - 1)
        gy = (ys + y + 0.5) / h * 2 - 1  # pixel centres in grid_sample's [-1, 1]
        gx = (ys + x + 0.5) / w * 2 - 1
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None].float()
        frame = F.grid_sample(photo[None], grid, mode="bilinear", align_corners=False)[0]
        out.append(frame)
    clip = (torch.stack(out).clamp(0, 1) * 255).round().to(torch.uint8)
    return np.ascontiguousarray(clip.permute(0, 2, 3, 1).numpy())


def train_clips(count: int, seed: int) -> list[np.ndarray]:
    """``count`` training clips: pans (``k mod 4`` in 0, 2), bigbuckbunny (1), procedural (3)."""
    kinds = {0: "pan", 1: "bbb", 2: "pan", 3: "procedural"}
    clips = []
    for k in range(count):
        kind = kinds[k % 4]
        if kind == "pan":
            clips.append(photo_pan(k, seed))
        elif kind == "bbb":
            clips.append(bbb_crop(k, seed))
        else:
            clips.append(procedural_clip(derive_seed(seed, "cadm-train", k)))
    return clips


def client_clips(partition_id: int, num_partitions: int, count: int, seed: int) -> list[np.ndarray]:
    """The training clips of one client: clips ``k`` with ``k mod N == partition_id``."""
    if count < num_partitions:
        raise FedlabError(
            f"train-clips={count} is fewer than the {num_partitions} clients; give each client "
            f"a clip (train-clips >= {num_partitions})"
        )
    return train_clips(count, seed)[partition_id::num_partitions]


VALIDATION_CLIPS = ("bigbuckbunny-112-127", "procedural-heldout")


def validation_clips(seed: int, frames: int = 16) -> list[np.ndarray]:
    """Clips never trained on (named by :data:`VALIDATION_CLIPS`): bigbuckbunny frames
    112-127 (176x320) and a procedural clip from its own seed stream (8 frames at 96x96), each
    cut to its first ``frames`` frames."""
    first, last = BBB_VALIDATION_FRAMES
    bbb = np.ascontiguousarray(_bigbuckbunny()[first : min(last, first + frames), 2:178])
    procedural = procedural_clip(derive_seed(seed, "cadm-val", 0), frames=8)[:frames]
    return [bbb, np.ascontiguousarray(procedural)]


def test_clip(name: str, frames: int = 30) -> np.ndarray:
    """A test clip (never trained on): carphone 176x144 as shipped, bikes at 160x128."""
    from fedlab.clients.video import bundled_clip

    if name == "carphone":
        return bundled_clip("carphone", max_frames=frames)
    if name == "bikes":
        clip = bundled_clip("bikes", max_frames=frames, size=(136, 320))
        return np.ascontiguousarray(clip[:, 4:132, 80:240])
    raise FedlabError(f"unknown test clip {name!r}; known: {', '.join(TEST_CLIPS)}")


class PairPatches(Dataset):
    """Random aligned patches of (clean, decoded-upsampled) frames with the pair's index.

    Parameters
    ----------
    clips : list of numpy.ndarray
        ``uint8 (T, H, W, 3)`` clean clips.
    pairs : list of (r, b)
    crfs : list of int
        Every clip is encoded at every pair and CRF (x264).
    patch : int
        Patch side in pixels.
    count : int
        Patches in one pass (drawn by ``seed``).
    seed : int
    """

    def __init__(self, clips: list[np.ndarray], pairs: list[tuple[int, int]], crfs: list[int],
                 patch: int, count: int, seed: int, codec: str = "x264") -> None:  # fmt: skip
        self.clean: list[torch.Tensor] = []
        self.up: list[torch.Tensor] = []
        self.labels: list[int] = []
        for clip in clips:
            clean = (to_tensor(clip) * 255).round().to(torch.uint8)
            for label, (r, b) in enumerate(pairs):
                for crf in crfs:
                    up = receive(encode(clip, CodecSpec(r=r, b=b, crf=crf, codec=codec)))
                    self.clean.append(clean)
                    self.up.append((up * 255).round().to(torch.uint8))
                    self.labels.append(label)
        if not self.clean:
            raise FedlabError("no clips to draw patches from; give at least one clip")
        self.patch = patch
        rng = np.random.default_rng(seed % 2**32)
        self.index = []
        for _ in range(count):
            v = int(rng.integers(len(self.clean)))
            t, _, h, w = self.clean[v].shape
            if h < patch or w < patch:
                raise FedlabError(f"patch {patch} is larger than the {h}x{w} clips")
            self.index.append((v, int(rng.integers(t)), int(rng.integers(h - patch + 1)),
                               int(rng.integers(w - patch + 1))))  # fmt: skip

    def __len__(self) -> int:
        return len(self.index)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every patch at once: ``clean`` and ``up`` ``uint8 (N, 3, p, p)``, ``label`` (N,)."""
        p, at = self.patch, self.index
        clean = torch.stack([self.clean[v][t, :, y : y + p, x : x + p] for v, t, y, x in at])
        up = torch.stack([self.up[v][t, :, y : y + p, x : x + p] for v, t, y, x in at])
        label = torch.tensor([self.labels[v] for v, *_ in self.index], dtype=torch.long)
        return {"clean": clean.contiguous(), "up": up.contiguous(), "label": label}

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        v, t, y, x = self.index[i]
        p = self.patch
        clean = self.clean[v][t, :, y : y + p, x : x + p].float() / 255
        up = self.up[v][t, :, y : y + p, x : x + p].float() / 255
        return clean, up, torch.tensor(self.labels[v])


class PatchTensors(Dataset):
    """Precomputed patch pairs (:meth:`PairPatches.tensors`), served as ``PairPatches`` does."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.clean, self.up, self.label = tensors["clean"], tensors["up"], tensors["label"]
        n = len(self.label)
        kinds = (self.clean.dtype, self.up.dtype, self.label.dtype)
        if kinds != (torch.uint8, torch.uint8, torch.int64) or self.clean.ndim != 4:
            raise FedlabError(
                f"patch tensors hold dtypes {kinds} and clean shape {tuple(self.clean.shape)}; "
                "expected uint8 (N, 3, p, p) patches and int64 labels: delete the cache file"
            )
        if self.clean.shape[0] != n or self.up.shape != self.clean.shape or n == 0:
            raise FedlabError(
                f"patch tensors disagree in shape (clean {tuple(self.clean.shape)}, up "
                f"{tuple(self.up.shape)}, {n} labels); delete the cache file to rebuild it"
            )

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.clean[i].float() / 255, self.up[i].float() / 255, self.label[i]


def patch_tensors(
    partition_id: int, num_partitions: int, *, clips: int, seed: int, pairs: list[tuple[int, int]],
    crfs: list[int], patch: int, count: int, cache: str | Path = "",
) -> PatchTensors:  # fmt: skip
    """Client ``partition_id``'s training patches, computed once (and stored in ``cache``).

    The file name is a digest of every argument that shapes the patches (and
    :data:`PATCH_FORMAT`); the file holds tensors only (safetensors), checked on load.
    """
    recipe = {"format": PATCH_FORMAT, "client": partition_id, "clients": num_partitions,
              "clips": clips, "seed": seed, "pairs": [list(p) for p in pairs],
              "crfs": list(crfs), "patch": patch, "count": count}  # fmt: skip
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:20]
    path = Path(cache) / f"cadm-patches-{digest}.safetensors" if cache else None
    if path is not None and path.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(path)
        except (SafetensorError, OSError) as err:
            raise FedlabError(
                f"patch cache {str(path)!r} is unreadable ({err}); delete it"
            ) from None
        if set(tensors) != {"clean", "up", "label"}:
            raise FedlabError(f"patch cache {str(path)!r} holds {sorted(tensors)}; delete it")
        return PatchTensors(tensors)
    made = PairPatches(client_clips(partition_id, num_partitions, clips, seed), pairs, crfs,
                       patch, count, derive_seed(seed, "cadm-patches", partition_id))  # fmt: skip
    tensors = made.tensors()
    if path is not None:
        from safetensors.torch import save_file

        from fedlab.atomic import atomic_write

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=None))
    return PatchTensors(tensors)

"""CaDM's clips: training clips (procedural + bigbuckbunny crops), test clips, patch pairs.

* **Training clips** (``train_clips``): procedural sprite/pan clips from
  :func:`fedlab.clients.procedural_video.generate_video` (Arena's generator, reused, with its
  own seeds) and crops of the bundled ``bigbuckbunny`` clip (read at 320x180, a 4x antialiased
  downscale by libswscale; 96x96 windows, 16-frame segments from frames 0-111). Clip ``k`` of
  the list goes to client ``k mod N``: the clients hold different clips.
* **Validation clips** (the server's per-round check): one procedural clip from a separate
  seed stream and bigbuckbunny frames 112-127 (never in a training clip).
* **Test clips** (``test_clip``, never trained on): ``carphone`` (176x144 as shipped) and
  ``bikes`` (640x272 read at 320x136, centre-cropped to 160x128).

A :class:`PairPatches` dataset sends every clip through the real encoder
(:func:`fedlab.clients.cadm.codec.encode`) at every ``(r, b)`` pair and CRF, decodes and
upsamples it, and draws random aligned patches ``(clean, upsampled, pair index)``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from fedlab.clients.cadm.codec import CodecSpec, encode, receive, to_tensor
from torch.utils.data import Dataset

from fedlab.client import derive_seed
from fedlab.errors import FedlabError

TEST_CLIPS = ("carphone", "bikes")
BBB_SIZE = (180, 320)
BBB_TRAIN_FRAMES = 112
CLIP_SIDE = 96
CLIP_FRAMES = 16


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


def train_clips(count: int, seed: int) -> list[np.ndarray]:
    """``count`` training clips, alternating procedural and bigbuckbunny crops."""
    clips = []
    for k in range(count):
        if k % 2 == 0:
            clips.append(procedural_clip(derive_seed(seed, "cadm-train", k)))
        else:
            clips.append(bbb_crop(k, seed))
    return clips


def client_clips(partition_id: int, num_partitions: int, count: int, seed: int) -> list[np.ndarray]:
    """The training clips of one client: clips ``k`` with ``k mod N == partition_id``."""
    if count < num_partitions:
        raise FedlabError(
            f"train-clips={count} is fewer than the {num_partitions} clients; give each client "
            f"a clip (train-clips >= {num_partitions})"
        )
    return train_clips(count, seed)[partition_id::num_partitions]


def validation_clips(seed: int) -> list[np.ndarray]:
    """Clips the server checks each round: disjoint from every training clip."""
    return [
        procedural_clip(derive_seed(seed, "cadm-val", 0), frames=4),
        bbb_crop(0, seed + 1, frames=4, first=BBB_TRAIN_FRAMES, last=132),
    ]


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

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        v, t, y, x = self.index[i]
        p = self.patch
        clean = self.clean[v][t, :, y : y + p, x : x + p].float() / 255
        up = self.up[v][t, :, y : y + p, x : x + p].float() / 255
        return clean, up, torch.tensor(self.labels[v])

"""Patches of interest (PoIs): where objects will be in the next frame, and which tokens to send.

**Ours** (the Arena paper's exact sampling distribution is not public; this is our
reconstruction). Each confident detection of the previous frame, with its velocity from
frame-to-frame matching, predicts its box centre ``dt`` frames ahead: ``c + v dt``. Around that
centre we place a 2-D Gaussian over the token grid whose spread grows with the box's size and
speed, ``sigma = size_gain * side + speed_gain * |v| dt + base_sigma`` per axis; each object
contributes unit mass. ``budget * N`` tokens are sent per non-keyframe: ``(1 - explore)`` of
them drawn without replacement in proportion to that distribution (Gumbel top-k), the rest
exploration patches drawn uniformly, half of them from the frame's border ring (where new
objects enter). The share of the distribution's mass the drawn tokens cover is the *coverage*
the adaptive keyframe rule watches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fedlab.errors import FedlabError


def check_budget(budget: float) -> float:
    """``budget`` as a share of tokens in (0, 1], or a one-line error saying what is allowed."""
    if not isinstance(budget, int | float) or not np.isfinite(budget) or not 0 < budget <= 1:
        raise FedlabError(
            f"PoI budget {budget!r} is not a share of tokens in (0, 1]; use e.g. 0.3 (30 % of "
            "the patches), or 1 to send every patch"
        )
    return float(budget)


@dataclass(frozen=True)
class SamplerConfig:
    """Parameters of our PoI distribution and sampling (see the module docstring).

    Parameters
    ----------
    budget : float
        Tokens sent per non-keyframe, as a share of all tokens, in (0, 1].
    explore : float
        Share of the budget spent on exploration patches.
    size_gain, speed_gain, base_sigma : float
        Gaussian spread in pixels: ``size_gain * side + speed_gain * speed * dt + base_sigma``.
    min_score : float
        Detections below this score do not attract PoIs.
    """

    budget: float = 0.3
    explore: float = 0.15
    size_gain: float = 0.35
    speed_gain: float = 1.0
    base_sigma: float = 3.0
    min_score: float = 0.3

    def __post_init__(self) -> None:
        check_budget(self.budget)
        if not 0 <= self.explore <= 1:
            raise FedlabError(f"explore share {self.explore} must lie in [0, 1]")
        if min(self.size_gain, self.speed_gain, self.base_sigma) < 0 or self.base_sigma == 0:
            raise FedlabError("size-gain and speed-gain must be >= 0 and base-sigma > 0")


@dataclass
class Track:
    """A detection carried to the next frame: box (xyxy, pixels), velocity (px/frame), score."""

    box: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))
    score: float = 1.0


def predicted_centre(track: Track, dt: float = 1.0) -> np.ndarray:
    """Box centre extrapolated ``dt`` frames ahead at constant velocity."""
    centre = np.array([(track.box[0] + track.box[2]) / 2, (track.box[1] + track.box[3]) / 2])
    return centre + track.velocity * dt


def poi_distribution(
    tracks: list[Track], grid: int, patch: int, config: SamplerConfig, dt: float = 1.0
) -> np.ndarray:
    """Probability of each of the ``grid * grid`` tokens holding an object ``dt`` frames ahead.

    Sums to 1; uniform when there is no confident track.
    """
    live = [t for t in tracks if t.score >= config.min_score]
    if not live:
        return np.full(grid * grid, 1.0 / grid**2)
    boxes = np.array([t.box for t in live], np.float64)
    velocity = np.array([t.velocity for t in live], np.float64)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 + velocity * dt
    sigma = (config.size_gain * (boxes[:, 2:] - boxes[:, :2])
             + config.speed_gain * np.abs(velocity) * dt + config.base_sigma)  # fmt: skip
    tokens = (np.arange(grid) + 0.5) * patch
    gx = np.exp(-0.5 * ((tokens[None] - centre[:, :1]) / sigma[:, :1]) ** 2)  # (objects, grid)
    gy = np.exp(-0.5 * ((tokens[None] - centre[:, 1:]) / sigma[:, 1:]) ** 2)
    mass = gy.sum(1) * gx.sum(1)
    ok = mass > 0
    if not ok.any():
        return np.full(grid * grid, 1.0 / grid**2)
    # each object contributes unit mass: sum_k outer(gy_k, gx_k) / mass_k
    prob = np.einsum("ki,kj->ij", gy[ok] / mass[ok, None], gx[ok])
    return (prob / prob.sum()).reshape(-1)


def border_tokens(grid: int) -> np.ndarray:
    """Indices of the tokens on the frame's outer ring."""
    ring = np.zeros((grid, grid), bool)
    ring[0], ring[-1], ring[:, 0], ring[:, -1] = True, True, True, True
    return np.flatnonzero(ring)


def sample_pois(
    prob: np.ndarray, config: SamplerConfig, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Draw the tokens to send for one frame.

    Parameters
    ----------
    prob : numpy.ndarray
        ``(N,)`` PoI distribution (from :func:`poi_distribution`), ``N`` a square.
    config : SamplerConfig
    rng : numpy.random.Generator

    Returns
    -------
    (sorted token indices, coverage: the mass of ``prob`` on them)
    """
    n = prob.shape[0]
    grid = int(round(np.sqrt(n)))
    count = max(1, round(check_budget(config.budget) * n))
    n_explore = min(count, round(config.explore * count))
    n_poi = count - n_explore
    chosen = np.zeros(n, bool)
    if n_poi:
        with np.errstate(divide="ignore"):
            keys = np.log(prob) + rng.gumbel(size=n)
        chosen[np.argsort(-keys, kind="stable")[:n_poi]] = True
    if n_explore:
        ring = np.setdiff1d(border_tokens(grid), np.flatnonzero(chosen))
        n_ring = min(len(ring), n_explore // 2)
        if n_ring:
            chosen[rng.choice(ring, n_ring, replace=False)] = True
        rest = np.flatnonzero(~chosen)
        chosen[rng.choice(rest, min(len(rest), n_explore - n_ring), replace=False)] = True
    keep = np.flatnonzero(chosen)
    return keep, float(prob[keep].sum())


def box_tokens(boxes: np.ndarray, grid: int, patch: int) -> np.ndarray:
    """Sorted indices of the tokens any of ``boxes`` (xyxy pixels) overlaps."""
    mask = np.zeros((grid, grid), bool)
    for x1, y1, x2, y2 in np.asarray(boxes).reshape(-1, 4):
        c0, r0 = max(int(x1 // patch), 0), max(int(y1 // patch), 0)
        c1, r1 = min(int(np.ceil(x2 / patch)), grid), min(int(np.ceil(y2 / patch)), grid)
        mask[r0:r1, c0:c1] = True
    return np.flatnonzero(mask)


def match_tracks(
    previous: list[Track], boxes: np.ndarray, scores: np.ndarray, min_score: float,
    momentum: float = 0.5,
) -> list[Track]:  # fmt: skip
    """Tracks of the current detections, velocities from greedy nearest-centre matching.

    Detections are taken by descending score; each is matched to the nearest unmatched
    previous track whose centre lies closer than the detection's larger side, and gets the
    centre displacement as velocity (smoothed with ``momentum``); unmatched ones start at 0.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    confident = scores >= min_score
    boxes, scores = boxes[confident], scores[confident]
    order = np.argsort(-scores, kind="stable")
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    reach = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    if previous:
        prev = np.array([(t.box[:2] + t.box[2:]) / 2 for t in previous])
        dist = np.linalg.norm(centres[:, None] - prev[None], axis=2)
    tracks: list[Track] = []
    used = np.zeros(len(previous), bool)
    for i in order:
        velocity = np.zeros(2)
        if previous:
            d = np.where(used, np.inf, dist[i])
            j = int(np.argmin(d))
            if d[j] < reach[i]:
                used[j] = True
                shift = centres[i] - prev[j]
                velocity = momentum * previous[j].velocity + (1 - momentum) * shift
        tracks.append(Track(boxes[i], velocity, float(scores[i])))
    return tracks

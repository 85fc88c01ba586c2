"""Inverting gradients (Geiping et al. 2020): cosine distance plus total variation, signed Adam.

The dummy images are optimised with Adam on the *sign* of their gradient (lr 0.1), the learning
rate is cut tenfold at 3/8, 5/8 and 7/8 of the iterations (sooner where the plateau stop finds
the objective stalled at the current rate), and after each step the images are clamped to the
valid input box. Labels come from :func:`fedlab.attacks.idlg.recover_labels`.
Restarts are ranked by the final objective alone.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import torch
from fedlab.attacks.base import Attack, AttackInput, AttackResult
from fedlab.attacks.batched import per_problem_gradients
from fedlab.attacks.dlg import match_evaluation
from fedlab.attacks.idlg import recover_labels
from torch import nn

from fedlab.errors import FedlabError
from fedlab.registry import ATTACKS

logger = logging.getLogger(f"fedlab.{__name__}")

#: One attempt's result: reconstruction, final objective, objective history, iterations used.
Run = tuple[torch.Tensor, float, list[float], int]

PLATEAU_WINDOW = 50  # iterations per plateau check (``patience``)
LR_CUTS = 3  # tenfold learning-rate cuts, at 3/8, 5/8 and 7/8 of the iterations
CUT_HELPS = 0.01  # a stall-forced cut whose next window gains less than this ends the attempt


def cosine_distance(dummy: list[torch.Tensor], target: list[torch.Tensor]) -> torch.Tensor:
    """``1 - <g, t> / (|g| |t|)`` over all layers flattened together."""
    dot = sum((d * t).sum() for d, t in zip(dummy, target, strict=True))
    dn = sum((d**2).sum() for d in dummy)
    tn = sum((t**2).sum() for t in target)
    return 1 - dot / (dn.sqrt() * math.sqrt(float(tn)) + 1e-12)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of horizontally and vertically adjacent pixels."""
    dx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean()
    dy = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean()
    return dx + dy


@dataclass
class _Schedule:
    """One attempt's learning-rate cuts and plateau stop (see ``InvertingGradients``)."""

    iterations: int
    patience: int | None
    best: float = math.inf
    window: float = math.inf
    stalls: int = 0
    cuts: int = 0
    used: int = 0
    best_at_cut: float | None = None  # set while the window after a forced cut runs
    done: bool = False
    history: list[float] = field(default_factory=list)

    def rate(self, it: int, lr: float) -> float:
        """The learning rate of iteration ``it``: the scheduled cuts, or more after stalls."""
        n = self.iterations
        scheduled = sum(it >= m for m in (int(n * 3 / 8), int(n * 5 / 8), int(n * 7 / 8)))
        if scheduled > self.cuts:
            self.cuts, self.stalls = scheduled, 0
        return lr * 0.1**self.cuts

    def record(self, it: int, loss: float) -> None:
        """Account iteration ``it``'s objective; sets ``done`` when the attempt ends."""
        self.used = it + 1
        if self.patience is None:
            if it % 100 == 0:
                self.history.append(loss)
                self.done = not math.isfinite(loss)
            return
        self.window = min(self.window, loss)
        if self.used % PLATEAU_WINDOW:
            return
        window, self.window = self.window, math.inf
        self.history.append(window)
        if not math.isfinite(window):
            self.done = True
            return
        self.stalls = self.stalls + 1 if window > self.best * (1 - 1e-4) else 0
        self.best = min(self.best, window)
        if self.best_at_cut is not None and self.best > self.best_at_cut * (1 - CUT_HELPS):
            self.done = True  # the forced cut bought nothing: the stall was the floor
            return
        self.best_at_cut = None
        if self.stalls >= self.patience:
            if self.cuts == LR_CUTS:
                self.done = True
            else:
                self.cuts, self.stalls, self.best_at_cut = self.cuts + 1, 0, self.best


@ATTACKS.register("ig")
class InvertingGradients(Attack):
    """Geiping et al.'s attack.

    Parameters
    ----------
    max_iterations : int
        Adam steps per attempt (the paper used 24,000; 2,000 suffices for LeNet at 32x32).
    restarts : int
        Extra attempts; the lowest final objective wins.
    tv : float
        Weight of the total-variation prior (1e-2: on the bench image camera, 1e-4 gave
        11.0 dB, 1e-2 17.3 dB, 5e-2 16.6 dB with the grey start; 1e-2 from randn 15.0 dB).
    lr : float
        Adam learning rate on the signed gradient.
    seed : int
        Seed of the random starts.
    init : str
        Starting images, ``"gray"`` (default) or ``"randn"`` (Geiping et al.'s).
    patience : int or None
        Plateau stop (None: off, run ``max_iterations``). Every ``PLATEAU_WINDOW`` iterations the
        window's lowest objective (signed Adam is noisy) is compared with the best so far; after
        ``patience`` windows without a 0.01 % improvement the learning rate is cut tenfold at
        once (signed Adam stalls at a level set by its step size, so a stall is a reason to cut);
        the attempt ends when the window after such a cut gains less than 1 % (the stall was
        the objective's floor, as under noise) or when a stall comes with no cut left. The
        scheduled cuts at 3/8, 5/8 and 7/8 of ``max_iterations`` still apply when no stall came
        first. Only the attack's own objective decides, never the ground truth.
    """

    name = "ig"

    def __init__(
        self,
        *,
        max_iterations: int = 2000,
        restarts: int = 1,
        tv: float = 1e-2,
        lr: float = 0.1,
        seed: int = 0,
        init: str = "gray",
        patience: int | None = None,
        batched: bool = False,
    ) -> None:
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be >= 1 or None (no plateau stop), got {patience}")
        self.patience = patience
        self.batched = batched
        self.init = init
        self.max_iterations = max_iterations
        self.restarts = restarts
        self.tv = tv
        self.lr = lr
        self.seed = seed

    def _attempt(
        self,
        model: nn.Module,
        target: list[torch.Tensor],
        labels: torch.Tensor,
        x0: torch.Tensor,
        low: torch.Tensor,
        high: torch.Tensor,
    ) -> Run:
        x = x0.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=self.lr)
        schedule = _Schedule(self.max_iterations, self.patience)

        def match(dummy: list[torch.Tensor], tgt: list[torch.Tensor]) -> torch.Tensor:
            return cosine_distance(dummy, tgt) + self.tv * total_variation(x)

        evaluate = match_evaluation(model, target, labels=labels, match=match)
        for it in range(self.max_iterations):
            opt.param_groups[0]["lr"] = schedule.rate(it, self.lr)
            loss, (grad,) = evaluate(x)
            x.grad = grad.sign()
            opt.step()
            with torch.no_grad():
                x.copy_(torch.maximum(torch.minimum(x, high), low))
            schedule.record(it, float(loss))
            if schedule.done:
                break
        with torch.enable_grad():
            final = float(evaluate(x)[0])
        return x.detach(), final, schedule.history, schedule.used

    def _attempts(
        self,
        model: nn.Module,
        problems: list[tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]],
        low: torch.Tensor,
        high: torch.Tensor,
    ) -> list[Run]:
        """Several attempts ``(target, labels, x0)`` on one model, as one batched problem.

        Each attempt keeps its own Adam state, learning rate and stop, exactly as
        :meth:`_attempt` would; only the evaluation is shared. One attempt goes through
        :meth:`_attempt`, which is faster alone.
        """
        if len(problems) == 1:
            return [self._attempt(model, *problems[0], low, high)]
        grads_of = per_problem_gradients(model)
        xs = [x0.clone().requires_grad_(True) for _, _, x0 in problems]
        opt = torch.optim.Adam([{"params": [x]} for x in xs], lr=self.lr)
        schedules = [_Schedule(self.max_iterations, self.patience) for _ in problems]
        layers = len(problems[0][0])
        targets = [torch.stack([t[j] for t, _, _ in problems]) for j in range(layers)]
        norms = torch.stack([sum((t**2).sum() for t in tg) for tg, _, _ in problems]).sqrt()
        labels = torch.stack([y for _, y, _ in problems])

        def objective(active: list[int]) -> torch.Tensor:
            x = torch.stack([xs[k] for k in active])
            dummy = grads_of(x, labels[active])
            pairs = zip(dummy, targets, strict=True)
            dot = sum((d * t[active]).flatten(1).sum(1) for d, t in pairs)
            dn = sum((d**2).flatten(1).sum(1) for d in dummy)
            tv = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
            tv = tv + (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
            return 1 - dot / (dn.sqrt() * norms[active] + 1e-12) + self.tv * tv

        for it in range(self.max_iterations):
            active = [k for k, s in enumerate(schedules) if not s.done]
            if not active:
                break
            loss = objective(active)
            grads = torch.autograd.grad(loss.sum(), [xs[k] for k in active])
            for x, group, schedule in zip(xs, opt.param_groups, schedules, strict=True):
                group["lr"] = schedule.rate(it, self.lr)
                x.grad = None
            for k, grad in zip(active, grads, strict=True):
                xs[k].grad = grad.sign()
            opt.step()  # attempts without a gradient (ended) do not move
            with torch.no_grad():
                for k, value in zip(active, loss.tolist(), strict=True):
                    xs[k].copy_(torch.maximum(torch.minimum(xs[k], high), low))
                    schedules[k].record(it, value)
        with torch.enable_grad():
            finals = objective(list(range(len(problems)))).tolist()
        ends = zip(xs, finals, schedules, strict=True)
        return [(x.detach(), f, s.history, s.used) for x, f, s in ends]

    def reconstruct(self, inp: AttackInput) -> AttackResult:
        """Run ``1 + restarts`` attempts (batched if ``batched``); keep the lowest objective."""
        return self.reconstruct_many([inp], batched=self.batched)[0]

    def reconstruct_many(
        self, inputs: list[AttackInput], *, batched: bool = True
    ) -> list[AttackResult]:
        """Attack several targets of one model (one round) at once, every attempt batched.

        Each target gets the attempts, random starts and stop it would get from
        :meth:`reconstruct` with the same seed; only the evaluations are shared (and their
        rounding differs). ``seconds`` of each result is the batch's wall time divided evenly.

        Raises
        ------
        FedlabError
            The targets do not share one model (its spec, parameters or normalisation) or
            their batch size.
        """
        t0 = time.perf_counter()
        if not inputs:
            return []
        first = inputs[0]
        for other in inputs[1:]:
            if not _same_model(first, other):
                raise FedlabError(
                    "reconstruct_many: the targets must share one model and batch size (the "
                    "same round's global parameters, spec, normalisation and images per "
                    "target); group them by round first"
                )
        model = first.build_model()
        low, high = first.input_bounds()
        problems, owner, labels_of = [], [], []
        for index, inp in enumerate(inputs):
            target = inp.target_gradients()
            labels = recover_labels(inp, model, target)
            labels_of.append(labels)
            gen = torch.Generator().manual_seed(self.seed)
            for _ in range(self.restarts + 1):
                problems.append((target, labels, inp.initial_images(self.init, gen)))
                owner.append(index)
        if batched:
            runs = self._attempts(model, problems, low, high)
        else:
            runs = [self._attempt(model, *problem, low, high) for problem in problems]
        seconds = (time.perf_counter() - t0) / len(inputs)
        results = []
        for index, inp in enumerate(inputs):
            mine = [run for run, who in zip(runs, owner, strict=True) if who == index]
            best = mine[0]
            for run in mine[1:]:
                if math.isfinite(run[1]) and not run[1] >= best[1]:
                    best = run
            logger.debug("ig target %d: losses %s", index, [f"{r[1]:.4e}" for r in mine])
            results.append(
                AttackResult(
                    images=inp.to_unit_range(best[0]),
                    labels=labels_of[index],
                    loss=best[1],
                    iterations=sum(run[3] for run in mine),
                    restarts=self.restarts,
                    seconds=seconds,
                    history=best[2],
                )
            )
        return results


def _same_model(a: AttackInput, b: AttackInput) -> bool:
    """Whether two targets were computed on one model (spec, parameters, normalisation)."""
    return (
        a.model == b.model
        and a.image_shape == b.image_shape
        and a.batch_size == b.batch_size
        and a.mean == b.mean
        and a.std == b.std
        and len(a.params) == len(b.params)
        and all(torch.equal(p, q) for p, q in zip(a.params, b.params, strict=True))
    )

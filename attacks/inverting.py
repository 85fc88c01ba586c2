"""Inverting gradients (Geiping et al. 2020): cosine distance plus total variation, signed Adam.

The dummy images are optimised with Adam on the *sign* of their gradient (lr 0.1), the learning
rate is cut tenfold at 3/8, 5/8 and 7/8 of the iterations, and after each step the images are
clamped to the valid input box. Labels come from :func:`fedlab.attacks.idlg.recover_labels`.
Restarts are ranked by the final objective alone.
"""

from __future__ import annotations

import logging
import math
import time

import torch
from fedlab.attacks.base import Attack, AttackInput, AttackResult
from fedlab.attacks.dlg import match_evaluation
from fedlab.attacks.idlg import recover_labels
from torch import nn

from fedlab.registry import ATTACKS

logger = logging.getLogger(f"fedlab.{__name__}")

PLATEAU_WINDOW = 50  # iterations per plateau check (``patience``)


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
        ``patience`` windows without a 0.01 % improvement the attempt ends. The step-decay
        milestones stay at 3/8, 5/8 and 7/8 of ``max_iterations``. Only the attack's own
        objective decides, never the ground truth.
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
    ) -> None:
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be >= 1 or None (no plateau stop), got {patience}")
        self.patience = patience
        self._used = 0
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
    ) -> tuple[torch.Tensor, float, list[float]]:
        x = x0.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=self.lr)
        n = self.max_iterations
        sched = torch.optim.lr_scheduler.MultiStepLR(
            opt, milestones=[int(n * 3 / 8), int(n * 5 / 8), int(n * 7 / 8)], gamma=0.1
        )
        history: list[float] = []

        def match(dummy: list[torch.Tensor], tgt: list[torch.Tensor]) -> torch.Tensor:
            return cosine_distance(dummy, tgt) + self.tv * total_variation(x)

        evaluate = match_evaluation(model, target, labels=labels, match=match)

        best, stalls, window, used = math.inf, 0, math.inf, 0
        for it in range(n):
            loss, (grad,) = evaluate(x)
            x.grad = grad.sign()
            opt.step()
            sched.step()
            with torch.no_grad():
                x.copy_(torch.maximum(torch.minimum(x, high), low))
            used = it + 1
            if self.patience is None:
                if it % 100 == 0:
                    history.append(float(loss.detach()))
                    if not math.isfinite(history[-1]):
                        break
                continue
            window = min(window, float(loss.detach()))
            if used % PLATEAU_WINDOW == 0:
                history.append(window)
                if not math.isfinite(window):
                    break
                stalls = stalls + 1 if window > best * (1 - 1e-4) else 0
                best, window = min(best, window), math.inf
                if stalls >= self.patience:
                    break
        self._used += used
        with torch.enable_grad():
            final = float(evaluate(x)[0])
        return x.detach(), final, history

    def reconstruct(self, inp: AttackInput) -> AttackResult:
        """Run ``1 + restarts`` attempts and keep the lowest objective."""
        t0 = time.perf_counter()
        model = inp.build_model()
        target = inp.target_gradients()
        labels = recover_labels(inp, model, target)
        low, high = inp.input_bounds()
        gen = torch.Generator().manual_seed(self.seed)
        self._used = 0
        best: tuple[torch.Tensor, float, list[float]] | None = None
        for attempt in range(self.restarts + 1):
            x0 = inp.initial_images(self.init, gen)
            run = self._attempt(model, target, labels, x0, low, high)
            logger.debug("ig attempt %d: loss %.4e", attempt, run[1])
            if best is None or (math.isfinite(run[1]) and not run[1] >= best[1]):
                best = run
        assert best is not None
        return AttackResult(
            images=inp.to_unit_range(best[0]),
            labels=labels,
            loss=best[1],
            iterations=self._used,
            restarts=self.restarts,
            seconds=time.perf_counter() - t0,
            history=best[2],
        )

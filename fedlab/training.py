"""THE local training loop: every workload trains and evaluates through these two functions.

A workload supplies the model, the data and a ``step_fn(model, batch) -> (loss, metrics)``;
the loop owns the optimizer, the schedule, the device, epochs or steps, seeding of the data
order and the metric averages. Hooks cover what algorithms add: ``prepare`` wraps model,
optimizer and loader (Opacus' ``PrivacyEngine.make_private`` fits it), and the step function
may add any extra loss term (FedProx, FedFoA's relation alignment).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fedlab.errors import FedlabError

Batch = tuple[torch.Tensor, ...]
StepFn = Callable[[nn.Module, Batch], tuple[torch.Tensor, Mapping[str, float]]]
PrepareFn = Callable[
    [nn.Module, torch.optim.Optimizer, DataLoader],
    tuple[nn.Module, torch.optim.Optimizer, DataLoader],
]


@dataclass(frozen=True)
class TrainConfig:
    """How one client trains locally.

    ``steps > 0`` runs exactly that many optimizer steps (cycling through the data) and
    ignores ``epochs``.
    """

    epochs: int = 1
    steps: int = 0
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    drop_last: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise FedlabError(
                f"optimizer {self.optimizer!r} is not one of: {', '.join(OPTIMIZERS)}"
            )
        if self.schedule not in ("constant", "cosine"):
            raise FedlabError(f"lr schedule {self.schedule!r} is not one of: constant, cosine")
        if self.steps < 0 or self.epochs < 0 or (self.steps == 0 and self.epochs == 0):
            raise FedlabError(
                f"epochs={self.epochs}, steps={self.steps}: give epochs >= 1 or steps >= 1"
            )


@dataclass
class TrainResult:
    """What one call of :func:`train` did."""

    num_examples: int
    steps: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": lambda params, c: torch.optim.SGD(
        params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
    ),
    "adam": lambda params, c: torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay),
    "adamw": lambda params, c: torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay),
}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when torch sees a GPU, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FedlabError("device 'cuda' was asked for but torch sees no GPU; use device=auto")
    return torch.device(name)


def _to(batch: Batch, device: torch.device) -> Batch:
    return tuple(t.to(device, non_blocking=True) if torch.is_tensor(t) else t for t in batch)


class _Averages:
    """Example-weighted running means of scalar metrics."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, metrics: Mapping[str, float], n: int) -> None:
        self.count += n
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * n

    def means(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}


def train(
    model: nn.Module,
    dataset: Dataset,
    step_fn: StepFn,
    config: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    prepare: PrepareFn | None = None,
    parameters: list[nn.Parameter] | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``dataset``.

    Parameters
    ----------
    model : nn.Module
    dataset : Dataset
        Yields tuples of tensors; the first dimension of the first is the batch size.
    step_fn : callable
        ``(model, batch) -> (loss, metrics)``; ``metrics`` are per-batch means.
    config : TrainConfig
    device : torch.device or str
    seed : int
        Fixes the data order (and anything random in ``step_fn`` that uses torch's RNG).
    prepare : callable, optional
        ``(model, optimizer, loader) -> (model, optimizer, loader)``, e.g. Opacus.
    parameters : list of nn.Parameter, optional
        What the optimizer updates; all of ``model``'s parameters by default.

    Returns
    -------
    TrainResult
        Examples seen (counted once per epoch over the dataset), steps and mean metrics
        (``loss`` included).
    """
    device = torch.device(device)
    if len(dataset) == 0:
        raise FedlabError("cannot train on an empty dataset partition; use fewer supernodes")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        generator=generator,
        drop_last=(config.drop_last and len(dataset) >= config.batch_size)
        or _leaves_batch_of_one_for_batchnorm(model, len(dataset), config.batch_size),
    )
    model.to(device).train()
    params = (
        parameters if parameters is not None else [p for p in model.parameters() if p.requires_grad]
    )
    optimizer = OPTIMIZERS[config.optimizer](params, config)
    if prepare is not None:
        model, optimizer, loader = prepare(model, optimizer, loader)
    total_steps = config.steps or config.epochs * max(len(loader), 1)
    scheduler = None
    if config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))
        )
    averages = _Averages()
    start = time.perf_counter()
    step = 0
    while step < total_steps:
        for batch in loader:
            batch = _to(batch, device)
            # Poisson sampling (Opacus) can draw an empty batch. It still takes a step: DP-SGD
            # adds its noise and its accountant counts the draw, which the privacy analysis of
            # sampling at rate q assumes; it just adds nothing to the metric averages.
            optimizer.zero_grad(set_to_none=True)
            loss, metrics = step_fn(model, batch)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if len(batch[0]):
                averages.add({"loss": loss.item(), **metrics}, len(batch[0]))
            step += 1
            if step >= total_steps:
                break
    num_examples = len(dataset) if not config.steps else min(len(dataset), averages.count)
    return TrainResult(num_examples, step, time.perf_counter() - start, averages.means())


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    step_fn: StepFn,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Example-weighted means of ``step_fn``'s loss and metrics over ``dataset``."""
    device = torch.device(device)
    model.to(device).eval()
    averages = _Averages()
    for batch in DataLoader(dataset, batch_size=batch_size):
        batch = _to(batch, device)
        loss, metrics = step_fn(model, batch)
        averages.add({"loss": loss.item(), **metrics}, len(batch[0]))
    return averages.means()


def _leaves_batch_of_one_for_batchnorm(model: nn.Module, size: int, batch_size: int) -> bool:
    """True when the last batch would hold one example and ``model`` has BatchNorm, which
    refuses such a batch in training: that batch is then dropped (every other case trains
    exactly as before)."""
    has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return has_batchnorm and size > batch_size and size % batch_size == 1

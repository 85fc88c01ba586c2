"""Sample-level DP-SGD on a client with Opacus, through the training loop's ``prepare`` hook.

The client's Opacus accountant lives in ``context.state`` between rounds (a ClientApp is rebuilt
for every message), as a ConfigRecord of its history (noise multiplier, sample rate, steps):
plain lists, no pickle. The sample-level epsilon protects one *example* of this client; it is
reported as ``dp-sample-epsilon``, apart from the client-level epsilon of central DP.

Opacus' noise and its Poisson batch sampling both draw from torch generators of a
:class:`~fedlab.strategies.dp_noise.NoiseSource` (OS entropy by default), not from torch's global
RNG, which the training loop seeds from the run's seed for the data order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from fedlab.strategies.dp_noise import NoiseSource
from fedlab.strategies.dp_wrapper import reply_metrics
from flwr.app import ConfigRecord, Context, Message
from opacus import PrivacyEngine
from opacus.data_loader import DPDataLoader
from opacus.validators import ModuleValidator
from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader, Dataset

from fedlab.errors import FedlabError
from fedlab.workload import Workload

ACCOUNTANT_STATE = "dp-sgd-accountant"


class OpacusCompatible(Workload):
    """A workload whose models pass through ``ModuleValidator.fix`` (BatchNorm -> GroupNorm).

    Used on the server and on clients alike, so the global arrays have the fixed model's keys.

    Parameters
    ----------
    inner : Workload
    """

    def __init__(self, inner: Workload) -> None:
        super().__init__(inner.config)
        self.inner = inner

    def build_model(self) -> nn.Module:
        model = self.inner.build_model()
        return model if ModuleValidator.is_valid(model) else ModuleValidator.fix(model)

    def client_dataset(self, partition_id: int, num_partitions: int) -> Dataset:
        return self.inner.client_dataset(partition_id, num_partitions)

    def test_dataset(self) -> Dataset:
        return self.inner.test_dataset()

    def step(
        self, model: nn.Module, batch: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, Mapping[str, float]]:
        return self.inner.step(model, batch)

    def model_spec(self) -> dict[str, Any]:
        if not ModuleValidator.is_valid(self.inner.build_model()):
            raise FedlabError(
                f"model {self.config.model!r} is changed by Opacus (BatchNorm -> GroupNorm), so "
                "a trace's model spec could not rebuild it; use a model without BatchNorm"
            )
        return self.inner.model_spec()


class DPSGDSession:
    """One round of Opacus DP-SGD on a client, its accountant restored from and saved to state.

    Parameters
    ----------
    context : Context
        The ClientApp's context; ``context.state`` keeps the accountant.
    noise_multiplier : float
        Opacus' sigma (noise std over the per-sample clip norm).
    max_grad_norm : float
        Per-sample gradient clip norm.
    delta : float
        Sample-level delta of the reported epsilon.
    source : NoiseSource
        Seeds the noise and the batch sampling (OS entropy by default; when seeded, from the
        seed, the partition and this client's own count of DP-SGD rounds).
    """

    def __init__(
        self,
        context: Context,
        *,
        noise_multiplier: float,
        max_grad_norm: float,
        delta: float,
        source: NoiseSource | None = None,
    ) -> None:
        self.noise_multiplier = noise_multiplier
        self.max_grad_norm = max_grad_norm
        self.delta = delta
        self.source = source or NoiseSource()
        self.engine = PrivacyEngine(accountant="rdp")
        saved = context.state.config_records.get(ACCOUNTANT_STATE)
        self.draw = (int(context.node_config["partition-id"]), len(saved["steps"]) if saved else 0)
        if saved is not None:
            history = list(zip(saved["noise-multipliers"], saved["sample-rates"], saved["steps"],
                               strict=True))  # fmt: skip
            self.engine.accountant.load_state_dict({"mechanism": "rdp", "history": history})

    def prepare(
        self, model: nn.Module, optimizer: Optimizer, loader: DataLoader
    ) -> tuple[nn.Module, Optimizer, DataLoader]:
        """Opacus' ``make_private`` with Poisson-sampled batches (the training loop's hook).

        The loader is made Poisson-sampling here, with its own generator, and handed to
        ``make_private`` as it is (``poisson_sampling=False`` there only skips a second
        conversion; the accountant still sees the sample rate 1 / len(loader)).
        """
        poisson = DPDataLoader.from_data_loader(
            loader, generator=self.source.torch("dp-sgd-batches", *self.draw)
        )
        module, optimizer, loader = self.engine.make_private(
            module=model, optimizer=optimizer, data_loader=poisson,
            noise_multiplier=self.noise_multiplier, max_grad_norm=self.max_grad_norm,
            poisson_sampling=False, noise_generator=self.source.torch("dp-sgd-noise", *self.draw),
        )  # fmt: skip
        module.forbid_grad_accumulation()  # what poisson_sampling=True would have set
        return module, optimizer, loader

    def finish(self, context: Context, reply: Message) -> float:
        """Save the accountant to ``context.state``; report the sample-level epsilon."""
        history = self.engine.accountant.history
        context.state[ACCOUNTANT_STATE] = ConfigRecord({
            "noise-multipliers": [float(h[0]) for h in history],
            "sample-rates": [float(h[1]) for h in history],
            "steps": [int(h[2]) for h in history],
        })  # fmt: skip
        epsilon = float(self.engine.accountant.get_epsilon(self.delta)) if history else 0.0
        if not reply.has_error():
            metrics = reply_metrics(reply)
            metrics["dp-sample-epsilon"] = epsilon
            metrics["dp-sample-delta"] = self.delta
            metrics["dp-sample-steps"] = sum(int(h[2]) for h in history)
        return epsilon

"""ZSL workloads: ParsNets, the MLP baseline and (AR)^2 as federated clients.

Clients hold disjoint seen classes (``zsl-partition = classes``, the default): each trains
on its own classes with the softmax over all seen classes (class attributes are public).
The server evaluates T1 and GZSL H on the held-out seen and the unseen test data.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from fedlab.clients.zsl.ar2 import Ar2Net, ar2_losses, nearest_unseen
from fedlab.clients.zsl.config import Ar2Config, ParsNetsConfig, ZslConfig
from fedlab.clients.zsl.data import (
    ZslData,
    ZslTensors,
    class_disjoint_partition,
    validation_protocol,
)
from fedlab.clients.zsl.label_skew import adjust_logits
from fedlab.clients.zsl.metrics import ausuc, gzsl, zsl_top1
from fedlab.clients.zsl.models import MLP, CompatibilityModel, ParsNets
from fedlab.clients.zsl.sources import load_zsl
from torch import nn

from fedlab.data.partition import partition_indices
from fedlab.key_groups import RunConfig
from fedlab.registry import WORKLOADS
from fedlab.workload import Workload


class ZslWorkload(Workload):
    """Shared data handling; subclasses pick the representation, the model and the loss."""

    representation = "features"
    config: ZslConfig

    def __init__(self, config: RunConfig, data: ZslData | None = None) -> None:
        super().__init__(config)
        if data is not None:  # e.g. a class-disjoint validation split (benchmark tuning)
            self.__dict__["data"] = data

    @cached_property
    def data(self) -> ZslData:
        """The split, or (``zsl-validation-classes`` > 0) its class-disjoint validation task,
        built from the seen training data only and seeded by the split."""
        cfg = self.config
        full = load_zsl(cfg.zsl_dataset, split=cfg.zsl_split, representation=self.representation,
                        data_path=cfg.data_path, test_fraction=cfg.test_fraction)  # fmt: skip
        if cfg.zsl_validation_classes:
            return validation_protocol(full, cfg.zsl_validation_classes, seed=cfg.zsl_split)
        return full

    @cached_property
    def seen(self) -> torch.Tensor:
        return torch.as_tensor(self.data.seen, dtype=torch.long)

    @cached_property
    def positions(self) -> torch.Tensor:
        """Class id -> index among the seen classes (-1 for unseen)."""
        table = torch.full((self.data.num_classes,), -1, dtype=torch.long)
        table[self.seen] = torch.arange(len(self.seen))
        return table

    @cached_property
    def attributes(self) -> torch.Tensor:
        return torch.as_tensor(self.data.attributes, dtype=torch.float32)

    def partition(self, partition_id: int, num_partitions: int) -> np.ndarray:
        """Trainval indices of one client: whole seen classes (or an IID share)."""
        trainval = self.data.trainval
        labels = self.data.labels[trainval]
        if self.config.zsl_partition == "classes":
            parts = class_disjoint_partition(labels, num_partitions, seed=self.config.seed)
        else:
            parts = partition_indices(labels, num_partitions, method="iid", seed=self.config.seed)
        return trainval[parts[partition_id]]

    def client_dataset(self, partition_id: int, num_partitions: int) -> ZslTensors:
        """A client's data; its per-seen-class counts are kept for the label-skew remedies."""
        subset = self.data.subset(self.partition(partition_id, num_partitions))
        counts = torch.bincount(self.positions[subset.labels], minlength=len(self.seen))
        self.__dict__["local_counts"] = counts
        return subset

    def seen_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Training logits over all seen classes, adjusted by ``zsl-label-skew`` on a client
        (one that called :meth:`client_dataset`); unchanged in centralised training."""
        counts = self.__dict__.get("local_counts")
        if counts is None or self.config.zsl_label_skew == "none":
            return logits
        c = self.config
        return adjust_logits(logits, counts, c.zsl_label_skew, alpha=c.fedrs_alpha,
                             tau=c.fedlc_tau)  # fmt: skip

    def train_dataset(self) -> ZslTensors:
        return self.data.subset(self.data.trainval)

    def test_dataset(self) -> ZslTensors:
        return self.data.subset(self.data.test_seen)

    @cached_property
    def test_sets(self) -> dict[str, ZslTensors]:
        """The held-out seen and the unseen test examples, loaded once."""
        return {"seen": self.data.subset(self.data.test_seen),
                "unseen": self.data.subset(self.data.test_unseen)}  # fmt: skip

    @torch.no_grad()
    def test_scores(self, model: nn.Module) -> dict[str, np.ndarray]:
        """Scores over all classes of the held-out seen and the unseen test examples."""
        model.eval()
        out = {}
        for split, subset in self.test_sets.items():
            out[f"scores-{split}"] = _batched(model, subset.inputs).numpy()
            out[f"labels-{split}"] = subset.labels.numpy()
        return out

    def metrics(self, scores: Mapping[str, np.ndarray], gamma: float) -> dict[str, float]:
        """T1, acc-s, acc-u and H from :meth:`test_scores`, with calibration ``gamma``."""
        d = self.data
        out = {"T1": zsl_top1(scores["scores-unseen"], scores["labels-unseen"], d.unseen)}
        parts = (scores["scores-seen"], scores["labels-seen"], scores["scores-unseen"],
                 scores["labels-unseen"], d.seen, d.unseen)  # fmt: skip
        out.update(gzsl(*parts, gamma))
        out["AUSUC"] = ausuc(*parts)
        return out

    def evaluator(self):
        """``model -> {T1, acc-s, acc-u, H, AUSUC}`` with the configured ``gzsl-gamma``."""
        self.test_sets  # noqa: B018  (load the test data now, before any round)

        def evaluate(model: nn.Module) -> dict[str, float]:
            return self.metrics(self.test_scores(model), self.config.gzsl_gamma)

        return evaluate

    def in_dim(self) -> int:
        return int(self.data.load(self.data.trainval[:1]).shape[1])

    def step(
        self, model: nn.Module, batch: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, Mapping[str, float]]:
        """Cross-entropy over the seen classes' cosine scores + the model's regulariser."""
        x, labels = batch[0], batch[1]
        assert isinstance(model, CompatibilityModel)
        emb = model.embed(x)
        pos = self.positions[labels]
        logits = model.scores(emb)[:, self.seen]
        ce = F.cross_entropy(self.seen_logits(logits), pos)
        reg = model.regularization(emb, labels)
        acc = (logits.argmax(1) == pos).float().mean().item()
        return ce + reg, {"ce": ce.item(), "reg": reg.item(), "seen-accuracy": acc}


def _batched(model: nn.Module, inputs: torch.Tensor, size: int = 512) -> torch.Tensor:
    return torch.cat([model(inputs[i : i + size]) for i in range(0, len(inputs), size)])


@WORKLOADS.register("zsl_parsnets")
class ParsNetsWorkload(ZslWorkload):
    """ParsNets on fixed visual features."""

    config: ParsNetsConfig

    def build_model(self) -> nn.Module:
        c = self.config
        return ParsNets(
            self.in_dim(), self.attributes, bases=c.parsnets_bases, topk=c.parsnets_topk,
            scale=c.zsl_scale, ortho=c.parsnets_ortho, lowrank=c.parsnets_lowrank,
            ole=c.parsnets_ole,
        )  # fmt: skip


@WORKLOADS.register("zsl_mlp")
class MlpWorkload(ZslWorkload):
    """The two-layer MLP baseline on fixed visual features."""

    config: ParsNetsConfig

    def build_model(self) -> nn.Module:
        return MLP(self.in_dim(), self.attributes, self.config.mlp_width, self.config.zsl_scale)


@WORKLOADS.register("zsl_ar2")
class Ar2Workload(ZslWorkload):
    """(AR)^2 on images: pretraining (seen-class CE) then EMA-teacher fine-tuning.

    The phase comes from ``ar2-phase`` (the app sets it per round from
    ``ar2-pretrain-rounds``).
    """

    config: Ar2Config

    representation = "images"

    def build_model(self) -> nn.Module:
        c = self.config
        channels = int(self.data.load(self.data.trainval[:1]).shape[1])
        return Ar2Net(channels, self.attributes, len(self.seen), width=c.ar2_width,
                      scale=c.zsl_scale, use_agl=c.ar2_agl > 0)  # fmt: skip

    @cached_property
    def nearest(self) -> torch.Tensor:
        unseen = torch.as_tensor(self.data.unseen, dtype=torch.long)
        return nearest_unseen(self.attributes, unseen, self.config.ar2_nearest_unseen)

    def step(
        self, model: nn.Module, batch: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, Mapping[str, float]]:
        assert isinstance(model, Ar2Net)
        images, labels = batch[0], batch[1]
        pos = self.positions[labels]
        c = self.config
        if c.ar2_phase == "pretrain":
            model.update_teacher(0.0)
            logits = model.classifier(model.feature_map(images).mean((2, 3)))
            loss = F.cross_entropy(self.seen_logits(logits), pos)
            return loss, {"seen-accuracy": (logits.argmax(1) == pos).float().mean().item()}
        model.update_teacher(c.ar2_ema)
        return ar2_losses(model, images, pos, labels, self.seen, self.nearest,
                          uad=c.ar2_uad, agl=c.ar2_agl, adjust=self.seen_logits)  # fmt: skip

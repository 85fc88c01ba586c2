"""Self-supervised workload: two augmented views, an SSL loss, optional relation alignment."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import torch
from fedlab.clients.ssl.anchors import anchor_images
from fedlab.clients.ssl.augment import augment
from fedlab.clients.ssl.config import SSLConfig
from fedlab.clients.ssl.models import SSLModel, parse_encoders
from fedlab.clients.ssl.objectives import (
    clamp_norm,
    negative_cosine,
    nt_xent,
    second_moment,
    spectral_contrastive,
)
from fedlab.clients.ssl.relation import (
    alignment_loss,
    anchor_gram,
    gram_alignment_loss,
    relation_matrix,
)
from torch import nn

from fedlab.client import derive_seed
from fedlab.data.datasets import ImageDataset
from fedlab.errors import FedlabError
from fedlab.registry import WORKLOADS
from fedlab.training import StepFn
from fedlab.workload import PartitionedImageWorkload


@WORKLOADS.register("ssl")
class SSLWorkload(PartitionedImageWorkload):
    """SimCLR (default), BYOL or SimSiam on a client's unlabelled partition.

    Labels are used only by the linear probe, on the labelled training split and the held-out
    split, never in training.
    """

    config: SSLConfig

    @property
    def min_partition_size(self) -> int:  # type: ignore[override]
        """``min-partition-size`` (at least 2: a batch of one cannot be contrasted)."""
        return self.config.min_partition_size

    def __init__(self, config: SSLConfig) -> None:
        if not isinstance(config, SSLConfig):
            raise FedlabError(
                f"workload 'ssl' needs the SSL run config (fedlab.apps:fedfoa), got "
                f"{type(config).__name__}; run it through the fedfoa app"
            )
        super().__init__(config)

    def probe_train_dataset(self) -> ImageDataset:
        """The labelled training split the probe fits on (first ``probe-size`` if set)."""
        ds = self.train_dataset
        size = self.config.probe_size
        return ds.subset(np.arange(min(size, len(ds)))) if size else ds

    def encoder_of(self, partition_id: int) -> str:
        """The encoder spec of a partition: ``encoders`` round-robin by partition id."""
        arch, width = parse_encoders(self.config.encoders)[
            partition_id % len(parse_encoders(self.config.encoders))
        ]
        return f"{arch}:{width}"

    def build_model(self, partition_id: int = 0) -> SSLModel:
        c, h, _ = self.train_dataset.shape
        cfg = self.config
        return SSLModel(
            self.encoder_of(partition_id), cfg.ssl_method, c, h, cfg.proj_dim, cfg.proj_hidden
        )

    def ssl_loss(self, model: SSLModel, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(SSL loss, the features the relation is taken on for both views, stacked (2N, D)):
        projector outputs, or encoder outputs with ``relation-features=encoder``."""
        v1, v2 = augment(images, None), augment(images, None)
        h1, h2 = model.encoder(v1), model.encoder(v2)
        z1, z2 = model.projector(h1), model.projector(h2)
        method = self.config.ssl_method
        if method == "simclr":
            loss = nt_xent(z1, z2, self.config.temperature)
        elif method == "spectral":
            loss = spectral_contrastive(z1, z2, mu=self.config.spectral_mu)
        elif method == "simsiam":
            p1, p2 = model.predictor(z1), model.predictor(z2)
            loss = (negative_cosine(p1, z2) + negative_cosine(p2, z1)) / 2
        else:  # byol
            model.update_target(self.config.byol_momentum)
            p1, p2 = model.predictor(z1), model.predictor(z2)
            loss = (
                negative_cosine(p1, model.target(v2)) + negative_cosine(p2, model.target(v1))
            ) / 2
        if self.config.relation_features == "encoder":
            return loss, torch.cat([h1, h2])
        return loss, torch.cat([z1, z2])

    def step(
        self, model: nn.Module, batch: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, Mapping[str, float]]:
        loss, _ = self.ssl_loss(model, batch[0])  # type: ignore[arg-type]
        return loss, {"ssl-loss": loss.item()}

    def aligned_step(self, relation: torch.Tensor | None, weight: float) -> StepFn:
        """The step function with FedFoA's term ``weight * alignment(features, relation)``.

        ``relation-kind=correlation``: the correlation of the batch's two-view features against
        the global D x D matrix. ``anchor-gram``: the Gram matrix of the anchors' features (eval
        mode, as the upload takes it) against the global n x n one.
        """
        if relation is None or weight == 0:
            return self.step
        anchors = self.anchors() if self.config.relation_kind == "anchor-gram" else None

        def step_fn(model: nn.Module, batch: tuple[torch.Tensor, ...]):
            ssl, z = self.ssl_loss(model, batch[0])  # type: ignore[arg-type]
            if anchors is None:
                align = alignment_loss(z, relation)
            else:
                align = gram_alignment_loss(self.anchor_features(model, anchors), relation)  # type: ignore[arg-type]
            return ssl + weight * align, {"ssl-loss": ssl.item(), "align-loss": align.item()}

        return step_fn

    def anchors(self) -> torch.Tensor:
        """The run's ``anchor-count`` procedural anchor images, the same on every client."""
        c, h, _ = self.train_dataset.shape
        seed = derive_seed(self.config.seed, "anchors")
        return anchor_images(self.config.anchor_count, c, h, seed)

    def anchor_features(self, model: SSLModel, anchors: torch.Tensor) -> torch.Tensor:
        """Relation features of the anchors in eval mode (fixed batch statistics: the upload
        and every training step see the anchors through the same function)."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        z = self._relation_features(model)(anchors.to(device))
        model.train(was_training)
        return z

    def _relation_features(self, model: SSLModel):
        return model.encoder if self.config.relation_features == "encoder" else model.project

    def fedsc_step(self, external: torch.Tensor | None, alpha: float) -> StepFn:
        """FedSC's step: the spectral loss with the other clients' second moment ``external``."""
        if external is None or alpha == 1:
            return self.step

        def step_fn(model: nn.Module, batch: tuple[torch.Tensor, ...]):
            images = batch[0]
            z1 = model.project(augment(images, None))  # type: ignore[operator]
            z2 = model.project(augment(images, None))  # type: ignore[operator]
            loss = spectral_contrastive(
                z1, z2, mu=self.config.spectral_mu, external=external, alpha=alpha
            )
            return loss, {"ssl-loss": loss.item(), "fedsc-alpha": alpha}

        return step_fn

    @torch.no_grad()
    def local_second_moment(
        self, model: SSLModel, dataset: ImageDataset, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """FedSC's shared matrix: ``Z^T Z / 2n`` of two augmented views of the whole partition.

        FedSC averages it over 5 passes of augmentation; one pass of two views is used here.
        """
        was_training = model.training
        model.to(device).eval()
        images = dataset.images
        mu = self.config.spectral_mu
        parts = []
        for i in range(0, len(images), 256):
            chunk = images[i : i + 256].to(device)
            parts += [clamp_norm(model.project(augment(chunk, None)), mu) for _ in range(2)]
        model.train(was_training)
        return second_moment(torch.cat(parts).cpu().double())

    @torch.no_grad()
    def local_relation(
        self, model: SSLModel, dataset: ImageDataset, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """The relation a client uploads, taken on the same kind of batch its alignment uses.

        ``correlation``: the D x D correlation of the two augmented views' features over the
        whole partition, in train mode in chunks of ``batch-size`` (batch statistics, as in a
        training step; the running statistics are restored afterwards). ``anchor-gram``: the
        n x n Gram of the anchors' features in eval mode.
        """
        model.to(device)
        if self.config.relation_kind == "anchor-gram":
            return anchor_gram(self.anchor_features(model, self.anchors()).cpu().double())
        features, images = self._relation_features(model), dataset.images
        size = max(self.config.batch_size, 2)
        with _running_statistics_kept(model):
            model.train()
            z = [
                torch.cat([features(augment(chunk, None)), features(augment(chunk, None))])
                for chunk in (images[i : i + size].to(device) for i in range(0, len(images), size))
                if len(chunk) > 1  # a batch of one has no batch statistics
            ]
        return relation_matrix(torch.cat(z).cpu().double())


@contextmanager
def _running_statistics_kept(model: nn.Module) -> Iterator[None]:
    """Batch-norm running statistics (and the train/eval mode) as they were before."""
    saved = [b.detach().clone() for b in model.buffers()]
    was_training = model.training
    try:
        yield
    finally:
        for buffer, value in zip(model.buffers(), saved, strict=True):
            buffer.copy_(value)
        model.train(was_training)

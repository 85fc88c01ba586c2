"""Run-config keys of the ``diffusion`` (prior training) and ``diffsr`` (super-resolution) apps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from fedlab.clients.diffusion_prior import PriorConfig, resolve_shipped
from fedlab.clients.shipped import shipped_weights

from fedlab.config import (
    check_choice,
    check_non_negative,
    check_not_empty,
    check_positive,
    check_range,
)
from fedlab.errors import FedlabError

#: The federatedly trained prior and the baseline CNN, shipped as package data
#: (``weights/``; trained by simulations/diffsr_train_prior.py).
SHIPPED_PRIOR = shipped_weights("fedlab.clients.sr", "prior-federated")
SHIPPED_CNN = shipped_weights("fedlab.clients.sr", "cnn")
#: PRF kappa fitted on the calibration crops with the shipped prior (simulations/diffsr_study.py
#: ``calibrate``; recorded in simulations/results/diffsr/study.json, which a test checks against
#: this constant). The default of the diffsr app's ``prf-kappa`` and of ``fedlab sr --kappa``.
#: Fitted to the start steps with the lowest detail error, it favours detail over fidelity
#: (docs/diffsr.md); a smaller ``--kappa`` gives smaller start steps.
FITTED_KAPPA = 16.0
METHODS = ("bicubic", "sdedit", "prf", "ilvr", "ddnm", "cnn", "ibp")
EVAL_IMAGES = ("heldout", "calibration", "control")


@dataclass
class DiffusionConfig(PriorConfig):
    """The prior keys of the ``diffusion`` app: clients hold different bundled images (see
    :mod:`fedlab.clients.sr.data`)."""

    WORKLOAD: ClassVar[str] = "diffusion"
    SHIPPED_PRIOR: ClassVar[Path | None] = SHIPPED_PRIOR


@dataclass
class DiffSRConfig(DiffusionConfig):
    """The diffusion keys plus what each client's super-resolution evaluation does: every
    round each client super-resolves ``eval-crops`` crops of its own held-out image (or of its
    own training images: ``eval-images=calibration``) at each scale with each method."""

    init_from: str = "shipped"
    train_prior: bool = True
    scales: tuple[float, ...] = (2.0, 4.0)
    methods: tuple[str, ...] = ("bicubic", "prf", "ddnm")
    fixed_t: tuple[int, ...] = (150, 300)
    sample_steps: int = 20
    sample_seeds: tuple[int, ...] = (0,)
    eval_crops: int = 2
    eval_crop_size: int = 64
    eval_images: str = "heldout"
    prf_kappa: float = FITTED_KAPPA
    prf_per_image: bool = False
    cnn: str = "shipped"

    KEY_HELP: ClassVar[dict[str, str]] = {
        "train_prior": "train the prior each round; false: clients only evaluate the received one",
        "scales": "upscaling factors (>= 1) each client evaluates",
        "methods": "bicubic, sdedit, prf, ilvr, ddnm, cnn, ibp (no prior)",
        "fixed_t": "start steps of the sdedit method",
        "sample_steps": "DDIM steps of every reverse process",
        "sample_seeds": "sampling seeds (start noise); metrics per seed",
        "eval_crops": "crops per client to super-resolve",
        "eval_crop_size": "side of the high-resolution evaluation crops in pixels",
        "eval_images": "heldout (the client's test image), calibration (its training images) or "
        "control (held-out frames of the prior's training clip: the positive control)",
        "prf_kappa": "PRF noise power per unit of unrecovered energy (fitted on calibration)",
        "prf_per_image": "PRF scales the unrecovered energy by the LR image's own detail",
        "cnn": "folder of the arbitrary-scale CNN baseline ('shipped': the repository's)",
    }

    def validate(self) -> None:
        super().validate()
        if any(scale < 1 for scale in self.scales):
            raise FedlabError(f"scales must all be >= 1 (upscaling), got {self.scales}")
        check_not_empty(self, "scales")
        check_not_empty(self, "methods")
        check_choice(self, "methods", METHODS)
        check_range(self, "fixed_t", 0, 999)
        if "sdedit" in self.methods and not self.fixed_t:
            raise FedlabError('method sdedit needs fixed-t, e.g. fixed-t="150,300"')
        check_positive(self, "sample_steps", "eval_crops", "eval_crop_size", "prf_kappa")
        check_choice(self, "eval_images", EVAL_IMAGES)
        check_not_empty(self, "sample_seeds")
        check_non_negative(self, "sample_seeds")

    def check_paths(self) -> None:
        super().check_paths()
        if "cnn" in self.methods and not Path(self.cnn_folder()).is_dir():
            raise FedlabError(
                f"cnn folder {self.cnn_folder()!r} does not exist; train it with "
                "simulations/diffsr_train_prior.py cnn, or drop cnn from methods"
            )

    def cnn_folder(self) -> str:
        return resolve_shipped(self.cnn, SHIPPED_CNN)

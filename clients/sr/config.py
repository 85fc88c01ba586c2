"""Run-config keys of the ``diffusion`` (prior training) and ``diffsr`` (super-resolution) apps."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from fedlab.clients.shipped import shipped_weights

from fedlab.config import RunConfig, _choice, _non_negative, _positive
from fedlab.errors import FedlabError

#: The federatedly trained prior and the baseline CNN, shipped as package data
#: (``weights/``; trained by simulations/diffsr_train_prior.py).
SHIPPED_PRIOR = shipped_weights("fedlab.clients.sr", "prior-federated")
SHIPPED_CNN = shipped_weights("fedlab.clients.sr", "cnn")
#: PRF kappa fitted on the calibration crops with the shipped prior (simulations/diffsr_study.py
#: ``calibrate``; recorded in simulations/results/diffsr/study.json, which a test checks against
#: this constant). The default of the diffsr app's ``prf-kappa`` and of ``fedlab sr --kappa``.
FITTED_KAPPA = 0.0625
UNET_CONFIGS = ("tiny", "cpu", "gpu")
METHODS = ("bicubic", "sdedit", "prf", "ilvr", "ddnm", "cnn", "ibp")
EVAL_IMAGES = ("heldout", "calibration")


def resolve_shipped(value: str, shipped: Path) -> str:
    """``"shipped"`` -> the folder shipped with the package; anything else unchanged."""
    return str(shipped) if value == "shipped" else value


def parse_floats(name: str, text: str) -> list[float]:
    """``"2,4"`` -> ``[2.0, 4.0]`` with a one-line error naming the key."""
    try:
        values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise FedlabError(
            f'{name} must be comma-separated numbers, got {text!r}; e.g. {name}="2,4"'
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise FedlabError(f"{name} must hold finite numbers, got {text!r}")
    return values


def parse_ints(name: str, text: str) -> list[int]:
    values = parse_floats(name, text)
    if any(v != int(v) for v in values):
        raise FedlabError(f"{name} must be comma-separated integers, got {text!r}")
    return [int(v) for v in values]


@dataclass
class DiffusionConfig(RunConfig):
    """RunConfig plus the diffusion-prior keys: clients hold different bundled images (see
    :mod:`fedlab.clients.sr.data`), train an epsilon-prediction UNet on random crops with THE loop,
    and the server averages the UNet (FedAvg) and reports the held-out denoising loss."""

    workload: str = "diffusion"
    optimizer: str = "adam"
    lr: float = 0.001
    batch_size: int = 16
    local_steps: int = 20
    unet: str = "cpu"
    crop_size: int = 32
    crops_per_client: int = 4096
    init_from: str = ""
    heldout_crops: int = 8
    save_prior: bool = True

    KEY_HELP: ClassVar[dict[str, str]] = {
        "unet": "UNet2DModel config: tiny (tests), cpu (about 0.9 M parameters) or gpu",
        "crop_size": "side of the random training crops in pixels",
        "crops_per_client": "random crops in one pass over a client's images (drawn by seed)",
        "init_from": "UNet folder to start from ('shipped': the repository's prior); empty: new",
        "heldout_crops": "crops per held-out image for the server's denoising loss",
        "save_prior": "write the final global UNet as a save_pretrained folder run/prior",
    }

    def validate(self) -> None:
        super().validate()
        _choice(self, "unet", UNET_CONFIGS)
        _positive(self, "crop_size", "crops_per_client", "heldout_crops")
        if self.crop_size % 4:
            raise FedlabError(
                f"crop-size must be a multiple of 4 (UNet downsampling), got {self.crop_size}"
            )

    def prior_folder(self) -> str:
        return resolve_shipped(self.init_from, SHIPPED_PRIOR)

    def check_paths(self) -> None:
        """Folders named by the config exist (checked before Ray starts, not at parse time,
        so that a missing default folder does not block other values)."""
        if self.init_from and not Path(self.prior_folder()).is_dir():
            raise FedlabError(
                f"init-from folder {self.prior_folder()!r} does not exist; give a UNet "
                "save_pretrained folder, 'shipped', or leave it empty for a new UNet"
            )


@dataclass
class DiffSRConfig(DiffusionConfig):
    """The diffusion keys plus what each client's super-resolution evaluation does: every
    round each client super-resolves ``eval-crops`` crops of its own held-out image (or of its
    own training images: ``eval-images=calibration``) at each scale with each method."""

    init_from: str = "shipped"
    train_prior: bool = True
    scales: str = "2,4"
    methods: str = "bicubic,prf,ddnm"
    fixed_t: str = "150,300"
    sample_steps: int = 20
    sample_seeds: str = "0"
    eval_crops: int = 2
    eval_crop_size: int = 64
    eval_images: str = "heldout"
    prf_kappa: float = FITTED_KAPPA
    prf_per_image: bool = False
    cnn: str = "shipped"

    KEY_HELP: ClassVar[dict[str, str]] = {
        "train_prior": "train the prior each round; false: clients only evaluate the received one",
        "scales": "comma-separated upscaling factors (>= 1) each client evaluates",
        "methods": "comma-separated: bicubic, sdedit, prf, ilvr, ddnm, cnn, ibp (no prior)",
        "fixed_t": "comma-separated start steps of the sdedit method",
        "sample_steps": "DDIM steps of every reverse process",
        "sample_seeds": "comma-separated sampling seeds (start noise); metrics per seed",
        "eval_crops": "crops per client to super-resolve",
        "eval_crop_size": "side of the high-resolution evaluation crops in pixels",
        "eval_images": "heldout (the client's test image) or calibration (its training images)",
        "prf_kappa": "PRF noise power per unit of unrecovered energy (fitted on calibration)",
        "prf_per_image": "PRF scales the unrecovered energy by the LR image's own detail",
        "cnn": "folder of the arbitrary-scale CNN baseline ('shipped': the repository's)",
    }

    def validate(self) -> None:
        super().validate()
        for s in self.scale_list():
            if s < 1:
                raise FedlabError(
                    f"scales must all be >= 1 (upscaling), got {s} in {self.scales!r}"
                )
        unknown = [m for m in self.method_list() if m not in METHODS]
        if unknown or not self.method_list():
            raise FedlabError(
                f"methods {self.methods!r}: unknown {unknown}; allowed: {', '.join(METHODS)}"
            )
        for t in self.fixed_t_list():
            if not 0 <= t < 1000:
                raise FedlabError(f"fixed-t values must lie in 0..999, got {t}")
        if "sdedit" in self.method_list() and not self.fixed_t_list():
            raise FedlabError('method sdedit needs fixed-t, e.g. fixed-t="150,300"')
        _positive(self, "sample_steps", "eval_crops", "eval_crop_size", "prf_kappa")
        _non_negative(self, "seed")
        _choice(self, "eval_images", EVAL_IMAGES)
        if not self.sample_seed_list():
            raise FedlabError('sample-seeds must name at least one seed, e.g. sample-seeds="0,1"')

    def check_paths(self) -> None:
        super().check_paths()
        if "cnn" in self.method_list() and not Path(self.cnn_folder()).is_dir():
            raise FedlabError(
                f"cnn folder {self.cnn_folder()!r} does not exist; train it with "
                "simulations/diffsr_train_prior.py cnn, or drop cnn from methods"
            )

    def scale_list(self) -> list[float]:
        return parse_floats("scales", self.scales)

    def method_list(self) -> list[str]:
        return [m.strip() for m in self.methods.split(",") if m.strip()]

    def fixed_t_list(self) -> list[int]:
        return parse_ints("fixed-t", self.fixed_t)

    def sample_seed_list(self) -> list[int]:
        return parse_ints("sample-seeds", self.sample_seeds)

    def cnn_folder(self) -> str:
        return resolve_shipped(self.cnn, SHIPPED_CNN)

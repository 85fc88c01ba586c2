"""Run-config keys of the ``pih_prior`` (style-conditioned prior) and ``harmonization`` apps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fedlab.clients.shipped import shipped_weights
from fedlab.clients.sr.config import DiffusionConfig, parse_floats, parse_ints, resolve_shipped

from fedlab.config import _choice, _non_negative, _positive
from fedlab.errors import FedlabError

#: The federatedly trained, style-conditioned prior (with its styles.json), shipped as package
#: data (``weights/``; trained by simulations/pih_train_prior.py).
SHIPPED_PRIOR = shipped_weights("fedlab.clients.harmonization", "prior-federated")
METHODS = ("cut", "histogram", "reinhard", "sdedit", "freepih")
COMPOSITE_SETS = ("test", "tuning")


@dataclass
class PIHPriorConfig(DiffusionConfig):
    """The diffusion-prior keys for a style-conditioned UNet (``num_class_embeds`` = styles +
    1): clients hold different photos and styles (:func:`fedlab.clients.harmonization.data.
    client_pairs`) and train on random crops of them with their style labels."""

    workload: str = "pih_prior"
    heldout_crops: int = 4

    def prior_folder(self) -> str:
        return resolve_shipped(self.init_from, SHIPPED_PRIOR)


@dataclass
class HarmonizationConfig(PIHPriorConfig):
    """The prior keys plus what each client's harmonization does: client ``k`` of ``K``
    harmonizes composites ``k, k + K, ...`` of the declared set with every method and reports
    content, style and background metrics (means over its composites)."""

    init_from: str = "shipped"
    train_prior: bool = False
    composites: str = "test"
    max_composites: int = 0
    methods: str = "cut,histogram,reinhard,sdedit,freepih"
    sdedit_t: str = "100,300"
    freepih_t: str = "300"  # the study's headline, chosen on the tuning composites
    guidance: str = "1"
    content_weight: float = 1.0
    style_weight: float = 1.0
    sample_steps: int = 10
    sample_seed: int = 0

    KEY_HELP: ClassVar[dict[str, str]] = {
        "train_prior": "train the prior each round; false: clients only harmonize with it",
        "composites": "declared composite set: test (24) or tuning (8)",
        "max_composites": "harmonize only the first N composites of the set (0: all)",
        "methods": "comma-separated: cut, histogram, reinhard, sdedit, freepih",
        "sdedit_t": "comma-separated start steps of SDEdit (whole composite)",
        "freepih_t": "comma-separated start steps of FreePIH (t/T <= 0.3 in the paper)",
        "guidance": "comma-separated FreePIH guidance weights (0: plain masked DDIM)",
        "content_weight": "relative weight of the content guidance",
        "style_weight": "relative weight of the style guidance",
        "sample_steps": "DDIM steps of every reverse process (from its start step)",
        "sample_seed": "seed of the start noise",
    }

    def validate(self) -> None:
        super().validate()
        _choice(self, "composites", COMPOSITE_SETS)
        unknown = [m for m in self.method_list() if m not in METHODS]
        if unknown or not self.method_list():
            raise FedlabError(
                f"methods {self.methods!r}: unknown {unknown}; allowed: {', '.join(METHODS)}"
            )
        for key, values in (("sdedit-t", self.sdedit_t_list()),
                            ("freepih-t", self.freepih_t_list())):  # fmt: skip
            if not all(0 <= t < 1000 for t in values):
                raise FedlabError(f"{key} values must lie in 0..999, got {values}")
        if "sdedit" in self.method_list() and not self.sdedit_t_list():
            raise FedlabError('method sdedit needs sdedit-t, e.g. sdedit-t="100,300"')
        if "freepih" in self.method_list() and not (self.freepih_t_list() and self.guidance_list()):
            raise FedlabError('method freepih needs freepih-t and guidance, e.g. guidance="0,1"')
        if any(g < 0 for g in self.guidance_list()):
            raise FedlabError(f"guidance weights must be >= 0, got {self.guidance!r}")
        _positive(self, "sample_steps")
        _non_negative(self, "max_composites", "content_weight", "style_weight", "sample_seed")

    def method_list(self) -> list[str]:
        return [m.strip() for m in self.methods.split(",") if m.strip()]

    def sdedit_t_list(self) -> list[int]:
        return parse_ints("sdedit-t", self.sdedit_t)

    def freepih_t_list(self) -> list[int]:
        return parse_ints("freepih-t", self.freepih_t)

    def guidance_list(self) -> list[float]:
        return parse_floats("guidance", self.guidance)

"""Run-config keys of the ``pih_prior`` (style-conditioned prior) and ``harmonization`` apps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from fedlab.clients.diffusion_prior import PriorConfig
from fedlab.clients.shipped import shipped_weights

from fedlab.config import (
    check_choice,
    check_non_negative,
    check_not_empty,
    check_positive,
    check_range,
)
from fedlab.errors import FedlabError

#: The federatedly trained, style-conditioned prior (with its styles.json), shipped as package
#: data (``weights/``; trained by simulations/pih_train_prior.py).
SHIPPED_PRIOR = shipped_weights("fedlab.clients.harmonization", "prior-federated")
METHODS = ("cut", "histogram", "reinhard", "sdedit", "freepih")
COMPOSITE_SETS = ("test", "tuning")


@dataclass
class PIHPriorConfig(PriorConfig):
    """The diffusion-prior keys for a style-conditioned UNet (``num_class_embeds`` = styles +
    1): clients hold different photos and styles (:func:`fedlab.clients.harmonization.data.
    client_pairs`) and train on random crops of them with their style labels."""

    WORKLOAD: ClassVar[str] = "pih_prior"
    SHIPPED_PRIOR: ClassVar[Path | None] = SHIPPED_PRIOR

    heldout_crops: int = 4


@dataclass
class HarmonizationConfig(PIHPriorConfig):
    """The prior keys plus what each client's harmonization does: client ``k`` of ``K``
    harmonizes composites ``k, k + K, ...`` of the declared set with every method and reports
    content, style and background metrics (means over its composites)."""

    init_from: str = "shipped"
    train_prior: bool = False
    composites: str = "test"
    max_composites: int = 0
    methods: tuple[str, ...] = METHODS
    sdedit_t: tuple[int, ...] = (100, 300)
    freepih_t: tuple[int, ...] = (300,)  # the study's headline, chosen on the tuning composites
    guidance: tuple[float, ...] = (1.0,)
    content_weight: float = 1.0
    style_weight: float = 1.0
    sample_steps: int = 10
    sample_seed: int = 0

    KEY_HELP: ClassVar[dict[str, str]] = {
        "train_prior": "train the prior each round; false: clients only harmonize with it",
        "composites": "declared composite set: test (24) or tuning (8)",
        "max_composites": "harmonize only the first N composites of the set (0: all)",
        "methods": "cut, histogram, reinhard, sdedit, freepih",
        "sdedit_t": "start steps of SDEdit (whole composite)",
        "freepih_t": "start steps of FreePIH (t/T <= 0.3 in the paper)",
        "guidance": "FreePIH guidance weights (0: plain masked DDIM)",
        "content_weight": "relative weight of the content guidance",
        "style_weight": "relative weight of the style guidance",
        "sample_steps": "DDIM steps of every reverse process (from its start step)",
        "sample_seed": "seed of the start noise",
    }

    def validate(self) -> None:
        super().validate()
        check_choice(self, "composites", COMPOSITE_SETS)
        check_not_empty(self, "methods")
        check_choice(self, "methods", METHODS)
        check_range(self, "sdedit_t", 0, 999)
        check_range(self, "freepih_t", 0, 999)
        if "sdedit" in self.methods and not self.sdedit_t:
            raise FedlabError('method sdedit needs sdedit-t, e.g. sdedit-t="100,300"')
        if "freepih" in self.methods and not (self.freepih_t and self.guidance):
            raise FedlabError('method freepih needs freepih-t and guidance, e.g. guidance="0,1"')
        check_non_negative(self, "guidance")
        check_positive(self, "sample_steps")
        check_non_negative(self, "max_composites", "content_weight", "style_weight", "sample_seed")

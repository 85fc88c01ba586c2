"""Run-config keys of the ZSL apps: the shared ZSL keys, then ParsNets' (``zsl_parsnets``,
also the MLP baseline) and (AR)^2's (``zsl_ar2``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from fedlab.clients.zsl.label_skew import LABEL_SKEW_REMEDIES
from fedlab.clients.zsl.sources import ZSL_DATASETS

from fedlab.config import check_choice, check_non_negative, check_positive, check_range
from fedlab.errors import FedlabError
from fedlab.key_groups import LocalTrainingKeys, RunConfig, SamplingKeys, StrategyKeys


@dataclass
class ZslConfig(LocalTrainingKeys, SamplingKeys, StrategyKeys, RunConfig):
    """The core, strategy and local-training groups plus the keys every ZSL app honours: the
    benchmark, its split and partition, the score scale and the label-skew remedies."""

    zsl_dataset: str = "shapes"
    data_path: str = ""
    test_fraction: float = 0.2
    zsl_split: int = 0
    zsl_partition: str = "classes"
    zsl_validation_classes: int = 0
    zsl_scale: float = 20.0
    gzsl_gamma: float = 0.0
    zsl_label_skew: str = "none"
    fedrs_alpha: float = 0.5
    fedlc_tau: float = 1.0

    KEY_HELP: ClassVar[dict[str, str]] = {
        "zsl_dataset": "ZSL benchmark: a bundled one or xlsa17 from data-path",
        "data_path": "folder of the xlsa17 benchmark (zsl-dataset=xlsa17-<name>)",
        "test_fraction": "share of each seen class held out for the server's seen-class test",
        "zsl_split": "which seen/unseen class split of the benchmark",
        "zsl_partition": "client split: classes (class-disjoint clients) or iid",
        "zsl_validation_classes": "0: the split; k > 0: its tuning task, k seen classes as unseen",
        "zsl_scale": "softmax scale of the compatibility scores",
        "gzsl_gamma": "calibrated-stacking gamma subtracted from seen-class scores",
        "zsl_label_skew": "label-skew remedy in client losses: none, fedrs or fedlc",
        "fedrs_alpha": "FedRS: factor on the logits of seen classes a client does not hold",
        "fedlc_tau": "FedLC: strength of the per-class calibration tau * n_c^(-1/4)",
    }

    def validate(self) -> None:
        super().validate()
        check_choice(self, "zsl_dataset", ZSL_DATASETS)
        check_choice(self, "zsl_partition", ("classes", "iid"))
        check_choice(self, "zsl_label_skew", LABEL_SKEW_REMEDIES)
        check_range(self, "fedrs_alpha", 0, 1)
        if not self.fedlc_tau > 0:
            raise FedlabError(f"fedlc-tau must be > 0 (use zsl-label-skew=none for plain "
                              f"softmax), got {self.fedlc_tau}")  # fmt: skip
        check_positive(self, "zsl_scale")
        check_non_negative(self, "zsl_validation_classes", "zsl_split")
        if not 0 < self.test_fraction < 1:
            raise FedlabError(f"test-fraction must lie in (0, 1), got {self.test_fraction}")


@dataclass
class ParsNetsConfig(ZslConfig):
    """ParsNets (``workload=zsl_parsnets``) or the MLP baseline (``zsl_mlp``) on features."""

    workload: str = "zsl_parsnets"
    parsnets_bases: int = 4
    parsnets_topk: int = 2
    parsnets_ortho: float = 1e-2
    parsnets_lowrank: float = 1e-4
    parsnets_ole: float = 0.1
    mlp_width: int = 128

    KEY_HELP: ClassVar[dict[str, str]] = {
        "workload": "zsl_parsnets or zsl_mlp (the MLP baseline)",
        "parsnets_bases": "ParsNets: K base linear maps",
        "parsnets_topk": "ParsNets: bases a sample's sparse gate selects",
        "parsnets_ortho": "ParsNets: weight of the orthogonality regulariser",
        "parsnets_lowrank": "ParsNets: weight of the low-rank regulariser",
        "parsnets_ole": "ParsNets: weight of the OLE nuclear-norm loss",
        "mlp_width": "hidden width of the MLP baseline (workload=zsl_mlp)",
    }

    @property
    def workload_name(self) -> str:
        return self.workload

    def validate(self) -> None:
        super().validate()
        check_choice(self, "workload", ("zsl_parsnets", "zsl_mlp"))
        check_positive(self, "parsnets_bases", "parsnets_topk", "mlp_width")
        check_non_negative(self, "parsnets_ortho", "parsnets_lowrank", "parsnets_ole")
        if self.parsnets_topk > self.parsnets_bases:
            raise FedlabError(
                f"parsnets-topk {self.parsnets_topk} exceeds parsnets-bases "
                f"{self.parsnets_bases}; the gate can select at most all bases"
            )


@dataclass
class Ar2Config(ZslConfig):
    """(AR)^2 on images: pretraining on seen classes, then EMA fine-tuning."""

    WORKLOAD: ClassVar[str] = "zsl_ar2"

    ar2_phase: str = "auto"
    ar2_pretrain_rounds: int = 2
    ar2_ema: float = 0.95
    ar2_uad: float = 1.0
    ar2_agl: float = 1.0
    ar2_nearest_unseen: int = 2
    ar2_width: int = 16

    KEY_HELP: ClassVar[dict[str, str]] = {
        "ar2_phase": "(AR)^2 phase: auto, pretrain or finetune",
        "ar2_pretrain_rounds": "(AR)^2: rounds of pretraining before fine-tuning (auto)",
        "ar2_ema": "(AR)^2: EMA momentum of the teacher",
        "ar2_uad": "(AR)^2: weight of unseen-aware distillation",
        "ar2_agl": "(AR)^2: weight of attribute-guided learning",
        "ar2_nearest_unseen": "(AR)^2: nearest unseen classes weighing the distillation",
        "ar2_width": "(AR)^2: backbone width",
    }

    def validate(self) -> None:
        super().validate()
        check_choice(self, "ar2_phase", ("auto", "pretrain", "finetune"))
        check_positive(self, "ar2_width", "ar2_nearest_unseen")
        check_non_negative(self, "ar2_pretrain_rounds", "ar2_uad", "ar2_agl")
        if not 0 <= self.ar2_ema < 1:
            raise FedlabError(f"ar2-ema must lie in [0, 1), got {self.ar2_ema}")

    def phase(self, server_round: int) -> str:
        """(AR)^2 phase of a round: pretraining for the first ``ar2-pretrain-rounds``."""
        if self.ar2_phase != "auto":
            return self.ar2_phase
        return "pretrain" if server_round <= self.ar2_pretrain_rounds else "finetune"


def zsl_config(values: Mapping[str, Any]) -> ZslConfig:
    """The validated config of the ZSL app that runs ``values["workload"]``: (AR)^2's for
    ``zsl_ar2`` (whose workload is fixed), ParsNets' otherwise (``zsl_parsnets``, ``zsl_mlp``)."""
    values = dict(values)
    if values.get("workload") == "zsl_ar2":
        del values["workload"]
        return Ar2Config.from_mapping(values)
    return ParsNetsConfig.from_mapping(values)

"""Every key an app lists is one it honours: set to a valid non-default value, the app's server
or client code reads it during one in-process round; any other key is refused before Ray.

Reads are recorded by patching :class:`fedlab.config.Config`'s attribute access for the run; a
read counts when no validation, serialisation or pre-flight frame is on the stack (those read
every key whatever the app does with it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fedlab.strategies.fedfoa import FedFoA

from fedlab.apps import names
from fedlab.cli import flower_simulation_main
from fedlab.config import Config, to_key
from fedlab.inprocess import run_in_process
from fedlab.registry import APPS

#: Frames whose reads do not count: they touch every key whatever the app honours.
NOT_USE = {
    "validate",
    "describe_keys",
    "to_mapping",
    "to_json",
    "from_mapping",
    "replace",
    "__repr__",
    "__eq__",
    "resolve_config",
    "check_paths",
    "check_by_building",
    "preflight",
    "check",
    "setting_of",
    "same_setting",
    "reference_line",
    "write_config",
    "_asdict_inner",
    "asdict",
    "check_prior_app",
    "warnings",
}


class MyFedFoA(FedFoA):
    """A researcher's FedFoA subclass: a valid non-default ``strategy`` of the fedfoa app."""


def _image_folder(root: Path) -> Path:
    """Two classes of 8x8 PNGs: a user dataset in the ``imagefolder`` format."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(24):
            pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def runs_of(app: str, tmp: Path) -> list[dict[str, Any]]:
    """The runs of ``app`` that together set every listed key to a valid non-default value."""
    folder = str(_image_folder(tmp / "images"))
    core = {"seed": 1, "round-timeout": 300.0, "device": "cpu", "min-replies": 2,
            "fail-partitions": [4], "num-supernodes": 5, "fraction-train": 0.75}  # fmt: skip
    local = {"local-epochs": 2, "local-steps": 1, "batch-size": 4, "optimizer": "adamw",
             "momentum": 0.5, "weight-decay": 1e-4, "lr-schedule": "cosine",
             "lr": 0.01}  # fmt: skip
    data = {"dataset": "imagefolder", "data-path": folder, "image-size": 8,
            "test-fraction": 0.25, "partitioner": "dirichlet", "dirichlet-alpha": 5.0,
            "shards-per-partition": 3}  # fmt: skip
    traces = {"record-traces": True, "trace-rounds": [1], "trace-clients": [0],
              "trace-batch-size": 2}  # fmt: skip
    supervised = {**core, **local, **data, **traces, "num-server-rounds": 1,
                  "workload": "fedlab.clients.supervised.workload:SupervisedWorkload",
                  "model": "mlp", "strategy": "fedavgm"}  # fmt: skip
    # data-path is honoured with zsl-dataset=xlsa17 only (a local benchmark folder), which this
    # round does not build; tests/zsl/test_xlsa17.py reads such a folder.
    zsl = {"zsl-dataset": "digits", "test-fraction": 0.3, "zsl-split": 1,
           "zsl-partition": "iid", "zsl-validation-classes": 1, "zsl-scale": 10.0,
           "gzsl-gamma": 0.1, "zsl-label-skew": "fedrs", "fedrs-alpha": 0.3, "fedlc-tau": 0.5,
           "strategy": "fedavgm", "optimizer": "sgd"}  # fmt: skip
    prior = {**core, **local, "strategy": "fedavgm", "num-server-rounds": 1, "unet": "tiny",
             "crop-size": 16, "crops-per-client": 8, "heldout-crops": 1,
             "save-prior": False}  # fmt: skip
    first_cadm = {
        **core,
        **local,
        "optimizer": "sgd",
        "num-server-rounds": 1,
        "unet": "tiny",
        "pairs": ["2x8"],
        "crfs": [30],
        "conditioned": False,
        "patch-size": 16,
        "patches-per-client": 4,
        "train-clips": 6,
        "sample-steps": 2,
        "focus-prob": 0.5,
        "residual-scale": 0.05,
        "clip-seed": 1,
        "validation-frames": 2,
        "validate-every": 2,
        "patch-cache": str(tmp / "patches"),
        "strategy": "fedavgm",
    }
    runs = {
        "fedavg": [supervised],
        "dpfedavg": [
            {
                **supervised,
                "fraction-train": None,
                "min-replies": 0,
                "dp-mode": "central-client",
                "clip-norm": 0.5,
                "noise-multiplier": 0.0,
                "target-epsilon": 50.0,
                "delta": 1e-4,
                "report-pld": True,
                "sampling": "fixed",
                "sample-rate": 0.4,
                "adaptive-clipping": True,
                "target-quantile": 0.6,
                "clip-lr": 0.3,
                "clipped-count-stddev": 1.5,
                "local-epsilon": 20.0,
                "local-delta": 1e-4,
                "local-noise": "laplace",
                "dp-accounted": "central",
                "dp-sgd": True,
                "dp-sgd-noise-multiplier": 0.8,
                "dp-sgd-max-grad-norm": 0.9,
                "dp-sgd-delta": 1e-4,
                "dp-seeded-noise": True,
            },
            {
                **supervised,
                "fraction-train": None,
                "dp-mode": "none",
                "min-replies": 2,
                "sample-rate": 0.4,
            },
            {  # a population larger than the workers, on synthetic clients
                **supervised,
                "fraction-train": None,
                "model": None,
                "workload": None,
                "dp-mode": "none",
                "min-replies": 0,
                "sampling": "fixed",
                "record-traces": None,
                "trace-rounds": None,
                "trace-clients": None,
                "trace-batch-size": None,
                "dataset": "synthetic",
                "population": 40,
                "sample-rate": 0.1,
                "synthetic-alpha": 0.5,
                "synthetic-beta": 0.5,
                "synthetic-size-mu": 3.0,
                "synthetic-size-sigma": 1.0,
                "synthetic-min-size": 10,
                "synthetic-max-size": 200,
                "synthetic-iid": True,
                "eval-clients": 3,
            },
        ],  # fmt: skip
        "fedfoa": [
            {
                **core,
                **local,
                **data,
                "num-server-rounds": 2,
                "strategy": f"{__name__}:MyFedFoA",
                "encoders": ["cnn:4", "mlp:8"],
                "ssl-method": "spectral",
                "proj-dim": 8,
                "proj-hidden": 16,
                "temperature": 0.3,
                "relation-rank": 4,
                "warmup-rounds": 0,
                "probe-every": 1,
                "probe-size": 20,
                "min-partition-size": 3,
                "relation-objective": "fedsc",
                "fedsc-alpha-min": 0.3,
                "spectral-mu": 4.0,
            },
            {
                **core,
                **local,
                **data,
                "num-server-rounds": 2,
                "encoders": ["cnn:2", "mlp:8"],
                "ssl-method": "byol",
                "byol-momentum": 0.9,
                "fedfoa-lambda": 0.5,
                "fedfoa-schedule": "ramp",
                "relation-features": "encoder",
                "relation-kind": "anchor-gram",
                "anchor-count": 12,
                "proj-dim": 8,
                "proj-hidden": 16,
                "relation-rank": 4,
            },
            {
                **core,
                **local,
                **data,
                "num-server-rounds": 1,
                "encoders": ["mlp:8"],
                "weight-averaging": True,
                "fedema-scaler": 0.01,
                "shared-init": True,
                "partitioner": "shards",
                "test-fraction": 0.3,
                "proj-dim": 8,
                "proj-hidden": 16,
            },
            {
                **core,
                **local,
                **data,
                "num-server-rounds": 2,
                "encoders": ["mlp:8"],
                "weight-averaging": True,
                "fedema-tau": 0.5,
                "proj-dim": 8,
                "proj-hidden": 16,
            },
        ],  # fmt: skip
        "zsl_parsnets": [
            {
                **core,
                **local,
                **zsl,
                "num-server-rounds": 1,
                "parsnets-bases": 3,
                "parsnets-topk": 1,
                "parsnets-ortho": 0.02,
                "parsnets-lowrank": 1e-3,
                "parsnets-ole": 0.2,
            },
            {
                **core,
                **local,
                **zsl,
                "num-server-rounds": 1,
                "workload": "zsl_mlp",
                "mlp-width": 16,
            },
        ],
        "zsl_ar2": [
            {
                **core,
                **local,
                **zsl,
                "num-server-rounds": 2,
                "ar2-phase": "auto",
                "ar2-pretrain-rounds": 1,
                "ar2-ema": 0.9,
                "ar2-uad": 0.5,
                "ar2-agl": 0.5,
                "ar2-nearest-unseen": 1,
                "ar2-width": 4,
            },
            {
                **core,
                **local,
                **zsl,
                "num-server-rounds": 1,
                "ar2-phase": "finetune",
                "ar2-width": 4,
            },
        ],
        "diffusion": [{**prior, "init-from": str(tiny_prior(tmp, 16))}],
        "pih_prior": [
            {**prior, "init-from": str(tiny_prior(tmp, 16, styles=True))},
            {**prior, "num-server-rounds": 2},
        ],
        "diffsr": [
            {
                **prior,
                "init-from": str(tiny_prior(tmp, 16)),
                "train-prior": False,
                "scales": [2],
                "methods": ["bicubic", "sdedit", "prf", "ilvr", "ddnm", "cnn", "ibp"],
                "fixed-t": [100],
                "sample-steps": 2,
                "sample-seeds": [1],
                "eval-crops": 1,
                "eval-crop-size": 16,
                "eval-images": "calibration",
                "prf-kappa": 0.1,
                "prf-per-image": True,
                "cnn": str(shipped_cnn()),
            },
            {**prior, "init-from": str(tiny_prior(tmp, 16)), "methods": ["bicubic"]},
        ],
        "harmonization": [
            {
                **prior,
                "init-from": str(tiny_prior(tmp, 16, styles=True)),
                "train-prior": True,
                "num-server-rounds": 2,
                "composites": "tuning",
                "max-composites": 5,
                "methods": ["cut", "sdedit", "freepih"],
                "sdedit-t": [50],
                "freepih-t": [60],
                "guidance": [0.5],
                "content-weight": 0.5,
                "style-weight": 0.5,
                "sample-steps": 2,
                "sample-seed": 1,
            },
            {
                **prior,
                "init-from": "",
                "composites": "tuning",
                "max-composites": 5,
                "methods": ["cut"],
            },
        ],
        "streaming_arena": [
            {
                **core,
                **local,
                "optimizer": "sgd",
                "num-server-rounds": 1,
                "frame-size": 32,
                "frames-per-video": 6,
                "videos-per-client": 1,
                "test-videos": 1,
                "patch-size": 4,
                "vit-dim": 8,
                "vit-depth": 1,
                "vit-heads": 2,
                "vit-mlp-ratio": 1.0,
                "max-gap": 2,
                "keep-min": 0.2,
                "keep-max": 0.6,
                "full-prob": 0.5,
                "arena-eval": True,
                "arena-budget": 0.5,
                "arena-interval": 2,
                "strategy": "fedavgm",
            },
            {
                **core,
                **local,
                "optimizer": "sgd",
                "num-server-rounds": 1,
                "frame-size": 32,
                "frames-per-video": 6,
                "videos-per-client": 1,
                "test-videos": 1,
                "patch-size": 4,
                "vit-dim": 8,
                "vit-depth": 1,
                "vit-heads": 2,
                "vit-mlp-ratio": 1.0,
                "arena-eval": False,
                "init-from": str(tmp / "run0"),  # the first run's folder
            },
        ],
        "streaming_cadm": [
            first_cadm,
            {
                **first_cadm,
                "save-decoder": False,
                "init-from": str(tmp / "run0" / "decoder"),
            },  # the first run's decoder
        ],
    }
    return [{k: v for k, v in run.items() if v is not None} for run in runs[app]]


def tiny_prior(tmp: Path, size: int, *, styles: bool = False) -> Path:
    """A tiny UNet folder (the ``init-from`` of the prior apps), style-conditioned or not."""
    from fedlab.diffusion import build_unet

    folder = tmp / ("tiny-styles" if styles else "tiny")
    if not folder.is_dir():
        if styles:
            from fedlab.clients.harmonization.data import STYLES
            from fedlab.clients.harmonization.workload import save_prior

            save_prior(build_unet("tiny", sample_size=size, num_class_embeds=len(STYLES) + 1),
                       folder)  # fmt: skip
        else:
            build_unet("tiny", sample_size=size).save_pretrained(folder)
    return folder


def shipped_cnn() -> Path:
    from fedlab.clients.sr.config import SHIPPED_CNN

    return SHIPPED_CNN


class ReadRecorder:
    """Names of config fields read outside validation, serialisation and pre-flight."""

    def __init__(self) -> None:
        self.reads: set[str] = set()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original = Config.__getattribute__
        reads = self.reads

        def recording(obj: Any, name: str) -> Any:
            value = original(obj, name)
            if name in original(obj, "__dataclass_fields__"):
                frame = sys._getframe(1)
                while frame is not None:
                    if frame.f_code.co_name in NOT_USE:
                        return value
                    frame = frame.f_back
                reads.add(to_key(name))
            return value

        monkeypatch.setattr(Config, "__getattribute__", recording)


@pytest.mark.parametrize("app", names())
def test_every_listed_key_is_set_and_read(app, tmp_path, monkeypatch):
    spec = APPS.get(app)
    listed = set(spec.resolve_config().keys())
    defaults = spec.resolve_config().to_mapping()
    runs = runs_of(app, tmp_path)
    changed: set[str] = set()
    recorder = ReadRecorder()
    recorder.install(monkeypatch)
    for i, values in enumerate(runs):
        config = spec.resolve_config(values, {"out-dir": str(tmp_path / f"run{i}")})
        changed |= {k for k, v in config.to_mapping().items() if v != defaults[k]}
        run_in_process(spec, config)
    untested = {"data-path"} if app.startswith("zsl_") else set()  # see runs_of
    assert listed - changed - untested == set(), f"{app}: keys never set to a non-default value"
    assert listed - recorder.reads == set(), f"{app}: listed keys its code never read"


@pytest.mark.parametrize("app", names())
def test_a_key_outside_the_apps_groups_is_refused_before_ray(app, capsys):
    foreign = next(k for k in ("record-traces", "dataset", "model", "unet", "dp-mode")
                   if k not in APPS.get(app).resolve_config().keys())  # fmt: skip
    code = flower_simulation_main(["--app", f"fedlab.apps:{app}", "--run-config", f"{foreign}=1"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"unknown run-config key {foreign!r}" in err and "valid keys:" in err

"""Train CaDM's decoders and the CNN baseline (docs/cadm.md, "Training"; budget declared there).

    python simulations/cadm_train.py patches              # every client's patches, once
    python simulations/cadm_train.py central              # codec-aware, centrally (THE loop)
    python simulations/cadm_train.py federated aware      # the streaming_cadm app (FedAvg)
    python simulations/cadm_train.py federated unaware    # the same with conditioned=false
    python simulations/cadm_train.py cnn                  # the NAS/NEMO-sized CNN, centrally
    python simulations/cadm_train.py validate             # every model on the validation clips
    python simulations/cadm_train.py report               # its table (table-validation.md)
    python simulations/cadm_train.py ship                 # final models into place

* ``central``: the codec-aware decoder trained through ``train_with_checkpoints`` on the union
  of the 4 clients' patches, :data:`BUDGET` steps: what the decoder can reach;
* ``federated``: the ``streaming_cadm`` app in process (its own server and client code), 4
  clients holding different clips, the same number of steps in all (rounds x clients x local
  steps), run in chunks of :data:`CHUNK_ROUNDS` rounds, each starting from the previous
  chunk's decoder (``init-from``) with the chunk's index as its seed (fresh batches and
  noise; the clips and patches are fixed by ``clip-seed``);
* ``cnn``: the baseline through the same loop on the same union, the same steps.

Every stage resumes where it stopped (checkpoints and chunk folders under ``runs/cadm-train``,
patches under ``runs/cadm-patches``). ``ship`` writes the federated codec-aware decoder into
the package data (``clients/cadm/weights/decoder``, the default of ``fedlab stream``), the
others to ``simulations/results/cadm/{decoder-unaware,decoder-central,cnn}``; ``validate``
writes ``simulations/results/cadm/training.json``. One thread per process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "simulations" / "results" / "cadm"
RUNS = ROOT / "runs" / "cadm-train"
PATCH_CACHE = ROOT / "runs" / "cadm-patches"
CLIENTS = 4
LOCAL_STEPS = 50
CHUNK_ROUNDS = 10
BUDGET = 12000
"""Optimizer steps of every model (batch 16, Adam 1e-3), declared before training."""
CHECKPOINT_EVERY = 2000


def app_config(**overrides: object) -> dict:
    """The study's run config of the ``streaming_cadm`` app (everything else its defaults)."""
    return {
        "num-supernodes": CLIENTS, "local-steps": LOCAL_STEPS, "train-clips": 16,
        "patches-per-client": 8192, "clip-seed": 0, "seed": 0, "validate-every": CHUNK_ROUNDS,
        "patch-cache": str(PATCH_CACHE),
    } | overrides  # fmt: skip


def _resolve(**overrides: object):  # noqa: ANN202
    from fedlab.clients.cadm.app import streaming_cadm

    return streaming_cadm.resolve_config(app_config(out_dir=str(RUNS / "unused"), **overrides))


def union_patches():  # noqa: ANN201
    from fedlab.clients.cadm.workload import CadmWorkload
    from torch.utils.data import ConcatDataset

    workload = CadmWorkload(_resolve())
    return ConcatDataset([workload.client_dataset(p, CLIENTS) for p in range(CLIENTS)])


def make_patches() -> dict:
    start = time.perf_counter()
    data = union_patches()
    return {"patches": len(data), "seconds": round(time.perf_counter() - start, 1)}


def train_central(name: str, model: torch.nn.Module, step, evaluate=None,  # noqa: ANN001
                  steps: int = BUDGET) -> dict:  # fmt: skip
    from fedlab.diffusion import train_with_checkpoints
    from fedlab.training import TrainConfig

    start = time.perf_counter()
    torch.manual_seed(0)
    every = min(CHECKPOINT_EVERY, steps)
    result = train_with_checkpoints(
        model, union_patches(), step,
        TrainConfig(steps=1, batch_size=16, optimizer="adam", lr=1e-3),
        out=RUNS / name, total_steps=steps, checkpoint_every=every, seed=0,
        evaluate=evaluate, keep=max(1, steps // every),
    )  # fmt: skip
    return {"steps": result["step"], "seconds-this-session": round(time.perf_counter() - start, 1),
            "history": result["history"]}  # fmt: skip


def central_decoder(variant: dict | None = None, steps: int = BUDGET, tag: str = "") -> dict:
    """The codec-aware decoder centrally; ``variant`` (run-config keys) and ``steps`` make a
    probe of another setting in ``central-aware-<tag>`` (not the declared run)."""
    from fedlab.clients.cadm.app import decoder_from_arrays, validation_metrics
    from fedlab.clients.cadm.workload import CadmWorkload
    from flwr.app import ArrayRecord

    config = _resolve(**(variant or {}))
    workload = CadmWorkload(config)

    def evaluate(model: torch.nn.Module) -> dict:
        decoder = decoder_from_arrays(config, ArrayRecord(model.state_dict()))
        return validation_metrics(config, decoder)

    name = f"central-aware-{tag}" if tag else "central-aware"
    return train_central(name, workload.build_model(), workload.step, evaluate, steps) | {
        "variant": variant or {}
    }


def cnn() -> dict:
    from fedlab.clients.cadm.model import SmallSR, sr_step

    torch.manual_seed(0)
    return train_central("cnn", SmallSR(), sr_step)


def federated(name: str) -> dict:
    """Chunks of :data:`CHUNK_ROUNDS` rounds; a finished chunk (its ``decoder/``) is kept."""
    from fedlab.clients.cadm.app import streaming_cadm

    from fedlab.inprocess import run_in_process

    rounds = BUDGET // (CLIENTS * LOCAL_STEPS)
    chunks, record = rounds // CHUNK_ROUNDS, []
    previous = ""
    for k in range(chunks):
        folder = RUNS / f"federated-{name}" / f"chunk-{k}"
        if not (folder / "decoder" / "cadm.json").is_file():
            if folder.exists():
                shutil.rmtree(folder)  # an interrupted chunk reruns whole
            config = streaming_cadm.resolve_config(app_config(
                **{"num-server-rounds": CHUNK_ROUNDS, "conditioned": name == "aware",
                   "seed": k, "init-from": previous, "out-dir": str(folder)}
            ))  # fmt: skip
            start = time.perf_counter()
            run_in_process(streaming_cadm, config)
            (folder / "seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
        summary = json.loads((folder / "summary.json").read_text())
        record.append({"chunk": k, "seconds": float((folder / "seconds.txt").read_text()),
                       "final": summary.get("final", {}).get("evaluate")})  # fmt: skip
        previous = str(folder / "decoder")
    return {"steps": chunks * CHUNK_ROUNDS * CLIENTS * LOCAL_STEPS, "chunks": record,
            "decoder": previous}  # fmt: skip


MODELS = ("bicubic", "cnn", "central-aware", "federated-aware", "federated-unaware")


def model_paths() -> dict[str, Path]:
    last = BUDGET // (CLIENTS * LOCAL_STEPS) // CHUNK_ROUNDS - 1
    return {
        "cnn": RUNS / "cnn", "central-aware": RUNS / "central-aware",
        "federated-aware": RUNS / "federated-aware" / f"chunk-{last}" / "decoder",
        "federated-unaware": RUNS / "federated-unaware" / f"chunk-{last}" / "decoder",
    }  # fmt: skip


def _latest(folder: Path) -> Path:
    from fedlab.diffusion.training import read_latest

    return folder / read_latest(folder)["path"]


def restorers() -> dict:
    from diffusers import UNet2DModel
    from fedlab.clients.cadm.app import decoder_from_arrays
    from fedlab.clients.cadm.model import SmallSR, load_decoder
    from flwr.app import ArrayRecord

    paths = model_paths()
    small = SmallSR.from_pretrained(_latest(paths["cnn"]), use_safetensors=True).eval()
    unet = UNet2DModel.from_pretrained(_latest(paths["central-aware"]), use_safetensors=True)
    central = decoder_from_arrays(_resolve(), ArrayRecord(unet.state_dict()))
    aware = load_decoder(paths["federated-aware"])
    unaware = load_decoder(paths["federated-unaware"])
    return {
        "bicubic": None, "cnn": lambda up, r, b: small.restore(up),
        "central-aware": central.restore, "federated-aware": aware.restore,
        "federated-unaware": unaware.restore,
    }  # fmt: skip


def validate() -> dict:
    """Whole-clip PSNR gain over bicubic of every model, every pair and CRF, on the validation
    clips (never trained on) and on the 16 training clips; means per set, model and pair."""
    import numpy as np
    from fedlab.clients.cadm.app import validation_psnr
    from fedlab.clients.cadm.data import VALIDATION_CLIPS, train_clips, validation_clips

    config = _resolve()
    sets = {
        "validation": dict(zip(VALIDATION_CLIPS, validation_clips(config.clip_seed), strict=True)),
        "training": {f"train-{k}": clip
                     for k, clip in enumerate(train_clips(config.train_clips, config.clip_seed))},
    }  # fmt: skip
    rows = []
    for method, restore in restorers().items():
        for set_name, clips in sets.items():
            for clip_name, clip in clips.items():
                for r, b in config.pair_list():
                    for crf in config.crf_list():
                        bic, psnr = validation_psnr(clip, r, b, crf, restore)
                        rows.append({"set": set_name, "method": method, "clip": clip_name,
                                     "r": r, "b": b, "crf": crf, "psnr": psnr,
                                     "gain": psnr - bic})  # fmt: skip
    means: dict = {}
    for row in rows:
        key = f"{row['set']} {row['method']} r{row['r']}b{row['b']}"
        means.setdefault(key, []).append(row["gain"])
    return {"mean-gain-db": {k: float(np.mean(v)) for k, v in means.items()}, "rows": rows}


def validation_table(result: dict) -> str:
    """Markdown: mean PSNR gain over bicubic (dB; over clips and CRFs) per set, model, pair."""
    means = result["mean-gain-db"]
    pairs = list(dict.fromkeys(k.rpartition(" ")[2] for k in means))
    lines = ["| clips | model | " + " | ".join(pairs) + " |",
             "|---|---|" + "---|" * len(pairs)]  # fmt: skip
    for set_name in ("validation", "training"):
        for method in MODELS[1:]:
            cells = [f"{means[f'{set_name} {method} {p}']:+.2f}" for p in pairs]
            lines.append(f"| {set_name} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def curve_table(central: dict, federated: dict[str, dict]) -> str:
    """Markdown: validation gain over bicubic (dB, middle CRF, mean of both clips) along
    training: the central run's checkpoints and the federated runs' chunks."""
    pairs = [k[len("psnr-decoder-"):] for k in central["history"][0]
             if k.startswith("psnr-decoder-")]  # fmt: skip

    def cells(metrics: dict) -> str:
        gains = [metrics[f"psnr-decoder-{p}"] - metrics[f"psnr-bicubic-{p}"] for p in pairs]
        return " | ".join(f"{g:+.3f}" for g in gains) + f" | {metrics['psnr-gain']:+.3f}"

    lines = ["| run | steps | train loss | " + " | ".join(pairs) + " | mean | seconds |",
             "|---|---|---|" + "---|" * (len(pairs) + 2)]  # fmt: skip
    for h in central["history"]:
        lines.append(f"| central aware | {h['step']} | {h['train-loss']:.4f} | {cells(h)} | "
                     f"{h['seconds']:.0f} |")  # fmt: skip
    per_chunk = CHUNK_ROUNDS * CLIENTS * LOCAL_STEPS
    for name, result in federated.items():
        for c in result["chunks"]:
            lines.append(f"| federated {name} | {(c['chunk'] + 1) * per_chunk} | - | "
                         f"{cells(c['final'])} | {c['seconds']:.0f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def ship() -> dict:
    from diffusers import UNet2DModel
    from fedlab.clients.cadm.app import decoder_from_arrays
    from fedlab.clients.cadm.config import SHIPPED_DECODER
    from fedlab.clients.cadm.model import SmallSR
    from flwr.app import ArrayRecord

    paths = model_paths()
    for target, source in ((SHIPPED_DECODER, paths["federated-aware"]),
                           (OUT / "decoder-unaware", paths["federated-unaware"])):  # fmt: skip
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
    unet = UNet2DModel.from_pretrained(_latest(paths["central-aware"]), use_safetensors=True)
    shutil.rmtree(OUT / "decoder-central", ignore_errors=True)
    decoder_from_arrays(_resolve(), ArrayRecord(unet.state_dict())).save(OUT / "decoder-central")
    small = SmallSR.from_pretrained(_latest(paths["cnn"]), use_safetensors=True)
    shutil.rmtree(OUT / "cnn", ignore_errors=True)
    small.save_pretrained(OUT / "cnn", safe_serialization=True)
    return {"shipped": str(SHIPPED_DECODER.relative_to(ROOT))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=("patches", "central", "federated", "cnn", "validate",
                                          "report", "ship"))  # fmt: skip
    parser.add_argument("name", nargs="?", choices=("aware", "unaware"), default="aware")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="central only: a probe with these run-config keys (needs --tag)",
    )
    parser.add_argument("--steps", type=int, default=BUDGET, help="central probe only")
    parser.add_argument("--tag", default="", help="central probe only: names its folder")
    args = parser.parse_args()
    if (args.set or args.steps != BUDGET) and not (args.stage == "central" and args.tag):
        parser.error("--set and --steps make a central probe: give stage central and --tag")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    from fedlab.atomic import atomic_write_text

    if args.stage == "report":
        table = validation_table(json.loads((OUT / "training-validate.json").read_text()))
        atomic_write_text(OUT / "table-validation.md", table)
        central = json.loads((OUT / "training-central.json").read_text())
        federated = {n: json.loads((OUT / f"training-federated-{n}.json").read_text())
                     for n in ("aware", "unaware")}  # fmt: skip
        curve = curve_table(central, federated)
        atomic_write_text(OUT / "table-training.md", curve)
        print(curve + "\n" + table)
        return
    variant = {k: json.loads(v) for k, _, v in (item.partition("=") for item in args.set)}
    stages = {
        "patches": make_patches,
        "central": lambda: central_decoder(variant, args.steps, args.tag),
        "cnn": cnn,
        "validate": validate,
        "ship": ship,
        "federated": lambda: federated(args.name),
    }
    result = stages[args.stage]()
    key = f"{args.stage}-{args.name}" if args.stage == "federated" else args.stage
    key = f"{key}-{args.tag}" if args.tag else key
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"training-{key}.json"
    atomic_write_text(path, json.dumps(result, indent=1))
    logging.info("%s: %s", key, json.dumps(result)[:400])


if __name__ == "__main__":
    main()

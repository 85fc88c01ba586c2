"""Train CaDM's decoders and the CNN baseline (docs/cadm.md, "Training").

    python simulations/cadm_train.py [--rounds 5 --local-steps 50] [--only aware,unaware,cnn]
    python simulations/cadm_train.py --only aware-central

* ``aware``: the ``streaming_cadm`` app (run in process: the app's own server and client code,
  FedAvg over 4 clients holding different clips), codec-aware (``conditioned=true``);
* ``unaware``: the same app, data, steps and seed with ``conditioned=false``;
* ``cnn``: the NAS/NEMO-sized CNN baseline, trained centrally through THE loop
  (``fedlab.diffusion.train_with_checkpoints``) on the union of the clients' patch pairs, with
  the same number of steps, batch size, learning rate and seed;
* ``aware-central``: the codec-aware decoder trained centrally through the same loop on the
  union of the clients' patches (figures only: the app's validation metrics).

Writes the codec-aware decoder straight into the package data,
``clients/cadm/weights/decoder`` (the default of ``fedlab stream decode``/``evaluate``),
the study-only models to ``simulations/results/cadm/{decoder-unaware,cnn}`` and the run folders'
histories under ``simulations/results/cadm/train-*``. One thread.
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

OUT = Path(__file__).resolve().parent / "results" / "cadm"


def decoder_folder(name: str) -> Path:
    """Where the ``name`` decoder goes: the shipped (aware) one into the package data."""
    if name == "aware":
        from fedlab.clients.cadm.config import SHIPPED_DECODER

        return SHIPPED_DECODER
    return OUT / f"decoder-{name}"


def app_config(conditioned: bool, args: argparse.Namespace, out_dir: Path) -> dict:
    return {
        "num-supernodes": 4, "num-server-rounds": args.rounds, "local-steps": args.local_steps,
        "conditioned": conditioned, "seed": 0, "out-dir": str(out_dir),
    }  # fmt: skip


def train_decoder(name: str, conditioned: bool, args: argparse.Namespace) -> dict:
    from fedlab.clients.cadm.app import streaming_cadm

    from fedlab.inprocess import run_in_process

    run_dir = OUT / f"train-{name}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    config = streaming_cadm.resolve_config(app_config(conditioned, args, run_dir))
    start = time.perf_counter()
    summary = run_in_process(streaming_cadm, config)
    seconds = time.perf_counter() - start
    target = decoder_folder(name)
    if target.exists():
        shutil.rmtree(target)
    shutil.move(str(run_dir / "decoder"), target)
    (run_dir / "model.safetensors").unlink(missing_ok=True)  # the decoder folder holds it
    return {"seconds": round(seconds, 1), "final": summary.get("final", {})}


def train_cnn(args: argparse.Namespace) -> dict:
    from fedlab.clients.cadm.app import streaming_cadm
    from fedlab.clients.cadm.data import PairPatches, train_clips
    from fedlab.clients.cadm.model import SmallSR, sr_step

    from fedlab.diffusion import train_with_checkpoints
    from fedlab.training import TrainConfig

    config = streaming_cadm.resolve_config(app_config(True, args, OUT / "unused"))
    steps = config.num_server_rounds * config.num_supernodes * config.local_steps
    data = PairPatches(train_clips(config.train_clips, config.seed), config.pair_list(),
                       config.crf_list(), config.patch_size,
                       config.patches_per_client * config.num_supernodes, seed=1)  # fmt: skip
    torch.manual_seed(config.seed)
    model = SmallSR()
    ckpt = OUT / "train-cnn"
    if ckpt.exists():
        shutil.rmtree(ckpt)
    start = time.perf_counter()
    result = train_with_checkpoints(
        model, data, sr_step,
        TrainConfig(steps=1, batch_size=config.batch_size, optimizer="adam", lr=config.lr),
        out=ckpt, total_steps=steps, checkpoint_every=max(1, steps // 4), seed=config.seed,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    target = OUT / "cnn"
    model.eval().save_pretrained(target, safe_serialization=True)
    history = result["history"]
    shutil.rmtree(ckpt)
    return {"seconds": round(seconds, 1), "steps": steps, "history": history}


def train_decoder_central(args: argparse.Namespace) -> dict:
    """The codec-aware decoder trained centrally: THE loop on the union of the 4 clients'
    patch pairs, the federated run's steps, batch size, learning rate and seed; the figures
    are the app's own validation metrics. The model is not shipped (the federated one is)."""
    import tempfile

    from fedlab.clients.cadm.app import (
        decoder_from_arrays,
        streaming_cadm,
        validation_metrics,
    )
    from fedlab.clients.cadm.workload import CadmWorkload
    from flwr.app import ArrayRecord
    from torch.utils.data import ConcatDataset

    from fedlab.diffusion import train_with_checkpoints
    from fedlab.training import TrainConfig

    config = streaming_cadm.resolve_config(app_config(True, args, OUT / "unused"))
    workload = CadmWorkload(config)
    n = config.num_supernodes
    steps = config.num_server_rounds * n * config.local_steps
    data = ConcatDataset([workload.client_dataset(p, n) for p in range(n)])
    torch.manual_seed(config.seed)
    model = workload.build_model()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train_with_checkpoints(
            model, data, workload.step,
            TrainConfig(steps=1, batch_size=config.batch_size, optimizer="adam", lr=config.lr),
            out=Path(tmp), total_steps=steps, checkpoint_every=steps, seed=config.seed,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    decoder = decoder_from_arrays(config, ArrayRecord(model.state_dict()))
    return {"seconds": round(seconds, 1), "steps": steps,
            "validation": validation_metrics(config, decoder)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--local-steps", type=int, default=50)
    parser.add_argument("--only", default="aware,unaware,cnn")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    record_path = OUT / "training.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    for name in args.only.split(","):
        if name == "cnn":
            record[name] = train_cnn(args)
        elif name == "aware-central":
            record[name] = train_decoder_central(args)
        else:
            record[name] = train_decoder(name, name == "aware", args)
        record[name]["rounds"], record[name]["local-steps"] = args.rounds, args.local_steps
        from fedlab.atomic import atomic_write_text

        atomic_write_text(record_path, json.dumps(record, indent=2))
        logging.info("%s: %s", name, json.dumps(record[name])[:300])


if __name__ == "__main__":
    main()

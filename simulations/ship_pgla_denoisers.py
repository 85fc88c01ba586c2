"""Ship a PGLA / DnCNN training run's latest checkpoint as package data, or put it back.

The learned denoisers the audit and the PGLA docs use by default are package data of
``fedlab.attacks.pgla``: ``attacks/pgla/weights/{pgla,dncnn}``, each a plain denoiser folder
(``unet/`` + ``scheduler/`` or ``dncnn/``, and ``transform/``: safetensors and JSON configs
only). Their training runs stay under ``simulations/results/pgla/denoisers/{pgla,dncnn}``
(``train_config.json``, ``latest.json`` and, in the checkpoint ``latest.json`` names, the
optimizer state ``optimizer.pt`` and ``trainer_state.json``, which are not shipped).

After training (``fedlab pgla train --out simulations/results/pgla/denoisers/pgla ...``)::

    python simulations/ship_pgla_denoisers.py ship simulations/results/pgla/denoisers/pgla pgla
    python simulations/ship_pgla_denoisers.py ship simulations/results/pgla/denoisers/dncnn dncnn

Before resuming a run (``fedlab pgla train`` on the run folder), put the weights back::

    python simulations/ship_pgla_denoisers.py restore simulations/results/pgla/denoisers/pgla pgla
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from fedlab.attacks.pgla.shipped import shipped_denoiser
from fedlab.attacks.pgla.training import read_latest

#: files of a checkpoint that are not shipped (pickle, or the trainer's bookkeeping)
NOT_SHIPPED = ("optimizer.pt", "trainer_state.json")


def checkpoint_of(run: Path) -> Path:
    latest = read_latest(run)
    if latest is None:
        raise SystemExit(f"error: {run} holds no latest.json; give a training run folder")
    return run / latest["path"]


def ship(run: Path, dest: Path) -> Path:
    """Copy the safetensors and JSON files of ``run``'s latest checkpoint into ``dest``."""
    src = checkpoint_of(run)
    files = [p for p in src.rglob("*") if p.is_file() and p.name not in NOT_SHIPPED]
    odd = [str(p) for p in files if p.suffix not in (".safetensors", ".json")]
    if odd:
        raise SystemExit(f"error: {src} holds files that cannot ship: {', '.join(odd)}")
    shutil.rmtree(dest, ignore_errors=True)
    for path in files:
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return dest


def restore(run: Path, weights: Path) -> Path:
    """Copy the shipped ``weights`` back into ``run``'s latest checkpoint (to resume it)."""
    return Path(shutil.copytree(weights, checkpoint_of(run), dirs_exist_ok=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("ship", "restore"))
    parser.add_argument("run", type=Path, help="training run folder (holds latest.json)")
    parser.add_argument("name", choices=("pgla", "dncnn"), help="shipped denoiser")
    args = parser.parse_args(argv)
    weights = shipped_denoiser(args.name)
    done = ship(args.run, weights) if args.action == "ship" else restore(args.run, weights)
    print(f"{args.action}: {done}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``fedlab pgla train``: train a learned gradient denoiser (PGLA diffusion UNet or DnCNN).

Examples
--------
``fedlab pgla train --config small --out runs/pgla-small`` (about 25 minutes on 2 CPU cores;
run it again with the same ``--out`` to resume), ``fedlab pgla train --config dncnn-small
--out runs/dncnn-small``, ``fedlab pgla train --config gpu --out runs/pgla-gpu`` on a GPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict

from fedlab.errors import FedlabError
from fedlab.limits import MAX_MODEL_PARAMETERS

log = logging.getLogger(f"fedlab.{__name__}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``pgla`` (with ``train``) to the ``fedlab`` console script."""
    pgla = subparsers.add_parser("pgla", help="PGLA gradient denoisers (train)")
    sub = pgla.add_subparsers(dest="pgla_command", required=True)
    train = sub.add_parser("train", help="train a PGLA (or DnCNN) denoiser on surrogate gradients")
    add_train_arguments(train)
    train.set_defaults(func=train_command)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fedlab pgla train``."""
    parser.add_argument(
        "--config",
        default="small",
        help="shipped config name (small, small-finetune, cond-small, dncnn-small, gpu, tiny) "
        "or a JSON file",
    )
    parser.add_argument(
        "--surrogate",
        default=None,
        help="surrogate dataset, overriding the config (digits, sample-patches)",
    )
    parser.add_argument("--out", required=True, help="run folder (re-run the same to resume)")
    parser.add_argument("--max-steps", type=int, default=None, help="override max_steps")
    parser.add_argument(
        "--time-limit-s",
        type=float,
        default=None,
        help="override the wall-clock budget of this invocation (0: none)",
    )
    parser.add_argument("--seed", type=int, default=None, help="override the seed")
    parser.add_argument(
        "--init-from",
        default=None,
        help="start from this denoiser's weights (fine-tune; pgla-cond may start from pgla)",
    )
    parser.add_argument(
        "--no-resume", action="store_true", help="start over even if --out holds a checkpoint"
    )
    parser.add_argument(
        "--max-parameters",
        type=int,
        default=None,
        help="largest model loaded from --init-from or a checkpoint, in parameters (counted "
        f"before anything is allocated; default {MAX_MODEL_PARAMETERS:,})",
    )


def train_command(args: argparse.Namespace) -> int:
    """Run ``fedlab pgla train``; returns the exit code."""
    from fedlab.attacks.pgla.train import resolve_config, train_denoiser
    from fedlab.attacks.pgla.training import DenoiserTrainConfig

    cfg = resolve_config(args.config)
    data = asdict(cfg)
    for key, value in (
        ("surrogate", args.surrogate),
        ("max_steps", args.max_steps),
        ("time_limit_s", args.time_limit_s),
        ("seed", args.seed),
        ("init_from", args.init_from),
    ):
        if value is not None:
            data[key] = value
    cfg = DenoiserTrainConfig.from_dict(data, max_parameters=args.max_parameters)
    state = train_denoiser(
        cfg, args.out, resume=not args.no_resume, max_parameters=args.max_parameters
    )
    last = state["history"][-1] if state["history"] else {}
    log.info(
        "trained %s to step %d in %.0f s, last loss %s; denoiser folder: %s",
        cfg.denoiser,
        state["step"],
        state["elapsed_s"],
        last.get("loss"),
        args.out,
    )
    sys.stdout.write(
        json.dumps(
            {
                "step": state["step"],
                "elapsed_s": state["elapsed_s"],
                "last": last,
                "out": str(args.out),
            }
        )
        + "\n"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m fedlab.attacks.pgla.cli train ...``)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    parser = argparse.ArgumentParser(prog="fedlab")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["pgla", *(argv if argv is not None else sys.argv[1:])])
    try:
        return args.func(args)
    except FedlabError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

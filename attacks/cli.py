"""``fedlab attack`` (attack a recorded trace) and ``fedlab bench attacks`` (the DLG setting).

Both write ``results.json`` in their output folder after every target (atomically), skip the
targets already attacked there (resume), keep going when one target is bad (its error is
stored), print a summary table and save a PNG grid of ground truth against reconstruction.

A trace is untrusted input: ``fedlab attack`` reads it with
:class:`fedlab.traces.TraceReader` in non-strict mode, so a malformed record, a path leaving the
trace folder or a model name that is not registered fails that target only; a record's
``module:attr`` model is imported only with ``--trust-trace-code``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from fedlab.attacks import metrics
from fedlab.attacks.base import Attack, AttackInput, reconstruct_each
from tqdm import tqdm

from fedlab.atomic import atomic_save_tensors, atomic_write_json
from fedlab.command_args import CHECK_HELP, SEED, integer
from fedlab.errors import FedlabError
from fedlab.outputs import output_folder
from fedlab.registry import ATTACKS

logger = logging.getLogger(f"fedlab.{__name__}")

RESULTS = "results.json"
Target = tuple[str, Callable[[], AttackInput], Callable[[], tuple[torch.Tensor, torch.Tensor]]]


def _int_list(text: str) -> list[int]:
    """``--rounds``/``--clients``: comma-separated ids, each in 0..2**31 - 1."""
    parse = integer(0, 2**31 - 1)
    return [parse(v) for v in text.split(",") if v.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``attack`` and ``bench attacks`` to the ``fedlab`` console script."""
    p = subparsers.add_parser("attack", help="run a gradient-leakage attack on a recorded trace")
    p.add_argument("--trace", required=True, help="trace folder (with manifest.json)")
    p.add_argument("--attack", required=True, help="attack name (dlg, idlg, ig) or module:attr")
    p.add_argument("--rounds", type=_int_list, default=None, help="rounds to attack, e.g. 1,2")
    p.add_argument("--clients", type=_int_list, default=None, help="partition ids, e.g. 0,3")
    p.add_argument(
        "--denoise",
        default=None,
        help="denoise the gradients first: none, gaussian, wiener, wavelet, dncnn, "
        "pgla, pgla-fixed, pgla-cond (attacks/pgla)",
    )
    p.add_argument("--denoiser", default=None, help="learned denoiser folder (fedlab pgla train)")
    p.add_argument(
        "--trust-trace-code",
        action="store_true",
        help="let a record's model name be 'module:attr', imported and called with the "
        "manifest's kwargs: this runs arbitrary code named by the trace file, so only use it "
        "for traces you trust like a script (default: registered models only)",
    )
    _attack_options(p)
    p.set_defaults(func=attack_command)
    bench = subparsers.add_parser("bench", help="benchmarks")
    bsub = bench.add_subparsers(dest="bench_command", required=True)
    b = bsub.add_parser("attacks", help="DLG setting over the fixed image list (attacks/bench.py)")
    b.add_argument("--attacks", default="dlg,ig", help="comma-separated attack names")
    b.add_argument("--images", default=None, help="comma-separated subset of the bench images")
    b.add_argument("--seeds", type=_int_list, default=[0], help="model seeds, e.g. 0,1")
    _attack_options(b)
    b.set_defaults(func=bench_attacks_command)


def _attack_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-iterations", type=integer(1, 10**9), default=None, help="per attempt")
    p.add_argument("--restarts", type=integer(0, 1000), default=None, help="extra attempts")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the attack's random starts")
    p.add_argument(
        "--batch", type=integer(1, 4096), default=1,
        help="attack up to N targets of one round at once (ig; default 1)",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="output folder (re-run the same to resume)")
    p.add_argument("--check", action="store_true", help=CHECK_HELP)


def make_attack(name: str, args: argparse.Namespace) -> Attack:
    """Instantiate attack ``name`` with the CLI's overrides."""
    cls = ATTACKS.get(name)
    kwargs: dict[str, Any] = {"seed": args.seed}
    if args.max_iterations is not None:
        kwargs["max_iterations"] = args.max_iterations
    if args.restarts is not None:
        kwargs["restarts"] = args.restarts
    return cls(**kwargs)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _safe(target_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", target_id)


def _earlier_results(path: Path) -> dict[str, Any]:
    """The results an earlier run left in ``--out`` (resumed), or a one-line refusal."""
    try:
        old = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        old = None
    if not isinstance(old, dict) or not isinstance(old.get("targets", {}), dict):
        raise FedlabError(
            f"{path} is not a results file of `fedlab attack` (not a JSON object with "
            "'targets'); move it aside or give another --out"
        )
    return old


def run_targets(
    attack: Attack,
    name: str,
    targets: Iterable[Target],
    out: Path,
    source: str,
    batch: int = 1,
) -> dict[str, Any]:
    """Attack each target not yet in ``out/results.json``; returns the results object.

    With ``batch`` > 1 and an attack that offers ``reconstruct_many`` (inverting gradients),
    up to ``batch`` consecutive targets of one model are attacked at once; targets of several
    models fall back to one at a time. Results are written after each group.

    Raises
    ------
    FedlabError
        If ``out/results.json`` was written by another attack or source.
    """
    out = output_folder(out)
    path = out / RESULTS
    results: dict[str, Any] = {"attack": name, "source": source, "targets": {}}
    if path.exists():
        old = _earlier_results(path)
        if old.get("attack") != name or old.get("source") != source:
            raise FedlabError(
                f"{path} holds results of attack {old.get('attack')!r} on {old.get('source')!r}, "
                f"not {name!r} on {source!r}; give another --out"
            )
        results["targets"] = old.get("targets", {})
    pending = [t for t in targets if results["targets"].get(t[0], {}).get("status") != "ok"]
    together = batch if hasattr(attack, "reconstruct_many") else 1  # one row written per group
    bar = tqdm(total=len(pending), desc=name, unit="target")
    for start in range(0, len(pending), together):
        chunk = pending[start : start + together]
        ready = []
        for target_id, make_input, truth in chunk:
            try:
                ready.append((target_id, make_input(), truth))
            except Exception as exc:  # noqa: BLE001  a bad target costs itself, not the others
                results["targets"][target_id] = _error_row(target_id, exc)
        attacked = reconstruct_each(attack, [inp for _, inp, _ in ready])
        for (target_id, inp, truth), res in zip(ready, attacked, strict=True):
            try:
                if isinstance(res, Exception):
                    raise res
                row = _scored_row(res, inp, truth, out / "reconstructions" / f"{_safe(target_id)}")
            except Exception as exc:  # noqa: BLE001  an unforeseen failure costs this target
                row = _error_row(target_id, exc)
            results["targets"][target_id] = row
        atomic_write_json(path, results)
        bar.update(len(chunk))
    bar.close()
    return results


def _scored_row(res: Any, inp: Any, truth: Callable[[], Any], stem: Path) -> dict[str, Any]:
    row: dict[str, Any] = {
        "status": "ok",
        "loss": res.loss,
        "iterations": res.iterations,
        "restarts": res.restarts,
        "seconds": res.seconds,
    }
    try:
        images, labels = truth()
    except FedlabError as exc:  # attackable but not scorable
        row["score_error"] = str(exc)
    else:
        images = inp.to_unit_range(images)
        row.update(metrics.score(images, labels, res.images, res.labels))
        atomic_save_tensors(
            stem.with_suffix(".safetensors"), {"truth": images, "reconstruction": res.images}
        )
    return row


def _error_row(target_id: str, exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, FedlabError):
        logger.error("%s: %s", target_id, exc)
        return {"status": "error", "error": _one_line(str(exc))}
    logger.exception("%s: unexpected error", target_id, exc_info=exc)
    return {"status": "error", "error": _one_line(f"{type(exc).__name__}: {exc}")}


def print_table(results: dict[str, Any]) -> None:
    """The per-target summary table (CLI output, hence print)."""
    cols = ("psnr", "ssim", "mse", "label_accuracy", "loss", "iterations", "restarts", "seconds")
    print(f"{'target':28s} " + " ".join(f"{c[:9]:>9s}" for c in cols))
    for tid, row in results["targets"].items():
        if row.get("status") != "ok":
            print(f"{tid:28s} error: {row.get('error')}")
            continue
        cells = []
        for c in cols:
            v = row.get(c)
            cells.append(
                f"{'-':>9s}" if v is None else f"{v:9d}" if isinstance(v, int) else f"{v:9.3g}"
            )
        print(f"{tid:28s} " + " ".join(cells))


def save_grid(out: Path, results: dict[str, Any], max_images: int = 16) -> Path | None:
    """``grid.png``: ground truth (top) against reconstruction (bottom), atomically."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state
    from safetensors.torch import load_file

    pairs = []
    for tid, row in results["targets"].items():
        file = out / "reconstructions" / f"{_safe(tid)}.safetensors"
        if row.get("status") == "ok" and file.exists():
            t = load_file(file)
            for i in range(t["truth"].shape[0]):
                pairs.append((tid, t["truth"][i], t["reconstruction"][i], row.get("psnr")))
    pairs = pairs[:max_images]
    if not pairs:
        return None
    fig = Figure(figsize=(1.6 * len(pairs), 3.6))
    axes = fig.subplots(2, len(pairs), squeeze=False)
    for j, (tid, truth, recon, psnr) in enumerate(pairs):
        for i, img in enumerate((truth, recon)):
            axes[i][j].imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
            axes[i][j].axis("off")
        axes[0][j].set_title(tid, fontsize=6)
        axes[1][j].set_title("" if psnr is None else f"{psnr:.1f} dB", fontsize=7)
    fig.tight_layout()
    path = out / "grid.png"
    tmp = out / ".grid.png.tmp"
    fig.savefig(tmp, format="png", dpi=120)
    tmp.replace(path)
    return path


def _finish(results: dict[str, Any], out: Path) -> int:
    print_table(results)
    grid = save_grid(out, results)
    print(f"results: {out / RESULTS}" + (f"; grid: {grid}" if grid else ""))
    rows = results["targets"]
    failed = [t for t, r in rows.items() if r.get("status") != "ok"]
    if failed:
        shown = ", ".join(failed[:10]) + (", ..." if len(failed) > 10 else "")
        print(
            f"skipped {len(failed)} of {len(rows)} targets with errors ({shown}); their errors "
            f"are above and in {out / RESULTS}; re-run the same command to retry them"
        )
    return 0 if len(failed) < len(rows) else 2


def attack_command(args: argparse.Namespace) -> int:
    """``fedlab attack``: exit 0 when some target was attacked, 2 when none could be.

    Malformed records (and records whose files or model are refused) are failed targets: they
    are reported in the table, in ``results.json`` and in a final "skipped" line.
    """
    from fedlab.traces import InvalidRecord, TraceReader

    trust = getattr(args, "trust_trace_code", False)
    reader = TraceReader(args.trace, trust_code=trust, strict=False)
    if trust:
        logger.warning("--trust-trace-code: model names in %s may import and run code", args.trace)
    entries = reader.select_all(args.rounds, args.clients)
    if not entries:
        known = [r for r in reader.select_all() if r.round is not None and r.client is not None]
        raise FedlabError(
            f"no records of rounds {args.rounds} and clients {args.clients} in {args.trace}; "
            f"it has rounds {sorted({r.round for r in known})} and clients "
            f"{sorted({r.client for r in known})}"
        )
    attack = make_attack(args.attack, args)
    attack_input = reader.attack_input
    if args.denoise:
        from fedlab.attacks.pgla.compose import denoising

        attack_input = denoising(attack_input, args.denoise, args.denoiser)

    def refused(bad: InvalidRecord) -> Callable[[], Any]:
        def fail() -> Any:
            raise FedlabError(bad.error)

        return fail

    targets: list[Target] = []
    for r in entries:
        if isinstance(r, InvalidRecord):
            targets.append((r.target_id, refused(r), refused(r)))
        else:
            targets.append(
                (r.target_id, (lambda r=r: attack_input(r)), (lambda r=r: reader.ground_truth(r)))
            )
    out = Path(args.out)
    if getattr(args, "check", False):
        if out.exists() and not out.is_dir():
            raise FedlabError(f"--out {str(out)!r} is a file, not a folder; give a folder")
        print(f"ok: {len(targets)} targets of {args.trace} for {args.attack}; results in {out}")
        return 0
    source = str(Path(args.trace).resolve())
    results = run_targets(attack, args.attack, targets, out, source, batch=args.batch)
    return _finish(results, out)


def bench_attacks_command(args: argparse.Namespace) -> int:
    """``fedlab bench attacks``: every attack over the fixed image list and seeds."""
    from fedlab.attacks.bench import BENCH_IMAGES, bench_cases, case_input, summarize

    images = tuple(args.images.split(",")) if args.images else BENCH_IMAGES
    unknown = [i for i in images if i not in BENCH_IMAGES]
    if unknown:
        raise FedlabError(f"--images {unknown} not in the bench list {list(BENCH_IMAGES)}")
    out = Path(args.out)
    summary: dict[str, Any] = {}
    for name in [a for a in args.attacks.split(",") if a]:
        attack = make_attack(name, args)
        targets: list[Target] = []
        for case in bench_cases(images, tuple(args.seeds)):

            def make(case=case):
                return case_input(case)[0]

            def truth(case=case):
                return case_input(case)[1:]

            targets.append((case.target_id, make, truth))
        results = run_targets(
            attack, name, targets, out / name, "bench:dlg-setting", batch=args.batch
        )
        ids = {c.target_id for c in bench_cases(images, tuple(args.seeds))}
        rows = [r for t, r in results["targets"].items() if t in ids and r["status"] == "ok"]
        summary[name] = summarize(rows)
        print(f"== {name}")
        _finish(results, out / name)
    atomic_write_json(out / "summary.json", summary)
    print_summary(summary)
    return 0 if any(s["n"] for s in summary.values()) else 2


def print_summary(summary: dict[str, dict[str, float]]) -> None:
    """One line per attack: PSNR median [q25, q75] (min..max), failures, SSIM, labels, seconds."""
    print(
        f"{'attack':8s} {'n':>3s} {'PSNR med':>9s} {'[q25, q75]':>16s} {'min..max':>14s} "
        f"{'<20dB':>5s} {'SSIM med':>8s} {'label acc':>9s} {'s/attack':>8s}"
    )
    for name, s in summary.items():
        if not s["n"]:
            print(f"{name:8s}   0 (no successful targets)")
            continue
        print(
            f"{name:8s} {s['n']:3d} {s['psnr_median']:9.2f} "
            f"[{s['psnr_q25']:6.2f}, {s['psnr_q75']:6.2f}] "
            f"{s['psnr_min']:6.2f}..{s['psnr_max']:6.2f} {s['failures']:5d} "
            f"{s['ssim_median']:8.3f} {s['label_accuracy']:9.2f} {s['seconds_median']:8.1f}"
        )

"""Console scripts: ``flower-simulation`` (run an app under Ray) and ``fedlab`` (tools).

Errors in the user's input (:class:`~fedlab.errors.FedlabError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from fedlab.errors import FedlabError
from fedlab.extras import MissingExtra, explain_missing_module

log = logging.getLogger("fedlab")


def setup_logging(verbose: bool) -> None:
    """Configure the one logger hierarchy, once, for both console scripts.

    Every module logs under ``fedlab`` (the core as ``fedlab``, plugins as
    ``fedlab.<module>``), so this handler shows them all: INFO by default, DEBUG with
    ``--verbose``, which also lets Flower's own lines through (WARNING and up otherwise).
    """
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    logging.getLogger("flwr").setLevel(logging.DEBUG if verbose else logging.WARNING)


def _guard(main: Callable[[Sequence[str] | None], int]) -> Callable[[Sequence[str] | None], int]:
    def wrapped(argv: Sequence[str] | None = None) -> int:
        try:
            return main(argv)
        except FedlabError as exc:
            if "--debug" in (sys.argv[1:] if argv is None else argv):
                traceback.print_exc()
            # One line, whatever the message quotes (a file's bytes may hold newlines).
            print("error: " + " ".join(str(exc).split()), file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted; finished rounds are kept in the run folder", file=sys.stderr)
            return 130

    return wrapped


def _without_debug(argv: Sequence[str] | None) -> list[str]:
    """The arguments without ``--debug`` (accepted anywhere: on a refusal it prints the
    traceback before the one-line error)."""
    return [a for a in (sys.argv[1:] if argv is None else argv) if a != "--debug"]


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose refusals are one line on stderr and exit code 2, like every
    other refusal (argparse's own prints the usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {' '.join(message.split())}; see {self.prog} --help\n")


def simulation_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="flower-simulation",
        description="Run a fedlab app (an AppSpec) under Flower's simulation engine with Ray.",
    )
    p.add_argument(
        "--app",
        default=None,
        help="module:attr of an AppSpec, e.g. fedlab.apps:fedavg (with --resume: the recorded one)",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue a stopped run from its last finished round (Ctrl-C, SIGKILL, a crash); "
        "with --run-config num-server-rounds=N, extend a finished one; no other key may change",
    )
    p.add_argument(
        "--app-dir",
        default=None,
        help="look for the --app module (and a run config's module:attr names) in this folder, "
        "put first on the import path here and in Ray's workers, as uvicorn does (default: the "
        "current folder; with --resume: the recorded one)",
    )
    p.add_argument(
        "--num-supernodes",
        type=int,
        default=None,
        help="virtual SuperNodes (clients); default: the app's num-supernodes",
    )
    p.add_argument(
        "--run-config",
        nargs="+",
        default=[],
        metavar="FILE.toml|KEY=VALUE",
        help="TOML files and/or key=value pairs, applied in order",
    )
    p.add_argument("--out", default=None, help="run folder (default ./runs/<app>-<UTC time>)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run folder --out names if it holds an earlier run (default: refuse)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="validate the app, its run config and its pre-Ray check, then exit without running",
    )
    p.add_argument("--seed", type=int, default=None, help="seed for sampling, data and init")
    p.add_argument(
        "--gpu",
        choices=("auto", "off"),
        default="auto",
        help="auto: give clients GPU fractions when torch sees a GPU",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="join a running Ray cluster (e.g. 127.0.0.1:6379) instead of starting one",
    )
    p.add_argument(
        "--list-keys",
        action="store_true",
        help="print the app's run-config keys: type, value (defaults and overrides) and meaning",
    )
    p.add_argument(
        "--verbose", action="store_true", help="debug log lines, Flower's own lines included"
    )
    return p


def add_app_dir(folder: str) -> Path:
    """Put ``folder`` first on ``sys.path`` and on ``PYTHONPATH`` (which Ray's workers inherit),
    so a researcher's ``myapp.py`` there resolves as ``--app myapp:app``.

    fedlab's own modules live under the ``fedlab`` namespace, so a ``strategies.py`` or
    ``clients/`` of the researcher's neither shadows nor is shadowed by them.
    """
    path = Path(folder).resolve()
    if not path.is_dir():
        raise FedlabError(f"--app-dir {folder!r} is not a folder; name the folder of your app")
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    current = os.environ.get("PYTHONPATH", "")
    if str(path) not in current.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(path), current) if p)
    return path


def resolve_app(spec: str) -> Any:
    from fedlab.appspec import AppSpec
    from fedlab.registry import APPS, import_object

    module_name, _, name = spec.partition(":")
    if module_name == "fedlab.apps" and name:
        if name not in APPS:
            raise FedlabError(
                f"app {spec!r}: fedlab.apps has no attribute {name!r} (no installed app of that "
                f"name); installed: {', '.join(APPS.names())}; pick one, or pass --app "
                "mymodule:myapp for an AppSpec of your own"
            )
        try:
            obj = APPS.get(name, allow_import=False)
        except MissingExtra as exc:
            raise exc.for_(f"app {name!r}") from None
    else:
        obj = import_object(spec, what="app")
    if not isinstance(obj, AppSpec):
        raise FedlabError(
            f"app {spec!r} is a {type(obj).__name__}, not a fedlab AppSpec; "
            "point --app at one, e.g. fedlab.apps:fedavg"
        )
    return obj


def collect_overrides(items: Sequence[str]) -> dict[str, Any]:
    from fedlab.config import load_toml_config, parse_override

    merged: dict[str, Any] = {}
    for item in items:
        if "=" in item:
            key, value = parse_override(item)
            merged[key] = value
        else:
            merged.update(load_toml_config(item))
    return merged


def preflight(spec: Any, config: Any) -> None:
    """Run the app's own check (``AppSpec.check``) so bad names, data or sizes fail before Ray.

    The check builds the app's strategy and workload from the resolved config; an app without
    one is checked when its server starts.
    """
    if spec.check is None:
        return
    flwr_log = logging.getLogger("flwr")
    level = flwr_log.level
    flwr_log.setLevel(logging.ERROR)  # a trial build; its notices come again in the real one
    try:
        spec.check(config, config.num_supernodes)
    finally:
        flwr_log.setLevel(level)


@_guard
def flower_simulation_main(argv: Sequence[str] | None = None) -> int:
    parser = simulation_parser()
    args = parser.parse_args(_without_debug(argv))
    setup_logging(args.verbose)
    cli: dict[str, Any] = {}
    if args.num_supernodes is not None:
        cli["num-supernodes"] = args.num_supernodes
    if args.seed is not None:
        cli["seed"] = args.seed
    if args.gpu == "off":
        cli["device"] = "cpu"
    if args.resume:
        return _resume(args, cli)
    if not args.app:
        parser.error("--app is required (or --resume RUN_DIR to continue a run)")
    app_dir = add_app_dir(args.app_dir or ".")
    spec = resolve_app(args.app)
    layers = [collect_overrides(args.run_config)]
    config = spec.resolve_config(*layers, cli)
    if config.num_supernodes < 1:
        raise FedlabError(f"num-supernodes must be >= 1, got {config.num_supernodes}")
    if args.list_keys:
        for key, kind, value, meaning in config.describe_keys():
            print(f"{key} ({kind}) = {value!r}  # {meaning}")
        return 0
    from fedlab.run_folder import default_run_dir

    out = (
        Path(args.out).resolve()
        if args.out
        else (Path(config.out_dir).resolve() if config.out_dir else default_run_dir(spec.name))
    )
    config = config.replace(out_dir=str(out))
    preflight(spec, config)
    if args.check:
        print(f"ok: app {spec.name!r}, {len(config.keys())} keys valid, pre-Ray check passed")
        return 0
    prepare_run_folder(out, overwrite=args.overwrite)
    launch = {"app-reference": args.app, "app-dir": str(app_dir)}
    return _simulate_and_report(args, spec, config, launch, None)


def _resume(args: argparse.Namespace, cli: dict[str, Any]) -> int:
    from fedlab.resume import app_reference, plan_resume, recorded_launch

    if args.out or args.overwrite or args.check or args.list_keys:
        raise FedlabError(
            "--resume continues the run in RUN_DIR: --out, --overwrite, --check and "
            "--list-keys do not apply to it"
        )
    run_dir = Path(args.resume).resolve()
    recorded = recorded_launch(run_dir)
    app_dir = args.app_dir or recorded.get("app-dir") or "."
    add_app_dir(app_dir if Path(app_dir).is_dir() else ".")
    spec = resolve_app(app_reference(recorded, args.app))
    overrides = {**collect_overrides(args.run_config), **cli}
    plan = plan_resume(run_dir, recorded, spec, overrides)
    preflight(spec, plan.config)
    return _simulate_and_report(args, spec, plan.config, plan.launch, plan.checkpoint)


def _simulate_and_report(
    args: argparse.Namespace, spec: Any, config: Any, launch: dict[str, Any], checkpoint: Any
) -> int:
    from fedlab.simulation import simulate

    out = Path(config.out_dir)
    interrupted = simulate(spec, config, gpu=args.gpu, ray_address=args.ray_address,
                           verbose=args.verbose, launch=launch,
                           resume_from=checkpoint)  # fmt: skip
    summary_path = out / "summary.json"
    if not summary_path.is_file():
        print(f"error: the run ended without a summary; see the log above ({out})", file=sys.stderr)
        return 1
    summary = json.loads(summary_path.read_text())
    final = summary.get("final") or {}
    # Under DP the released summary has no timings (server-private/summary.json has them).
    took = f" in {summary['seconds']} s" if summary.get("seconds") is not None else ""
    print(
        f"done: {summary['rounds-finished']}/{summary['rounds-planned']} rounds{took}; "
        f"final evaluate {json.dumps(final.get('evaluate', {}))}"
        + (f"; stopped early: {summary['stopped-early']}" if summary.get("stopped-early") else "")
    )
    print(f"run folder: {out}")
    return 130 if interrupted else 0  # 128 + SIGINT, as shells report Ctrl-C


def prepare_run_folder(out: Path, *, overwrite: bool) -> None:
    """Refuse an ``--out`` that is a file, or a folder holding anything, unless ``overwrite``
    and it is an earlier run folder (its ``config.json``), which is then removed."""
    if out.exists() and not out.is_dir():
        raise FedlabError(f"--out {str(out)!r} is a file; give a folder for the run")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise FedlabError(
            f"--out {str(out)!r} already holds files; pass --overwrite to replace an earlier "
            "run there, or choose another --out"
        )
    if not (out / "config.json").is_file():
        raise FedlabError(
            f"--out {str(out)!r} is not an earlier run folder (no config.json); --overwrite "
            "replaces run folders only: choose an empty or new folder"
        )
    shutil.rmtree(out)


def fedlab_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="fedlab", description="fedlab tools: traces, attacks, benchmarks.")
    from fedlab.registry import COMMANDS

    p.add_argument(
        "--verbose", action="store_true", help="debug log lines, Flower's own lines included"
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS.names():  # the `fedlab.commands` entry points, fedlab's own included
        try:
            register = COMMANDS.get(name, allow_import=False)
        except MissingExtra as exc:
            _add_broken_command(sub, name, str(exc.for_(f"`fedlab {name}`")), verbatim=True)
            continue
        except FedlabError as exc:
            # One broken plugin must not take every other command down: its own name reports
            # why it is missing when someone calls it.
            _add_broken_command(sub, name, str(exc))
            continue
        try:
            register(sub)
        except ModuleNotFoundError as exc:  # a register() that imports its family's stack
            explained = explain_missing_module(exc, f"`fedlab {name}`")
            if explained is None:
                raise
            _add_broken_command(sub, name, str(explained), verbatim=True)
    apps = sub.add_parser("apps", help="list the named apps of fedlab.apps")
    apps.set_defaults(func=_list_apps)
    release = sub.add_parser(
        "release",
        help="copy only the publishable part of a run folder (the files its release.json lists)",
    )
    release.add_argument("run_dir", help="a run folder written by flower-simulation")
    release.add_argument("--out", required=True, help="a new folder for the release")
    release.set_defaults(func=_copy_release)
    return p


def _copy_release(args: argparse.Namespace) -> int:
    from fedlab.release import copy_release

    copied = copy_release(args.run_dir, args.out)
    print(f"release of {args.run_dir}: {', '.join(copied)} -> {args.out}")
    return 0


def _add_broken_command(sub: Any, name: str, reason: str, *, verbatim: bool = False) -> None:
    def fail(args: argparse.Namespace) -> int:
        if verbatim:
            raise FedlabError(reason)
        raise FedlabError(
            f"command {name!r} could not be loaded: {reason}; fix or reinstall the package "
            "that provides it (its `fedlab.commands` entry point)"
        )

    broken = sub.add_parser(name, help=f"(could not be loaded: run `fedlab {name}` for why)")
    broken.set_defaults(func=fail, takes_any_arguments=True)


def _list_apps(args: argparse.Namespace) -> int:
    import fedlab.apps as apps

    for name in apps.names():
        print(f"fedlab.apps:{name:14s} {getattr(apps, name).description}")
    return 0


@_guard
def fedlab_main(argv: Sequence[str] | None = None) -> int:
    parser = fedlab_parser()
    argv = _without_debug(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "takes_any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except ModuleNotFoundError as exc:  # a command that imports its family's stack when it runs
        explained = explain_missing_module(exc, f"`fedlab {args.command}`")
        if explained is None:
            raise
        raise explained from None

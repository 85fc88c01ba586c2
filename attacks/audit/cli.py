"""``fedlab audit``: from a DP configuration to what an attacker recovers and what leaks.

Exit codes: 0, every setting's attacks ran; 2, the input was refused (one line, nothing run);
3, the report was written but at least one setting is unknown (an attack or denoiser errored,
or fewer targets than configured were traced), so it names no boundary for that mode.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from fedlab.command_args import CHECK_HELP, integer

log = logging.getLogger("fedlab.audit")

#: Exit code of an audit that wrote its report but has unknown settings (2: refused input).
EXIT_UNKNOWN = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``audit`` to the ``fedlab`` console script."""
    p = subparsers.add_parser(
        "audit",
        help="sweep DP settings of an app: attacks, canary privacy estimate, HTML report",
        description="Run the app under each DP setting with canary clients, attack the "
        "recorded FedSGD traces, estimate the empirical epsilon, write report.html and "
        "audit.json. Re-run the same command to resume. Exit codes: 0 done; 2 input refused; "
        "3 report written but a setting is unknown (an attack or denoiser errored).",
    )
    p.add_argument("--app", default=None, help="app name or module:attr (default: the config's)")
    p.add_argument("--config", default=None, help="audit TOML file (keys: docs/audit.md)")
    p.add_argument("--preset", default=None, help="default, full or tiny (default: default)")
    p.add_argument("--workers", type=integer(0, 1024), default=None,
                   help="attack processes (one thread each)")  # fmt: skip
    p.add_argument("--out", required=True, help="output folder (re-run the same to resume)")
    p.add_argument("--check", action="store_true", help=CHECK_HELP)
    p.set_defaults(func=audit_command)


def audit_command(args: argparse.Namespace) -> int:
    """Run the audit; print where the report is and the boundary.

    Returns
    -------
    int
        0, or :data:`EXIT_UNKNOWN` when any setting is unknown (after the report is written).
    """
    import dataclasses

    from fedlab.attacks.audit.config import load
    from fedlab.attacks.audit.report import boundary_text
    from fedlab.attacks.audit.runner import resolve_settings, run_audit

    from fedlab.cli import resolve_app
    from fedlab.errors import FedlabError

    audit = load(args.config, args.preset)
    if args.workers is not None:
        audit = dataclasses.replace(audit, workers=args.workers)
    app = args.app or audit.app
    spec = resolve_app(app if ":" in app else f"fedlab.apps:{app}")
    out = Path(args.out)
    if args.check:
        if out.exists() and not out.is_dir():
            raise FedlabError(f"--out {str(out)!r} is a file, not a folder; give a folder")
        plans = resolve_settings(spec, audit, out)  # every refusal the real run makes first
        print(f"ok: audit of {app!r}, {len(plans)} settings; report would go to {out}")
        return 0
    data = run_audit(spec, audit, out, app)
    print(f"report: {out / 'report.html'}; figures: {out / 'audit.json'}")
    print(
        f"boundary: central DP {boundary_text(data, 'central')}, local DP "
        f"{boundary_text(data, 'local')}; wall time {data['seconds']:.0f} s"
    )
    unknown = data.get("unknown") or []
    if unknown:
        reasons = "; ".join(f"{n}: {data['settings'][n]['unknown-reason']}" for n in unknown)
        print(
            f"error: audit incomplete, {len(unknown)} setting(s) unknown ({reasons}); fix the "
            f"failing attack or denoiser and re-run the same command (errored rows are "
            f"retried); exit code {EXIT_UNKNOWN}",
            file=sys.stderr,
        )
        return EXIT_UNKNOWN
    return 0

"""``flower-simulation --resume RUN_DIR``: what may change when a stopped run continues.

A resumed run is the same run: the app and every run-config key are read back from the run
folder's ``config.json``, and only ``num-server-rounds`` may change (to extend a run), unless the
app's schedule depends on it (:meth:`~fedlab.key_groups.RunConfig.rounds_schedule`). Everything
else is refused in one line naming the key.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedlab.appspec import AppSpec
from fedlab.checkpoint import Checkpoint, latest_checkpoint
from fedlab.errors import FedlabError
from fedlab.key_groups import RunConfig
from fedlab.run_folder import package_versions, read_config_json

log = logging.getLogger("fedlab")

EXTENDABLE = "num-server-rounds"


@dataclass
class ResumePlan:
    """What a resumed run needs: the app, its config, how it was named, and the checkpoint."""

    spec: AppSpec
    config: RunConfig
    launch: dict[str, Any]
    checkpoint: Checkpoint


def recorded_launch(run_dir: Path) -> dict[str, Any]:
    """The run folder's ``config.json``; a one-line error if it is not a fedlab run folder."""
    if not run_dir.is_dir():
        raise FedlabError(f"--resume {str(run_dir)!r} is not a folder; name a run folder")
    content = read_config_json(run_dir)
    if content is None or not isinstance(content.get("run-config"), dict):
        raise FedlabError(
            f"--resume {str(run_dir)!r} has no config.json with a run-config: it is not a run "
            "folder written by flower-simulation"
        )
    return content


def app_reference(recorded: dict[str, Any], given: str | None) -> str:
    """``--app`` if given (it must name the recorded app), else the recorded reference."""
    reference = recorded.get("app-reference") or f"fedlab.apps:{recorded.get('app', '')}"
    return given or str(reference)


def plan_resume(
    run_dir: Path,
    recorded: dict[str, Any],
    spec: AppSpec,
    overrides: dict[str, Any],
) -> ResumePlan:
    """Check that ``overrides`` change nothing but ``num-server-rounds`` (and that extending is
    allowed), and load the last checkpoint."""
    if spec.name != recorded.get("app"):
        raise FedlabError(
            f"--app names app {spec.name!r} but {run_dir} is a run of {recorded.get('app')!r}; "
            "leave --app out to resume with the recorded app"
        )
    before = dict(recorded["run-config"])
    config = spec.resolve_config(before, overrides).replace(out_dir=str(run_dir))
    after = json.loads(json.dumps(config.to_json()))
    # The run's folder and machine may change: out-dir (a moved folder), device (another host).
    free = (EXTENDABLE, "out-dir", "device")
    changed = [k for k in after if k not in free and after[k] != before.get(k)]
    if changed:
        key = changed[0]
        raise FedlabError(
            f"--resume: {key} changed ({before.get(key)!r} -> {after[key]!r}); a resumed run "
            f"keeps its config and only {EXTENDABLE} may change (to extend it): start a new run "
            f"for another {key}"
        )
    checkpoint = latest_checkpoint(run_dir)
    planned = int(before.get(EXTENDABLE, 0))
    rounds = config.num_server_rounds
    if rounds < checkpoint.round:
        raise FedlabError(
            f"--resume: num-server-rounds={rounds} is below the {checkpoint.round} rounds already "
            f"finished in {run_dir}; give at least {checkpoint.round + 1}"
        )
    if rounds != planned and (reason := config.rounds_schedule()):
        raise FedlabError(
            f"--resume: num-server-rounds cannot change from {planned} to {rounds} in this run: "
            f"{reason}; start a new run with num-server-rounds={rounds}"
        )
    if rounds == checkpoint.round:
        raise FedlabError(
            f"nothing to resume: {run_dir} finished all {rounds} rounds; extend it with "
            f"--run-config {EXTENDABLE}=<more than {rounds}>"
        )
    started_with = (recorded.get("versions") or {}).get("fedlab")
    now = package_versions().get("fedlab")
    if started_with and started_with != now:
        log.warning("warning: %s was started with fedlab %s and resumes with fedlab %s: the "
                    "rounds after %d may differ from what the first version would have done",
                    run_dir, started_with, now, checkpoint.round)  # fmt: skip
    launch = {k: recorded[k] for k in ("app-reference", "app-dir") if k in recorded}
    return ResumePlan(spec, config, launch, checkpoint)

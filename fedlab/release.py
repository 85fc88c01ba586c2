"""What of a run folder may be published, and what only the server that ran it may see.

A run folder has two parts. The **release** is what a reader of a published run may see: under
DP it is exactly what the reported epsilon covers. Everything else is **server-private** and is
written under ``server-private/`` (a name that says not to publish it): exact per-round counts
(sampled, replies, failures), timings, statistics of the clients' data, traces (clients' own
updates and, in simulations, their ground-truth batches), the server's log of those details.

A strategy that makes a privacy claim declares which of its round metrics may be released and
why, as a :class:`ReleasePolicy` returned by its ``release_policy()`` method (DP wrappers do;
:func:`policy_of` finds it through strategy wrappers). Under a policy the release is an
allowlist: a key the policy does not classify stays server-private. Without a policy no claim is
made and the round records are released whole, as before.

``release.json`` lists the release files of the folder; ``fedlab release RUN_DIR --out DIR``
copies exactly those. A folder without it was written before this split (fedlab < 0.2.0): treat
all of it as server-private.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedlab.errors import FedlabError

PRIVATE_DIR = "server-private"
#: The clients' own state between rounds (fedlab.client_state): never released, never the
#: server's to read.
CLIENT_PRIVATE_DIR = "client-state"
MANIFEST = "release.json"
MANIFEST_FORMAT = "fedlab-release/1"
#: Files a run folder may release, each a plain file at the folder's top level.
RELEASE_FILES = ("config.json", "history.json", "history.png", "model.safetensors", "summary.json")

#: Why a released value may be published. Every released key carries one of these.
RELEASE_CLASSES: dict[str, str] = {
    "public": "a value of the run config or of the code, fixed before any client data is used",
    "noised-model": "the model the mechanism released",
    "derived": "computed only from the released model or other released values (post-processing)",
    "accounted": "a noised statistic that the accountant composes",
    "accountant": "the accountant's output: a function of public values only",
}

#: Logger for details only the server may see (exact counts, failures, per-client timings).
#: Under a release policy they go to ``server-private/server.log`` and not to the terminal.
private_log = logging.getLogger("fedlab.server-private")

_README = """\
Server-private: do NOT publish anything in this folder.

It holds what only the server that ran this federation may see: exact per-round counts
(clients sampled, replies, failures), timings, statistics of the clients' data, gradient traces
(clients' own updates and their ground-truth batches) and the server's log of those details.
Under differential privacy the epsilon in ../history.json does not cover any of it.
Publish the release only: `fedlab release RUN_DIR --out DIR` copies exactly the files that
../release.json lists.
"""


@dataclass(frozen=True)
class ReleasePolicy:
    """Which round values a strategy's privacy claim lets the run folder release.

    Parameters
    ----------
    mode : str
        What the claim is, e.g. ``"central"`` (client-level, noise on the aggregate),
        ``"local"`` (each reply noised by its client) or ``"sample-level"`` (DP-SGD only).
    train_keys : mapping of str to str
        Released keys of the round's training metrics, each mapped to its class (a key of
        :data:`RELEASE_CLASSES`). Any other key stays server-private.
    evaluate_keys : mapping of str to str
        Released keys of the server's own evaluation (``evaluate_fn``, on data no client holds).
    """

    mode: str
    train_keys: Mapping[str, str] = field(default_factory=dict)
    evaluate_keys: Mapping[str, str] = field(
        default_factory=lambda: {"accuracy": "derived", "loss": "derived"}
    )

    def __post_init__(self) -> None:
        for key, kind in {**self.train_keys, **self.evaluate_keys}.items():
            if kind not in RELEASE_CLASSES:
                raise FedlabError(
                    f"release key {key!r} has class {kind!r}, not one of: "
                    f"{', '.join(RELEASE_CLASSES)}"
                )

    def release_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The released part of one round record: the round number, the allowlisted training
        metrics and the allowlisted server-side evaluation; nothing else."""
        out: dict[str, Any] = {"round": record["round"]}
        train = record.get("train") or {}
        out["train"] = {k: v for k, v in train.items() if k in self.train_keys}
        evaluation = record.get("evaluate") or {}
        out["evaluate"] = {k: v for k, v in evaluation.items() if k in self.evaluate_keys}
        return out

    def allowlist(self) -> dict[str, str]:
        """Every key a released round may hold, as ``section.key`` (``round`` alone)."""
        return {
            "round": "public",
            **{f"train.{k}": v for k, v in self.train_keys.items()},
            **{f"evaluate.{k}": v for k, v in self.evaluate_keys.items()},
        }


def policy_of(strategy: Any) -> ReleasePolicy | None:
    """The release policy ``strategy`` (or a strategy it wraps) declares, if any."""
    declare = getattr(strategy, "release_policy", None)
    return declare() if callable(declare) else None


def write_manifest(run_dir: Path, policy: ReleasePolicy | None) -> dict[str, Any]:
    """``release.json``: the release files and, under a policy, the allowlist of round keys."""
    from fedlab.atomic import atomic_write_json

    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "privacy-claim": policy.mode if policy else "none",
        "release": [*RELEASE_FILES, MANIFEST],
        "server-private": f"{PRIVATE_DIR}/",
        "client-private": f"{CLIENT_PRIVATE_DIR}/",
    }
    if policy is not None:
        manifest["released-round-keys"] = policy.allowlist()
        manifest["classes"] = RELEASE_CLASSES
    atomic_write_json(run_dir / MANIFEST, manifest)
    return manifest


def private_dir(run_dir: Path) -> Path:
    """``run_dir/server-private``, created with its do-not-publish note."""
    path = run_dir / PRIVATE_DIR
    path.mkdir(parents=True, exist_ok=True)
    note = path / "README.txt"
    if not note.exists():
        note.write_text(_README)
    return path


def copy_release(run_dir: str | Path, out: str | Path) -> list[str]:
    """Copy the release of ``run_dir`` (the files its ``release.json`` lists) into ``out``.

    Returns the names copied. ``out`` must not exist yet. A folder without ``release.json``
    was written before the release/server-private split and is refused as a whole.
    """
    import json

    src, dst = Path(run_dir), Path(out)
    manifest_path = src / MANIFEST
    if not manifest_path.is_file():
        raise FedlabError(
            f"{src} has no {MANIFEST}: it is not a run folder, or it was written before fedlab "
            "0.2.0, when exact counts and traces sat beside the released values; treat all of it "
            "as server-private and rerun the app to get a publishable release"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise FedlabError(f"{manifest_path} is not valid JSON ({exc}); rerun the app") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise FedlabError(
            f"{manifest_path} is not a {MANIFEST_FORMAT} manifest; rerun the app with this fedlab"
        )
    names = manifest.get("release")
    if not isinstance(names, list) or not set(names) <= {*RELEASE_FILES, MANIFEST}:
        raise FedlabError(
            f"{manifest_path} lists release files {names!r}; allowed: "
            f"{', '.join((*RELEASE_FILES, MANIFEST))}; rerun the app with this fedlab"
        )
    if dst.exists():
        raise FedlabError(f"--out {dst} exists; name a new folder (nothing is overwritten)")
    tmp = dst.with_name(f".{dst.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    copied = []
    for name in names:
        path = src / name
        if path.is_file() and not path.is_symlink():
            shutil.copy2(path, tmp / name)
            copied.append(name)
    tmp.rename(dst)
    return copied

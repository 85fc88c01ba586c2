"""The run folder: config, history, model and plot, each written atomically.

Under a strategy's :class:`~fedlab.release.ReleasePolicy` (DP) the folder is split: the release
(``config.json``, ``history.json``, ``history.png``, ``model.safetensors``, ``summary.json``,
``release.json``) holds only what the policy allows; the full round records, timings and traces
go to ``server-private/`` (see :mod:`fedlab.release`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from fedlab.checkpoint import Checkpoint

from fedlab.atomic import atomic_write, atomic_write_bytes, atomic_write_json
from fedlab.errors import FedlabError
from fedlab.history_plot import Panel, history_figure
from fedlab.release import ReleasePolicy, private_dir, private_log, write_manifest

#: Summary entries only server-private/summary.json holds under a policy: timings and the
#: run's interruptions are facts about the server's machine, which no accountant composes.
PRIVATE_SUMMARY_KEYS = ("seconds", "checkpoint", "resumes")
PACKAGES = ("fedlab", "flwr", "ray", "torch", "numpy", "opacus", "diffusers", "dp-accounting")


def default_run_dir(app_name: str, root: str | Path = "runs") -> Path:
    """``<root>/<app>-<UTC timestamp>``, absolute."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return (Path(root) / f"{app_name}-{stamp}").resolve()


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def read_config_json(run_path: str | Path) -> dict[str, Any] | None:
    """A run folder's ``config.json``, or None if it has none; one-line error if unreadable."""
    import json

    path = Path(run_path) / "config.json"
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FedlabError(f"{path} is unreadable ({exc}); it is not a fedlab run folder") from None
    if not isinstance(content, dict):
        raise FedlabError(f"{path} holds no JSON object; it is not a fedlab run folder")
    return content


class RunFolder:
    """Everything a run leaves behind, rewritten after every round.

    Parameters
    ----------
    path : str or Path
        Created if missing.
    plot_every : float
        Seconds between redraws of ``history.png`` during a run (drawing costs about 0.5 s);
        the summary at the end always redraws it. ``history.json`` is rewritten every round.
    plot_panels : sequence of Panel, optional
        An app's own panel layout for ``history.png``; by default the panels are chosen from
        the metric names (see :mod:`fedlab.history_plot`).
    """

    def __init__(
        self,
        path: str | Path,
        plot_every: float = 30.0,
        plot_panels: Sequence[Panel] | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.history: list[dict[str, Any]] = []  # the released round records
        self.private_history: list[dict[str, Any]] = []  # whole records, under a policy only
        self.policy: ReleasePolicy | None = None
        self.plot_every = plot_every
        self.plot_panels = tuple(plot_panels) if plot_panels is not None else None
        self._last_plot = time.monotonic()
        #: The checkpoint a resumed run continues from (``flower-simulation --resume``).
        self.resume_from: Checkpoint | None = None

    def write_config(
        self,
        app: str,
        config: Mapping[str, Any],
        seed: int,
        warnings: list[str] | None = None,
        *,
        launch: Mapping[str, Any] | None = None,
    ) -> None:
        """``config.json``: the app, its resolved run config, warnings and package versions.

        ``launch`` holds how the app was named (``app-reference``, ``app-dir``) so that
        ``flower-simulation --resume`` finds it again. A resumed run keeps the versions the run
        started with and adds the resuming ones when they differ.
        """
        content: dict[str, Any] = {"app": app, "seed": seed, "run-config": dict(config)}
        content.update(launch or {})
        if warnings:
            content["warnings"] = list(warnings)
        versions = package_versions()
        content["versions"] = versions
        previous = self.read_config()
        if previous and previous.get("versions") not in (None, versions):
            content["versions"] = previous["versions"]
            content["versions-on-resume"] = versions
        atomic_write_json(self.path / "config.json", content)

    def read_config(self) -> dict[str, Any] | None:
        """The run folder's ``config.json``, or None if it has none (a new run)."""
        return read_config_json(self.path)

    @property
    def private_path(self) -> Path:
        """``server-private/``: what only the server may see (created on first use)."""
        return private_dir(self.path)

    @property
    def traces_dir(self) -> Path:
        """Where gradient traces go: server-private, whatever the privacy claim (they hold the
        clients' own updates and, in simulations, their ground-truth batches)."""
        return self.private_path / "traces"

    def set_release_policy(self, policy: ReleasePolicy | None) -> None:
        """Fix what this run releases (before its first round) and write ``release.json``."""
        if self.history:
            raise RuntimeError("the release policy must be set before the first round")
        self.policy = policy
        write_manifest(self.path, policy)
        if policy is not None:
            self.private_path  # noqa: B018  (creates the folder and its do-not-publish note)

    @contextlib.contextmanager
    def private_logging(self) -> Iterator[None]:
        """Under a policy, route :data:`fedlab.release.private_log` and Flower's own server log
        (its lines count sampled nodes, replies and failures) to ``server-private/server.log``
        instead of the terminal, for the duration of the run."""
        if self.policy is None:
            yield
            return
        handler = logging.FileHandler(self.private_path / "server.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        saved = []
        for logger in (private_log, logging.getLogger("flwr")):
            saved.append((logger, list(logger.handlers), logger.propagate))
            logger.handlers = [handler]
            logger.propagate = False
        try:
            yield
        finally:
            for logger, handlers, propagate in saved:
                logger.handlers = handlers
                logger.propagate = propagate
            handler.close()

    def add_round(
        self, record: dict[str, Any], *, before_publishing: Callable[[], None] | None = None
    ) -> None:
        """Record a finished round: its released part in ``history.json``; under a policy the
        whole record in ``server-private/rounds.json``.

        ``before_publishing`` runs once the record is in :attr:`history` but before any file
        shows it (the round's checkpoint: whatever was published is then in a checkpoint).
        """
        if self.policy is not None:
            self.private_history.append(record)
            record = self.policy.release_record(record)
        self.history.append(record)
        if before_publishing is not None:
            before_publishing()
        self._write_histories()
        if time.monotonic() - self._last_plot >= self.plot_every:
            self.write_plot()

    def restore_rounds(
        self, history: list[dict[str, Any]], private_history: list[dict[str, Any]]
    ) -> None:
        """Continue from a checkpoint's round records (after :meth:`set_release_policy`): any
        round recorded after it, and not checkpointed, is dropped from the files."""
        self.history = list(history)
        self.private_history = list(private_history) if self.policy is not None else []
        self._write_histories()
        for stale in (self.path / "summary.json", self.path / "server-private" / "summary.json"):
            stale.unlink(missing_ok=True)  # the last session's: this one writes its own

    def _write_histories(self) -> None:
        if self.policy is not None:
            atomic_write_json(self.private_path / "rounds.json", self.private_history)
        atomic_write_json(self.path / "history.json", self.history)

    def write_model(self, arrays: Mapping[str, np.ndarray]) -> None:
        from safetensors.numpy import save

        tensors = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        atomic_write_bytes(self.path / "model.safetensors", save(tensors))

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """``summary.json``; under a policy without timings (server-private, with the whole
        last record, in ``server-private/summary.json``)."""
        self.write_plot()
        summary = dict(summary)
        if self.policy is not None:
            atomic_write_json(self.private_path / "summary.json", {
                **summary, "final": self.private_history[-1] if self.private_history else None,
            })  # fmt: skip
            for key in PRIVATE_SUMMARY_KEYS:
                summary.pop(key, None)
            summary["final"] = self.history[-1] if self.history else None
        atomic_write_json(self.path / "summary.json", summary)

    def write_plot(self) -> None:
        """Redraw ``history.png``: a few panels chosen by :func:`history_figure`."""
        self._last_plot = time.monotonic()
        figure = history_figure(self.history, self.plot_panels)
        if figure is None:
            return
        atomic_write(self.path / "history.png", lambda p: figure.savefig(p, format="png", dpi=80))

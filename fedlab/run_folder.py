"""The run folder: config, history, model and plot, each written atomically."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from fedlab.atomic import atomic_write, atomic_write_bytes, atomic_write_json
from fedlab.history_plot import Panel, history_figure

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
        self.history: list[dict[str, Any]] = []
        self.plot_every = plot_every
        self.plot_panels = tuple(plot_panels) if plot_panels is not None else None
        self._last_plot = time.monotonic()

    def write_config(
        self, app: str, config: Mapping[str, Any], seed: int, warnings: list[str] | None = None
    ) -> None:
        content = {"app": app, "seed": seed, "run-config": dict(config)}
        if warnings:
            content["warnings"] = list(warnings)
        content["versions"] = package_versions()
        atomic_write_json(self.path / "config.json", content)

    def add_round(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        atomic_write_json(self.path / "history.json", self.history)
        if time.monotonic() - self._last_plot >= self.plot_every:
            self.write_plot()

    def write_model(self, arrays: Mapping[str, np.ndarray]) -> None:
        from safetensors.numpy import save

        tensors = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        atomic_write_bytes(self.path / "model.safetensors", save(tensors))

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        self.write_plot()
        atomic_write_json(self.path / "summary.json", dict(summary))

    def write_plot(self) -> None:
        """Redraw ``history.png``: a few panels chosen by :func:`history_figure`."""
        self._last_plot = time.monotonic()
        figure = history_figure(self.history, self.plot_panels)
        if figure is None:
            return
        atomic_write(self.path / "history.png", lambda p: figure.savefig(p, format="png", dpi=80))

"""One compact figure of a run's history, chosen from the metric names alone.

A run's ``history.json`` may hold dozens of series; one panel each makes a strip nobody reads.
:func:`history_figure` groups them into at most four panels, so that what belongs together is
compared: losses on one axes, held-out metrics on another, per-client values as bars (or a
distribution) at the last round they appear, and DP epsilon against rounds. Series that do not
change (upload bytes, the clip norm) are listed as text, not drawn as flat lines; a series
measured once (a probe after the last round) is a marker, never a line. Every series stays in
``history.json``; the figure is only for a person's first look.

An app may pass its own :class:`Panel` list; the default needs nothing from the app.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from fedlab.errors import FedlabError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SECTIONS = ("train", "evaluate", "client-evaluate")
MAX_PANELS = 4
PER_PARTITION = re.compile(r"^(?P<stem>.+)-p(?P<partition>\d+)$")
# Beyond this many clients, bars turn into a box plot: 100 bars are not read one by one.
MAX_BARS = 20
MAX_TEXT_LINES = 24


@dataclass(frozen=True)
class Panel:
    """One panel of an app's own layout.

    Parameters
    ----------
    title : str
    patterns : tuple of str
        ``fnmatch`` patterns over ``"<section>/<key>"`` (``"train/*loss*"``,
        ``"evaluate/probe-acc-p*"``); a series goes to the first panel that matches it.
    kind : {"rounds", "clients"}
        ``"rounds"``: values against rounds; ``"clients"``: per-client values at the last round
        they appear (keys ending in ``-p<k>``, or lists with one value per client).
    """

    title: str
    patterns: tuple[str, ...]
    kind: Literal["rounds", "clients"] = "rounds"

    def __post_init__(self) -> None:
        if self.kind not in ("rounds", "clients"):
            raise FedlabError(f"Panel kind {self.kind!r} is not known; use 'rounds' or 'clients'")
        if not self.patterns:
            raise FedlabError(f"Panel {self.title!r} has no patterns; give at least one")

    def matches(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.patterns)


@dataclass
class Series:
    """One scalar metric over rounds: ``name`` is ``"<section>/<key>"``."""

    name: str
    section: str
    key: str
    rounds: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @property
    def is_constant(self) -> bool:
        """Two or more points, all equal: a flat line says nothing a number does not."""
        if len(self.values) < 2:
            return False
        low, high = min(self.values), max(self.values)
        return high - low <= 1e-12 * max(1.0, abs(high))


@dataclass
class ClientValues:
    """Per-client values of one metric at the last round they appear."""

    name: str
    round: int
    values: dict[int, float]


@dataclass
class _PanelContent:
    title: str
    kind: Literal["rounds", "clients"]
    series: list[Series] = field(default_factory=list)
    clients: list[ClientValues] = field(default_factory=list)

    def __bool__(self) -> bool:
        drawable = [s for s in self.series if not s.is_constant]
        return bool(drawable or self.clients)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def collect(history: Sequence[Mapping[str, Any]]) -> tuple[list[Series], list[ClientValues]]:
    """Split a history into scalar series and per-client values.

    Keys ending in ``-p<k>`` and list-valued metrics are per-client; the last round in which a
    metric appears gives its values. The same values reported in two sections (the FedFoA probe
    goes to both ``evaluate`` and ``client-evaluate``) are kept once, under the first section.
    """
    series: dict[str, Series] = {}
    clients: dict[str, ClientValues] = {}
    for record in history:
        server_round = int(record.get("round", 0))
        for section in SECTIONS:
            per_client_this_round: dict[str, dict[int, float]] = {}
            for key, value in (record.get(section) or {}).items():
                match = PER_PARTITION.match(key)
                if match and _is_number(value):
                    stem = f"{section}/{match['stem']}"
                    per_client_this_round.setdefault(stem, {})[int(match["partition"])] = value
                elif isinstance(value, list) and value and all(_is_number(v) for v in value):
                    per_client_this_round[f"{section}/{key}"] = dict(enumerate(value))
                elif _is_number(value):
                    name = f"{section}/{key}"
                    found = series.setdefault(name, Series(name, section, key))
                    found.rounds.append(server_round)
                    found.values.append(float(value))
            for name, values in per_client_this_round.items():
                clients[name] = ClientValues(name, server_round, values)
    unique_series: dict[tuple[str, tuple[int, ...], tuple[float, ...]], Series] = {}
    for item in series.values():
        unique_series.setdefault((item.key, tuple(item.rounds), tuple(item.values)), item)
    unique_clients: dict[tuple[str, int, tuple[tuple[int, float], ...]], ClientValues] = {}
    for values in clients.values():
        stem = values.name.split("/", 1)[1]
        unique_clients.setdefault(
            (stem, values.round, tuple(sorted(values.values.items()))), values
        )
    return list(unique_series.values()), list(unique_clients.values())


def _is_epsilon(key: str) -> bool:
    return key.startswith("dp-") and "epsilon" in key


def _automatic_panels(
    series: list[Series], clients: list[ClientValues]
) -> tuple[list[_PanelContent], list[Series]]:
    """Losses, held-out metrics, per-client values, epsilon, then anything else varying."""
    losses = _PanelContent("losses", "rounds")
    held_out = _PanelContent("held-out metrics", "rounds")
    per_client = _PanelContent("per client", "clients", clients=list(clients))
    epsilon = _PanelContent("DP epsilon", "rounds")
    other = _PanelContent("other training metrics", "rounds")
    for item in series:
        if _is_epsilon(item.key):
            epsilon.series.append(item)
        elif "loss" in item.key:
            losses.series.append(item)
        elif item.section in ("evaluate", "client-evaluate"):
            held_out.series.append(item)
        else:
            other.series.append(item)
    candidates = [losses, held_out, per_client, epsilon, other]
    chosen = [panel for panel in candidates if panel][:MAX_PANELS]
    left_over = [s for panel in candidates if panel not in chosen for s in panel.series]
    return chosen, left_over


def _explicit_panels(
    panels: Sequence[Panel], series: list[Series], clients: list[ClientValues]
) -> tuple[list[_PanelContent], list[Series]]:
    if len(panels) > MAX_PANELS:
        raise FedlabError(
            f"a history figure has at most {MAX_PANELS} panels, got {len(panels)}; "
            "merge panels or leave some series to history.json"
        )
    contents = [_PanelContent(p.title, p.kind) for p in panels]
    left_over = []
    for item in series:
        target = next(
            (c for c, p in zip(contents, panels, strict=True) if p.matches(item.name)), None
        )
        if target is None or target.kind == "clients":
            left_over.append(item)
        else:
            target.series.append(item)
    for values in clients:
        target = next(
            (c for c, p in zip(contents, panels, strict=True) if p.matches(values.name)), None
        )
        if target is not None and target.kind == "clients":
            target.clients.append(values)
    return [c for c in contents if c], left_over


def _draw_rounds(ax: Any, panel: _PanelContent, first_round: int, last_round: int) -> None:
    from matplotlib.ticker import MaxNLocator

    for item in panel.series:
        if item.is_constant:
            continue
        if len(item.values) == 1:
            # One measurement: a marker, so nothing suggests a trend between rounds.
            ax.scatter(item.rounds, item.values, label=f"{item.name} (once)", zorder=3)
        else:
            ax.plot(item.rounds, item.values, marker="o", markersize=3, label=item.name)
    ax.set_xlabel("round")
    # The run's whole span, so a point measured once sits where it belongs among the rounds.
    margin = max(0.5, 0.05 * (last_round - first_round))
    ax.set_xlim(first_round - margin, last_round + margin)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    positive = [v for s in panel.series if not s.is_constant for v in s.values]
    if positive and min(positive) > 0 and max(positive) / min(positive) > 1e3:
        ax.set_yscale("log")  # series of very different sizes stay readable together
    ax.legend(fontsize=7, loc="best")


def _draw_clients(ax: Any, panel: _PanelContent) -> None:
    from matplotlib.ticker import MaxNLocator

    many = max(len(c.values) for c in panel.clients) > MAX_BARS
    if many:
        ax.boxplot([list(c.values.values()) for c in panel.clients], orientation="horizontal")
        ax.set_yticks(
            range(1, len(panel.clients) + 1),
            [f"{c.name} (round {c.round}, {len(c.values)} clients)" for c in panel.clients],
            fontsize=7,
        )
        return
    width = 0.8 / len(panel.clients)
    for index, item in enumerate(panel.clients):
        partitions = sorted(item.values)
        offsets = [p - 0.4 + width * (index + 0.5) for p in partitions]
        ax.bar(offsets, [item.values[p] for p in partitions], width=width,
               label=f"{item.name} (round {item.round})")  # fmt: skip
    ax.set_xlabel("partition")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, loc="best")


def _text_lines(constants: list[Series], left_over: list[Series]) -> list[str]:
    lines = [f"{s.name} = {s.values[0]:.4g} (constant)" for s in constants]
    lines += [f"{s.name}: {s.values[0]:.4g} -> {s.values[-1]:.4g}" for s in left_over]
    if len(lines) > MAX_TEXT_LINES:
        hidden = len(lines) - MAX_TEXT_LINES + 1
        lines = lines[: MAX_TEXT_LINES - 1] + [f"... and {hidden} more in history.json"]
    return lines


def history_figure(
    history: Sequence[Mapping[str, Any]], panels: Sequence[Panel] | None = None
) -> Figure | None:
    """The run's history as one figure of at most four panels, or None when there is no metric.

    Parameters
    ----------
    history : sequence of mapping
        ``RunFolder.history``: per-round dicts with ``round`` and the sections ``train``,
        ``evaluate`` and ``client-evaluate``.
    panels : sequence of Panel, optional
        An app's own layout; by default the panels are chosen from the metric names.

    Returns
    -------
    matplotlib.figure.Figure or None
        Not attached to pyplot, so nothing global changes and no ``close`` is needed.
    """
    # Imported here: every ClientApp imports the run folder, and only the server ever draws.
    from matplotlib.figure import Figure

    series, clients = collect(history)
    if not series and not clients:
        return None
    rounds = [int(record.get("round", 0)) for record in history]
    if panels is None:
        contents, left_over = _automatic_panels(series, clients)
    else:
        contents, left_over = _explicit_panels(panels, series, clients)
    drawn = {id(s) for c in contents for s in c.series}
    constants = [s for s in series if s.is_constant]
    left_over = [s for s in left_over if not s.is_constant and id(s) not in drawn]
    lines = _text_lines(constants, left_over)

    columns = 1 if len(contents) <= 1 else 2
    rows = math.ceil(len(contents) / columns)
    text_rows = math.ceil(len(lines) / 2)
    text_height = 0.2 + 0.16 * text_rows if lines else 0.0
    width, panel_height = 11.0, 3.4
    fig = Figure(figsize=(width, panel_height * rows + text_height + 0.3), layout="constrained")
    if text_height:
        grid = fig.add_gridspec(
            rows + 1, columns, height_ratios=[panel_height] * rows + [text_height]
        )
    else:
        grid = fig.add_gridspec(rows, columns)
    for index, panel in enumerate(contents):
        ax = fig.add_subplot(grid[index // columns, index % columns])
        ax.set_title(panel.title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if panel.kind == "clients":
            _draw_clients(ax, panel)
        else:
            _draw_rounds(ax, panel, min(rounds), max(rounds))
    if lines:
        half = math.ceil(len(lines) / 2)
        text = fig.add_subfigure(grid[rows, :]) if text_height else fig
        for column, chunk in enumerate((lines[:half], lines[half:])):
            text.text(0.01 + 0.5 * column, 0.95, "\n".join(chunk), va="top", ha="left",
                      fontsize=7, family="monospace")  # fmt: skip
    if not contents:
        fig.suptitle("every metric is constant or measured once; values below", fontsize=9)
    return fig

"""history.png: a few panels that compare what belongs together, for every app's history."""

from __future__ import annotations

import json
from typing import Any

import matplotlib.image
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fedlab.errors import FedlabError
from fedlab.history_plot import MAX_PANELS, Panel, history_figure
from fedlab.run_folder import RunFolder


def fedavg_history(rounds: int = 5) -> list[dict[str, Any]]:
    return [
        {
            "round": r, "sampled": 4, "replies": 4, "failures": 0,
            "train": {"train-loss": 2.0 / r, "num-batches": 12},
            "client-evaluate": {"loss": 2.2 / r, "accuracy": 0.1 * r},
            "evaluate": {"loss": 2.1 / r, "accuracy": 0.1 * r + 0.05},
            "seconds": 0.5,
        }
        for r in range(1, rounds + 1)
    ]  # fmt: skip


def dpfedavg_history(rounds: int = 6) -> list[dict[str, Any]]:
    return [
        {
            "round": r, "sampled": 3 + r % 4,
            "train": {
                "dp-sampled": 3 + r % 4, "dp-clip-norm": 0.3, "dp-noise-multiplier": 1.0,
                "dp-noise-std": 0.03, "dp-client-epsilon": 2.0 + 0.2 * r, "dp-delta": 1e-5,
                "dp-sample-epsilon-max": 0.5 * r, "dp-mode": "central",
            },
            "evaluate": {"loss": 2.3 - 0.05 * r, "accuracy": 0.1 + 0.04 * r},
        }
        for r in range(1, rounds + 1)
    ]  # fmt: skip


def fedfoa_history(rounds: int = 4, clients: int = 8) -> list[dict[str, Any]]:
    history = []
    for r in range(1, rounds + 1):
        train = {
            "train-loss": 4.2 - 0.1 * r, "train-ssl-loss": 4.0 - 0.1 * r,
            "align-weight": 0.0 if r == 1 else 1.0, "upload-bytes-per-client": 4416.0,
            "upload-bytes-total": 4416.0 * clients, "relation-rank-mean": 16.0,
            "relation-alignment": 0.5 + 0.1 * r,
        }  # fmt: skip
        if r > 1:
            train["train-align-loss"] = 0.2 / r
        record: dict[str, Any] = {"round": r, "train": train, "evaluate": {}}
        if r == rounds:  # the probe runs after the last round only
            probe = {f"probe-acc-p{k}": 0.1 + 0.01 * k for k in range(clients)}
            probe |= {"probe-acc-mean": 0.135, "probe-acc-std": 0.02}
            record["evaluate"] = dict(probe)
            record["client-evaluate"] = dict(probe)
        history.append(record)
    return history


def lines_by_label(fig: Figure) -> dict[str, tuple[Axes, Any]]:
    return {line.get_label(): (ax, line) for ax in fig.axes for line in ax.get_lines()}


def drawn_labels(ax: Axes) -> set[str]:
    """Labels of everything a legend names: lines, markers and bars."""
    handles, labels = ax.get_legend_handles_labels()
    return set(labels)


ALL_HISTORIES = {
    "fedavg": fedavg_history,
    "dpfedavg": dpfedavg_history,
    "fedfoa": fedfoa_history,
}


@pytest.mark.parametrize("app", sorted(ALL_HISTORIES))
def test_at_most_four_panels_for_every_app(app: str) -> None:
    fig = history_figure(ALL_HISTORIES[app]())
    assert fig is not None
    assert 1 <= len(fig.axes) <= MAX_PANELS


@pytest.mark.parametrize("app", sorted(ALL_HISTORIES))
def test_constants_and_single_points_are_never_lines(app: str) -> None:
    history = ALL_HISTORIES[app]()
    fig = history_figure(history)
    lines = lines_by_label(fig)
    for record in history:
        for section in ("train", "evaluate", "client-evaluate"):
            for key in record.get(section, {}):
                values = [rec[section][key] for rec in history if key in rec.get(section, {})]
                if len(values) == 1 or len(set(values)) == 1:
                    assert f"{section}/{key}" not in lines, (section, key)


def test_fedfoa_constants_listed_as_text_and_probe_as_bars_at_last_round() -> None:
    fig = history_figure(fedfoa_history(rounds=4, clients=8))
    text = "\n".join(t.get_text() for sub in [fig, *fig.subfigs] for t in sub.texts)
    assert "train/upload-bytes-per-client = 4416 (constant)" in text
    assert "train/relation-rank-mean = 16 (constant)" in text
    bars = [ax for ax in fig.axes if ax.patches]
    assert len(bars) == 1
    heights = [round(p.get_height(), 6) for p in bars[0].patches]
    assert heights == [round(0.1 + 0.01 * k, 6) for k in range(8)]
    # The probe goes to two sections with the same values: drawn once, labelled with its round.
    assert drawn_labels(bars[0]) == {"evaluate/probe-acc (round 4)"}
    # The per-client keys never become series of their own.
    assert not any("probe-acc-p" in label for label in lines_by_label(fig))


def test_fedfoa_single_probe_mean_is_a_marker() -> None:
    fig = history_figure(fedfoa_history())
    held_out = next(ax for ax in fig.axes if ax.get_title() == "held-out metrics")
    assert "evaluate/probe-acc-mean (once)" in drawn_labels(held_out)
    assert held_out.collections and not held_out.get_lines()


@pytest.mark.parametrize("app", sorted(ALL_HISTORIES))
def test_losses_share_one_axes(app: str) -> None:
    lines = lines_by_label(history_figure(ALL_HISTORIES[app]()))
    loss_axes = {id(ax) for label, (ax, _) in lines.items() if "loss" in label}
    assert len(loss_axes) == 1
    (ax_id,) = loss_axes
    assert all("loss" in label for label, (ax, _) in lines.items() if id(ax) == ax_id)


def test_fedavg_train_and_held_out_loss_compared_on_one_axes() -> None:
    lines = lines_by_label(history_figure(fedavg_history()))
    train_ax, _ = lines["train/train-loss"]
    evaluate_ax, _ = lines["evaluate/loss"]
    assert train_ax is evaluate_ax
    assert lines["evaluate/accuracy"][0] is lines["client-evaluate/accuracy"][0]
    assert lines["evaluate/accuracy"][0] is not train_ax


def test_dp_epsilon_on_its_own_axes_against_rounds() -> None:
    fig = history_figure(dpfedavg_history(rounds=6))
    lines = lines_by_label(fig)
    ax, line = lines["train/dp-client-epsilon"]
    assert ax.get_xlabel() == "round"
    assert list(line.get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert {label for label, (other, _) in lines.items() if other is ax} == {
        "train/dp-client-epsilon",
        "train/dp-sample-epsilon-max",
    }
    assert "train/dp-clip-norm" not in lines


def test_per_client_lists_and_many_clients_become_a_distribution() -> None:
    history = [
        {"round": r, "train": {"loss": 1.0 / r, "client-norms": [0.1 * k for k in range(50)]}}
        for r in (1, 2)
    ]
    fig = history_figure(history)
    assert len(fig.axes) == 2
    box = next(ax for ax in fig.axes if ax.get_title() == "per client")
    assert "train/client-norms (round 2, 50 clients)" in [
        t.get_text() for t in box.get_yticklabels()
    ]
    assert not box.patches  # no 50 bars


def test_app_panels_choose_what_goes_where() -> None:
    panels = [
        Panel("accuracy", ("evaluate/accuracy",)),
        Panel("privacy", ("train/dp-*",)),
    ]
    fig = history_figure(dpfedavg_history(), panels)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["accuracy", "privacy"]
    lines = lines_by_label(fig)
    assert lines["train/dp-sampled"][0] is lines["train/dp-client-epsilon"][0]
    assert "evaluate/loss" not in lines  # matched by no panel: listed as text only
    text = "\n".join(t.get_text() for sub in [fig, *fig.subfigs] for t in sub.texts)
    assert "evaluate/loss: 2.25 -> 2" in text


def test_too_many_or_malformed_panels_are_refused() -> None:
    with pytest.raises(FedlabError, match="at most 4 panels, got 5"):
        history_figure(fedavg_history(), [Panel(f"p{i}", ("*",)) for i in range(5)])
    with pytest.raises(FedlabError, match="kind 'lines' is not known"):
        Panel("p", ("*",), kind="lines")  # type: ignore[arg-type]


def test_history_without_metrics_draws_nothing(tmp_path) -> None:
    assert history_figure([{"round": 1, "train": {}, "evaluate": {}}]) is None
    run = RunFolder(tmp_path)
    run.add_round({"round": 1, "train": {}, "evaluate": {}})
    run.write_plot()
    assert not (tmp_path / "history.png").exists()


@pytest.mark.parametrize("app", sorted(ALL_HISTORIES))
def test_write_plot_png_is_compact(tmp_path, app: str) -> None:
    run = RunFolder(tmp_path, plot_every=3600)
    for record in ALL_HISTORIES[app]():
        run.add_round(record)
    assert not (tmp_path / "history.png").exists()  # the redraw throttle holds
    run.write_plot()
    height, width = matplotlib.image.imread(tmp_path / "history.png").shape[:2]
    assert height <= 2 * width
    assert json.loads((tmp_path / "history.json").read_text()) == ALL_HISTORIES[app]()


def test_plot_every_zero_redraws_each_round(tmp_path) -> None:
    run = RunFolder(tmp_path, plot_every=0)
    run.add_round(fedavg_history(1)[0])
    assert (tmp_path / "history.png").exists()
    assert not list(tmp_path.glob(".history.png.*"))  # atomic: no temporary file left behind

"""Server side shared by every app: seeding, node order, the round record and a clean stop.

Flower's ``Strategy.start`` owns the round loop. We add two thin layers around it:
:class:`PartitionOrderedGrid`, so that seeded node sampling picks the same partitions in every
run (simulation node ids are random), and :class:`RoundRecorder`, a strategy wrapper that counts
replies and failures, enforces ``min-replies``, rewrites the run folder after every round and
ends the run at a round boundary when a :class:`StopRequest` (Ctrl-C) asks it to.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedlab.checkpoint import Checkpointer, prune_checkpoints, restore
from fedlab.client_state import client_state_bytes, roll_back_client_state
from fedlab.errors import FedlabError, RunStopped
from fedlab.key_groups import RunConfig
from fedlab.population import PopulationGrid
from fedlab.release import policy_of, private_log
from fedlab.run_folder import RunFolder
from fedlab.strategy_wrapper import StrategyWrapper

log = logging.getLogger("fedlab")

CLIENT_INFO = "client"  # ConfigRecord name under which clients report their partition id
EvaluateFn = Callable[[int, ArrayRecord], MetricRecord | None]
# A grid carrying a StopRequest under this attribute lets whoever drives the run end it early.
STOP_REQUEST_ATTR = "stop_request"
#: Crash tests: the server stops for good right after checkpointing this round (before
#: publishing it and before the next round sends anything), so a SIGKILL lands at a known point.
HOLD_AFTER_ROUND_ENV = "FEDLAB_HOLD_AFTER_ROUND"


class StopRequest:
    """A request, from a signal handler or another thread, to end the run after this round.

    The round in progress finishes and is recorded; the next one does not start, and the
    summary's ``stopped-early`` is the reason given here. Thread-safe; the first reason wins.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.reason = ""

    def request(self, reason: str) -> None:
        """Ask the run to stop before its next round, saying why."""
        with self._lock:
            if not self._event.is_set():
                self.reason = reason
                self._event.set()

    def is_set(self) -> bool:
        """Whether a stop has been requested."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested or ``timeout`` seconds pass; whether it was."""
        return self._event.wait(timeout)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random`` (Flower samples nodes with it), numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (legacy global RNG some libraries use)
    torch.manual_seed(seed)


class PartitionOrderedGrid:
    """A grid whose node ids come in partition order, so seeded sampling is reproducible.

    Parameters
    ----------
    grid : Grid
        Flower's grid; everything but ``get_node_ids`` is passed through.
    expected_nodes : int
        Wait for this many nodes; 0 waits until the count stops changing.
    """

    def __init__(self, grid: Grid, expected_nodes: int = 0, timeout: float = 120.0) -> None:
        self._grid = grid
        self.partition_of: dict[int, int] = {}
        node_ids = self._wait_for_nodes(expected_nodes, timeout)
        messages = [
            Message(content=RecordDict(), message_type=MessageType.QUERY, dst_node_id=n)
            for n in node_ids
        ]
        for reply in grid.send_and_receive(messages, timeout=timeout):
            if not reply.has_error() and CLIENT_INFO in reply.content:
                info = reply.content[CLIENT_INFO]
                self.partition_of[reply.metadata.src_node_id] = int(info["partition-id"])

    def _wait_for_nodes(self, expected: int, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        last, stable_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            nodes = list(self._grid.get_node_ids())
            if expected and len(nodes) >= expected:
                return nodes
            if len(nodes) != last:
                last, stable_since = len(nodes), time.monotonic()
            elif not expected and nodes and time.monotonic() - stable_since > 2.0:
                return nodes
            time.sleep(0.2)
        raise RunStopped(f"only {last} of {expected or 'any'} nodes connected in {timeout:.0f} s")

    def get_node_ids(self) -> list[int]:
        nodes = list(self._grid.get_node_ids())
        return sorted(nodes, key=lambda n: (self.partition_of.get(n, len(nodes) + 1), n))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)


class RoundRecorder(StrategyWrapper):
    """Wrap any strategy: count replies, stop below ``min_replies``, record every round.

    Parameters
    ----------
    inner : Strategy
    run : RunFolder
    min_replies : int
        A round with fewer successful training replies stops the run, keeping finished rounds.
    num_rounds : int
        For the progress line.
    stop : StopRequest, optional
        Checked as each round starts: once set, the run stops with its reason.
    first_round : int
        Rounds already finished (a resumed run): Flower's loop counts from 1 again, and every
        round number the inner strategy sees is shifted by this.
    checkpointer : Checkpointer, optional
        Writes each round's checkpoint before the round is published.
    """

    def __init__(
        self,
        inner: Strategy,
        run: RunFolder,
        min_replies: int,
        num_rounds: int,
        stop: StopRequest | None = None,
        *,
        first_round: int = 0,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        super().__init__(inner)
        self.run = run
        self.min_replies = min_replies
        self.num_rounds = num_rounds
        self.stop = stop
        self.first_round = first_round
        self.checkpointer = checkpointer
        self._round: dict[str, Any] = {}
        self._started = 0.0

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        server_round += self.first_round
        # Checked before any message goes out, so every recorded round is a whole one.
        if self.stop is not None and self.stop.is_set():
            raise RunStopped(f"round {server_round} not started: {self.stop.reason}")
        self._started = time.perf_counter()
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self._round = {"round": server_round, "sampled": len(messages)}
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        server_round += self.first_round
        replies = _in_partition_order(replies)
        broken = [r for r in replies if not r.has_error() and not is_finite_reply(r)]
        if broken:
            private_log.warning("round %d: %d replies hold NaN or Inf (partitions %s); counted "
                                "as failed", server_round, len(broken),
                                _partitions(broken))  # fmt: skip
            replies = [r for r in replies if all(r is not b for b in broken)]
        ok = [r for r in replies if not r.has_error()]
        failed = [r for r in replies if r.has_error()]
        if failed:
            # A client that fails every round would otherwise only show as "15/16" in the log.
            private_log.warning("round %d: %d clients failed (%s); first reason: %s", server_round,
                                len(failed), _partitions(failed),
                                failed[0].error.reason[:300])  # fmt: skip
        self._round.update(replies=len(ok), failures=self._round["sampled"] - len(ok))
        if self._round["sampled"] == 0:
            # A sampling strategy (Poisson under DP) drew nobody: not a failure of the clients.
            private_log.warning("round %d: no client was sampled", server_round)
        elif len(ok) < self.min_replies:
            raise RunStopped(
                f"round {server_round}: {len(ok)} of {self._round['sampled']} clients replied, "
                f"fewer than min-replies={self.min_replies}"
            )
        arrays, metrics = self.inner.aggregate_train(server_round, replies)
        self._round["train"] = _plain(metrics)
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round + self.first_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        server_round += self.first_round
        metrics = self.inner.aggregate_evaluate(server_round, _in_partition_order(replies))
        if metrics is not None:
            self._round["client-evaluate"] = _plain(metrics)
        return metrics

    def end_round(
        self, server_round: int, arrays: ArrayRecord, evaluation: MetricRecord | None
    ) -> None:
        """Called after the round's central evaluation (``server_round`` already shifted by
        ``first_round``): checkpoint, write the run folder and one line."""
        record = {"round": server_round, "sampled": 0, "replies": 0, "failures": 0, **self._round}
        record["evaluate"] = _plain(evaluation)
        record["seconds"] = round(time.perf_counter() - self._started, 3)

        def checkpoint() -> None:
            if self.checkpointer is not None:
                self.checkpointer.write(server_round, arrays, self.run.history,
                                        self.run.private_history)  # fmt: skip
            if HOLD_AFTER_ROUND_ENV in os.environ and int(os.environ[HOLD_AFTER_ROUND_ENV]) == \
                    server_round:  # fmt: skip
                log.warning("%s=%d: holding here so that a test can kill the run",
                            HOLD_AFTER_ROUND_ENV, server_round)  # fmt: skip
                threading.Event().wait()

        self.run.add_round(record, before_publishing=checkpoint)
        self.run.write_model({k: v.numpy() for k, v in arrays.items()})
        released = self.run.history[-1]  # what the terminal may show: the release
        line = f"round {server_round}/{self.num_rounds}  " + _metrics_line(released)
        counts = f"  replies {record['replies']}/{record['sampled']}  {record['seconds']:.2f} s"
        if self.run.policy is None:
            log.info("%s%s", line, counts)
        else:
            log.info("%s", line)
            private_log.info("%s%s", _metrics_line(record), counts)


def _metrics_line(record: dict[str, Any]) -> str:
    shown = {**record.get("train", {}), **record.get("evaluate", {})}
    return "  ".join(f"{k}={v:.4g}" for k, v in shown.items() if isinstance(v, float | int))


def is_finite_reply(reply: Message, arrays_key: str | None = None) -> bool:
    """Whether every floating-point value of the reply's arrays and metrics is finite.

    ``arrays_key`` limits the array check to one ArrayRecord (all of them by default).
    """
    for key, record in reply.content.array_records.items():
        if arrays_key is not None and key != arrays_key:
            continue
        for array in record.values():
            values = array.numpy()
            if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
                return False
    for record in reply.content.metric_records.values():
        for value in record.values():
            numbers = value if isinstance(value, list) else [value]
            if not all(np.isfinite(v) for v in numbers if isinstance(v, float)):
                return False
    return True


def _in_partition_order(replies: Iterable[Message]) -> list[Message]:
    """Replies sorted by partition id: arrival order varies under Ray, and the order of a
    floating-point sum changes its last bits, which would break same-seed reproducibility."""

    def key(reply: Message) -> tuple[int, int]:
        if not reply.has_error() and CLIENT_INFO in reply.content:
            return (0, int(reply.content[CLIENT_INFO]["partition-id"]))
        return (1, int(reply.metadata.src_node_id))

    return sorted(replies, key=key)


def _partitions(replies: list[Message]) -> str:
    return ", ".join(str(r.content[CLIENT_INFO]["partition-id"])
                     if r.has_content() and CLIENT_INFO in r.content
                     else f"node {r.metadata.src_node_id}" for r in replies)  # fmt: skip


def _plain(metrics: MetricRecord | None) -> dict[str, Any]:
    if metrics is None:
        return {}
    return {k: v for k, v in metrics.items() if k != "num-examples"}


def run_federation(
    grid: Grid,
    config: RunConfig,
    run: RunFolder,
    *,
    strategy_factory: Callable[[int], Strategy],
    initial_arrays: ArrayRecord,
    evaluate_fn: EvaluateFn | None = None,
    train_config: ConfigRecord | None = None,
) -> dict[str, Any]:
    """Run a strategy for ``config.num_server_rounds`` rounds; return the summary.

    ``strategy_factory(num_nodes)`` builds the strategy once the nodes are known (it waits for
    ``config.num_supernodes`` of them).

    A :class:`RunStopped` raised by a strategy or by the reply check ends the run cleanly:
    every finished round is already in the run folder, and the summary says why it stopped. So
    does a :class:`StopRequest` that the grid carries as ``stop_request`` (Ctrl-C under
    ``flower-simulation``), at the start of the next round.
    """
    seed_everything(config.seed)
    resume = run.resume_from
    checkpointer: Checkpointer | None = None
    resumes = list(resume.document.get("resumes", [])) + [resume.round] if resume else []
    stopped = None
    stop: StopRequest | None = getattr(grid, STOP_REQUEST_ATTR, None)
    try:
        ordered = PartitionOrderedGrid(grid, config.num_supernodes)
        population = int(getattr(config, "population", 0))
        # With a population, strategies sample client ids 0..N-1 and the nodes are workers.
        rounds_grid = PopulationGrid(ordered, population) if population else ordered
        num_nodes = population or len(ordered.get_node_ids())
        strategy = strategy_factory(num_nodes)
        policy = policy_of(strategy)
        if policy is not None and config.min_replies > 0:
            raise FedlabError(
                f"min-replies={config.min_replies} under a {policy.mode} privacy claim: stopping "
                "on a reply count would publish that count (through the run's length), which no "
                "accountant composes; set min-replies=0 (a missing reply counts as a zero update)"
            )
        run.set_release_policy(policy)
        first_round, restore_random = 0, None
        if resume is not None:
            restore_random = restore(resume, strategy)
            run.restore_rounds(resume.history, resume.private_history)
            initial_arrays, first_round = resume.arrays, resume.round
            log.info("resuming %s after round %d of %d", run.path, first_round,
                     config.num_server_rounds)  # fmt: skip
        checkpointer = Checkpointer(
            run.path,
            strategy,
            {"app": config_app_name(run), "planned": config.num_server_rounds,
             "resumes": resumes},
            seconds_before=resume.document["seconds"] if resume else 0.0,
        )  # fmt: skip
        recorder = RoundRecorder(
            strategy, run, config.min_replies, config.num_server_rounds, stop=stop,
            first_round=first_round, checkpointer=checkpointer,
        )  # fmt: skip

        def evaluate_and_record(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
            if server_round == 0:
                return None
            server_round += first_round
            evaluation = evaluate_fn(server_round, arrays) if evaluate_fn else None
            recorder.end_round(server_round, arrays, evaluation)
            return evaluation

        with run.private_logging():
            if resume is not None:
                roll_back_client_state(run.path, first_round)  # logs a count: inside
            if restore_random is not None:
                restore_random()
            recorder.start(
                grid=rounds_grid,  # type: ignore[arg-type]
                initial_arrays=initial_arrays,
                num_rounds=config.num_server_rounds - first_round,
                timeout=config.round_timeout,
                train_config=train_config or ConfigRecord(),
                evaluate_fn=evaluate_and_record,
            )
    except RunStopped as exc:
        stopped = str(exc)
        if stop is not None and stop.is_set() and stop.reason not in stopped:
            # A second Ctrl-C ends the clients mid-round: the missing replies are its doing.
            stopped = f"{stopped} (after: {stop.reason})"
        log.warning("run stopped early: %s (finished rounds are kept in %s)", stopped, run.path)
    summary: dict[str, Any] = {
        "rounds-finished": len(run.history),
        "rounds-planned": config.num_server_rounds,
        "stopped-early": stopped,
        "seconds": round(checkpointer.elapsed(), 2) if checkpointer else 0.0,
        "final": run.history[-1] if run.history else None,
    }
    if checkpointer is not None:
        summary["checkpoint"] = {**checkpointer.cost(),
                                 "client-state-bytes": client_state_bytes(run.path)}  # fmt: skip
    if resumes:
        summary["resumes"] = [{"after-round": r} for r in resumes]
    if len(run.history) == config.num_server_rounds:
        prune_checkpoints(run.path, keep=1)  # what extending the run needs
    run.write_summary(summary)
    return summary


def config_app_name(run: RunFolder) -> str:
    """The app name ``config.json`` records (checked again on resume)."""
    return str((run.read_config() or {}).get("app", ""))

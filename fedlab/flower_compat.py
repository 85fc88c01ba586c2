"""The one place fedlab reaches into Flower beyond its package exports.

Flower 1.42 keeps the helpers its own strategies use (weighted averaging of records, the reply
consistency check) in ``flwr.serverapp.strategy.strategy_utils`` without exporting them, its
error codes in ``flwr.common.constant`` and the process's task identity in
``flwr.supercore.task_identity``. Importing them here, and only here, means a Flower upgrade that
moves or renames one breaks this module and ``tests/core/test_flower_compat.py``, not every
strategy that uses them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flwr.clientapp.typing import ClientAppCallable, Mod
from flwr.common.constant import ErrorCode
from flwr.serverapp.exception import InconsistentMessageReplies
from flwr.serverapp.strategy.strategy_utils import (
    aggregate_arrayrecords,
    aggregate_metricrecords,
    validate_message_reply_consistency,
)
from flwr.supercore.task_identity import TaskIdentity

__all__ = [
    "CLIENT_APP_RAISED_EXCEPTION",
    "ClientAppCallable",
    "InconsistentMessageReplies",
    "Mod",
    "aggregate_arrayrecords",
    "aggregate_metricrecords",
    "ensure_task_identity",
    "has_task_identity",
    "saved_task_identity",
    "validate_message_reply_consistency",
]

#: The error code Flower gives the reply of a ClientApp that raised (not 0: that is UNKNOWN).
CLIENT_APP_RAISED_EXCEPTION: int = ErrorCode.CLIENT_APP_RAISED_EXCEPTION

# The identity run_simulation gives a process; an in-process run uses the same one.
_IN_PROCESS_IDENTITY = (1, 1, 0)  # task id, run id, node id


def has_task_identity() -> bool:
    """Whether this process has a Flower run id (Flower refuses to build messages without)."""
    try:
        TaskIdentity.run_id  # noqa: B018  (the property raises when no run id is set)
    except RuntimeError:
        return False
    return True


def ensure_task_identity() -> None:
    """Give this process the identity ``run_simulation`` would, unless it already has one."""
    if not has_task_identity():
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = _IN_PROCESS_IDENTITY


@contextmanager
def saved_task_identity() -> Iterator[None]:
    """Set the in-process identity for the block, then restore whatever was there before.

    For tests: without it, whether a test may build a ``Message`` depends on whether an earlier
    test ran a simulation.
    """
    # Flower offers no public way to read an unset identity, so the saved values are private.
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = _IN_PROCESS_IDENTITY
    try:
        yield
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved

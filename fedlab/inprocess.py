"""An in-process grid: an app's ServerApp and ClientApp handlers in one process, without Ray.

For fast tests and quick sweeps. Messages go through the same handlers and the same strategy
code as under Ray, through the same ``ClientApp`` (so the app's client mods wrap them in the
same order); clients run one after another, each with its own persistent ``context.state``. A
handler that raises becomes an error reply with Flower's own error code, as under Ray.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flwr.app import Context, Error, Message, RecordDict

from fedlab.appspec import AppSpec
from fedlab.checkpoint import Checkpoint
from fedlab.errors import FedlabError
from fedlab.flower_compat import CLIENT_APP_RAISED_EXCEPTION, ensure_task_identity
from fedlab.key_groups import RunConfig
from fedlab.server import StopRequest


class InProcessGrid:
    """Duck-typed ``flwr.serverapp.Grid`` that calls the app's ``ClientApp`` directly.

    Parameters
    ----------
    spec : AppSpec
    config : RunConfig
    num_nodes : int
        Virtual SuperNodes; node ``i`` holds partition ``i`` and has id ``1000 + i``.
    """

    def __init__(self, spec: AppSpec, config: RunConfig, num_nodes: int) -> None:
        self.spec = spec
        self.config = config
        # The ClientApp Ray would run, so its mods wrap the handlers exactly as they do there.
        self.client_app = spec.client_app(config)
        # Read by fedlab.server.run_federation at each round start; run_in_process sets it.
        self.stop_request: StopRequest | None = None
        self.contexts = {
            1000 + i: Context(
                run_id=1, node_id=1000 + i,
                node_config={"partition-id": i, "num-partitions": num_nodes},
                state=RecordDict(), run_config={},
            )
            for i in range(num_nodes)
        }  # fmt: skip

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        replies = []
        for msg in messages:
            kind = msg.metadata.message_type
            if kind not in self.spec.client_handlers:
                raise FedlabError(
                    f"app {self.spec.name!r} has no {kind!r} client handler; it handles "
                    f"{sorted(self.spec.client_handlers)}: send one of those message types"
                )
            try:
                reply = self.client_app(msg, self.contexts[msg.metadata.dst_node_id])
            except Exception as exc:  # noqa: BLE001  (a client failure is data here, as in Flower)
                reply = Message(
                    Error(CLIENT_APP_RAISED_EXCEPTION, f"{type(exc).__name__}: {exc}"),
                    reply_to=msg,
                )
            replies.append(reply)
        return replies

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"InProcessGrid does not implement Grid.{name}")


def run_in_process(
    spec: AppSpec,
    config: RunConfig,
    *,
    stop: StopRequest | None = None,
    resume_from: Checkpoint | None = None,
) -> dict[str, Any]:
    """Run ``spec`` for ``config.num_supernodes`` nodes in this process; return the summary.

    Like ``flwr.simulation.run_simulation``, it gives the process a Flower task identity when it
    has none, because Flower refuses to build messages without one. Setting ``stop`` (from
    another thread or a callback) ends the run before its next round, as Ctrl-C does under Ray.
    ``resume_from`` continues ``config.out_dir`` from that checkpoint, with fresh clients (as
    after a restart) whose state comes from the run folder.
    """
    ensure_task_identity()
    grid = InProcessGrid(spec, config, config.num_supernodes)
    grid.stop_request = stop
    return spec.run_server(grid, config, resume_from=resume_from)  # type: ignore[arg-type]

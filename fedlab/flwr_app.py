"""Module-level ServerApp and ClientApp for ``flwr run .`` (see ``[tool.flwr.app.components]``).

The run config's ``app`` key picks the AppSpec (a name in :mod:`fedlab.apps` or
``module:attr``); every other key is that app's run-config key. The same handlers run as under
``flower-simulation``, so both entry points behave alike.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Mapping
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fedlab.appspec import AppSpec
from fedlab.config import RunConfig

log = logging.getLogger("fedlab")


def resolve(run_config: Mapping[str, Any]) -> tuple[AppSpec, RunConfig]:
    """Split Flower's run config into the AppSpec named by ``app`` and its validated config."""
    from fedlab.cli import collect_overrides, resolve_app

    values = dict(run_config)
    name = str(values.pop("app", "fedavg"))
    extra = collect_overrides(shlex.split(str(values.pop("app-config", ""))))
    spec = resolve_app(name if ":" in name else f"fedlab.apps:{name}")
    # The federation, not the app, decides how many SuperNodes there are.
    return spec, spec.resolve_config({"num-supernodes": 0}, values, extra)


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    spec, config = resolve(context.run_config)
    spec.run_server(grid, config)


client_app = ClientApp()


def _dispatch(kind: str, msg: Message, context: Context) -> Message:
    spec, config = resolve(context.run_config)
    return spec.client_handlers[kind](msg, context, config)


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    return _dispatch("train", msg, context)


@client_app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return _dispatch("evaluate", msg, context)


@client_app.query()
def query(msg: Message, context: Context) -> Message:
    return _dispatch("query", msg, context)

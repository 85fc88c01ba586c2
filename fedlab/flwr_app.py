"""Module-level ServerApp and ClientApp for ``flwr run .`` (see ``[tool.flwr.app.components]``).

The run config's ``app`` key picks the AppSpec (a name in :mod:`fedlab.apps` or
``module:attr``); every other key is that app's run-config key. The same handlers run as under
``flower-simulation``, so both entry points behave alike.
"""

from __future__ import annotations

import functools
import logging
import shlex
from collections.abc import Mapping
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fedlab.appspec import AppSpec
from fedlab.key_groups import RunConfig

log = logging.getLogger("fedlab")


def resolve(run_config: Mapping[str, Any]) -> tuple[AppSpec, RunConfig]:
    """Split Flower's run config into the AppSpec named by ``app`` and its validated config.

    Resolved once per process and run config: a ClientApp is called for every message, and
    validating a config (accounting included) costs about 0.3 s.
    """
    return _resolve(tuple(sorted((str(k), v) for k, v in run_config.items())))


@functools.lru_cache(maxsize=8)
def _resolve(items: tuple[tuple[str, Any], ...]) -> tuple[AppSpec, RunConfig]:
    from fedlab.cli import collect_overrides, resolve_app

    values = dict(items)
    name = str(values.pop("app", "fedavg"))
    extra = collect_overrides(shlex.split(str(values.pop("app-config", ""))))
    spec = resolve_app(name if ":" in name else f"fedlab.apps:{name}")
    # The federation, not the app, decides how many SuperNodes there are: 0 waits for whoever
    # connects, and each app checks its population-dependent keys against that count.
    return spec, spec.resolve_config({"num-supernodes": 0}, values, extra)


@functools.lru_cache(maxsize=8)
def _client_app(items: tuple[tuple[str, Any], ...]) -> ClientApp:
    spec, config = _resolve(items)
    return spec.client_app(config)  # the app's own ClientApp: its handlers behind its mods


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    spec, config = resolve(context.run_config)
    spec.run_server(grid, config)


client_app = ClientApp()


def _dispatch(msg: Message, context: Context) -> Message:
    items = tuple(sorted((str(k), v) for k, v in context.run_config.items()))
    return _client_app(items)(msg, context)


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    return _dispatch(msg, context)


@client_app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return _dispatch(msg, context)


@client_app.query()
def query(msg: Message, context: Context) -> Message:
    return _dispatch(msg, context)

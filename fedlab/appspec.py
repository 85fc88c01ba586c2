"""AppSpec: a named federated app = typed config + ServerApp main + ClientApp handlers."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fedlab.client import check_failure_injection, partition_of
from fedlab.client_state import client_state_mod
from fedlab.errors import FedlabError
from fedlab.extras import require
from fedlab.flower_compat import Mod
from fedlab.key_groups import RunConfig
from fedlab.population import population_mod
from fedlab.run_folder import RunFolder, default_run_dir

if TYPE_CHECKING:
    from fedlab.checkpoint import Checkpoint

log = logging.getLogger("fedlab")

ServerFn = Callable[[Grid, RunConfig, RunFolder], dict[str, Any]]
Handler = Callable[[Message, Context, RunConfig], Message]
ModsFn = Callable[[RunConfig], list[Mod]]
CheckFn = Callable[[RunConfig, int], None]


@dataclass(frozen=True)
class AppSpec:
    """Everything ``flower-simulation --app module:attr`` and ``flwr run .`` need to run an app.

    Parameters
    ----------
    name : str
        Short name; run folders are ``runs/<name>-<timestamp>``.
    config_cls : type of RunConfig
        The app's typed config; its defaults, overridden by ``defaults``, are the app's defaults.
    server_fn : callable
        ``(grid, config, run_folder) -> summary``: builds the strategy and runs the rounds.
    client_handlers : mapping
        Message type (``query``, ``train``, ``evaluate``) ->
        ``(message, context, config) -> reply``.
    defaults : mapping
        Run-config values that differ from ``config_cls``'s defaults for this app.
    description : str
    client_mods : callable, optional
        ``config -> list of Flower mods`` wrapped around every client handler through
        ``ClientApp(mods=...)``, in Flower's order: the first mod is the outermost. A mod sees
        every message type, so one meant for training passes the others on unchanged.
    check : callable, optional
        ``(config, num_nodes) -> None``: builds the app's own strategy and workload from the
        resolved config for ``num_nodes`` nodes and raises
        :class:`~fedlab.errors.FedlabError` on what would fail; ``flower-simulation`` calls it
        before Ray starts (:func:`fedlab.app_check.check_by_building` makes one).
    extras : tuple of str
        The pip extras the app needs beyond the core install (:mod:`fedlab.extras`), checked
        before Ray starts with a one-line error naming the extra to install.
    """

    name: str
    config_cls: type[RunConfig]
    server_fn: ServerFn
    client_handlers: Mapping[str, Handler]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    client_mods: ModsFn | None = None
    check: CheckFn | None = None
    extras: tuple[str, ...] = ()

    def resolve_config(self, *layers: Mapping[str, Any]) -> RunConfig:
        """Defaults, then each layer in order (TOML files, key=value pairs), validated.

        The app's config class holds exactly the keys it honours; any other is refused with
        the valid ones listed.
        """
        require(self.extras, f"app {self.name!r}")
        merged: dict[str, Any] = dict(self.defaults)
        for layer in layers:
            merged.update(layer)
        return self.config_cls.from_mapping(merged, owner=f"app {self.name!r}")

    def run_server(
        self,
        grid: Grid,
        config: RunConfig,
        *,
        launch: Mapping[str, Any] | None = None,
        resume_from: Checkpoint | None = None,
    ) -> dict[str, Any]:
        """Create the run folder, save the config, run the server function.

        ``launch`` (how the app was named: ``app-reference``, ``app-dir``) goes into
        ``config.json``; ``resume_from`` continues the run folder from that checkpoint.
        """
        if not log.handlers:  # under `flwr run` nobody configured our logger: print round lines
            handler = logging.StreamHandler(sys.stdout)
            handler.setFormatter(logging.Formatter("%(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
        run = RunFolder(config.out_dir or default_run_dir(self.name))
        run.resume_from = resume_from
        run.write_config(self.name, config.to_json(), config.seed, config.warnings(), launch=launch)
        log.info("run folder: %s", run.path)
        for warning in config.warnings():
            log.warning("%s", warning)
        return self.server_fn(grid, config, run)

    def server_app(self, config: RunConfig) -> ServerApp:
        app = ServerApp()

        @app.main()
        def main(grid: Grid, context: Context) -> None:
            self.run_server(grid, config)

        return app

    def client_app(self, config: RunConfig) -> ClientApp:
        """The ClientApp of ``config``: its handlers, wrapped in ``client_mods(config)``."""
        mods = self.client_mods(config) if self.client_mods else []
        if config.out_dir:  # outermost, so that it saves what every other mod changed
            mods = [client_state_mod(config.out_dir, lambda c: partition_of(c)[0]), *mods]
        if getattr(config, "population", 0):
            if not config.out_dir:
                raise FedlabError(
                    "population mode keeps each client's state in the run folder, not in a "
                    "worker: set out-dir (flower-simulation sets it)"
                )
            mods = [population_mod, *mods]  # one call per client id, each in its own context
        app = ClientApp(mods=mods or None)
        register = {"train": app.train, "evaluate": app.evaluate, "query": app.query}
        for kind, handler in self.client_handlers.items():
            register[kind]()(_bind(handler, config))
        return app


def _bind(handler: Handler, config: RunConfig) -> Callable[[Message, Context], Message]:
    def bound(msg: Message, context: Context) -> Message:
        if msg.metadata.message_type in ("train", "evaluate"):
            check_failure_injection(config, context)
        return handler(msg, context, config)

    return bound

"""The one call of Flower's simulation engine, on the Ray backend.

``flwr.simulation.run_simulation`` is deprecated in flwr 1.42 (it warns); keeping its only call
here makes moving to its successor one change.

Ctrl-C. Flower runs the ServerApp in a thread of its own and parks the main thread in a join of
its worker pool, so Python's KeyboardInterrupt either never reaches the main thread (the kernel
hands a process-directed SIGINT to any thread, and only the main thread wakes for it) or, when it
does, Flower stops its workers while its non-daemon ServerApp thread waits on for replies until
the round timeout. Ray's processes, in the terminal's process group, get the same SIGINT. So
while a run goes on, :func:`interrupt_handling` turns the first SIGINT into a
:class:`~fedlab.server.StopRequest` (the run ends after the current round, summary written) and
a second one into an immediate stop; Ray's processes are started with SIGINT blocked, and every
process the run started is ended when it returns.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fedlab.appspec import AppSpec
from fedlab.atomic import atomic_write_json
from fedlab.key_groups import RunConfig
from fedlab.run_guard import descendants, start_guard, started_at, stop_guard, terminate
from fedlab.server import STOP_REQUEST_ATTR, StopRequest

log = logging.getLogger("fedlab")


def backend_config(
    num_supernodes: int, *, gpu: str = "auto", ray_address: str | None = None
) -> tuple[dict[str, Any], str]:
    """Ray backend config fitted to this machine, and the device clients should use.

    One CPU per client; with ``gpu="auto"`` and a GPU visible to torch, each client also gets an
    equal fraction of the GPUs such that all clients that can run at once (one per CPU) fit.
    """
    import torch

    cpus = os.cpu_count() or 1
    use_gpu = gpu == "auto" and torch.cuda.is_available()
    num_gpus = 0.0
    if use_gpu:
        concurrent = max(1, min(num_supernodes, cpus))
        num_gpus = min(1.0, torch.cuda.device_count() / concurrent)
    init_args: dict[str, Any] = {"address": ray_address} if ray_address else {"num_cpus": cpus}
    if use_gpu and not ray_address:
        init_args["num_gpus"] = torch.cuda.device_count()
    config = {"client_resources": {"num_cpus": 1, "num_gpus": num_gpus}, "init_args": init_args}
    return config, ("cuda" if use_gpu else "cpu")


def simulate(
    spec: AppSpec,
    config: RunConfig,
    *,
    gpu: str = "auto",
    ray_address: str | None = None,
    verbose: bool = False,
    launch: dict[str, Any] | None = None,
    resume_from: Any = None,
) -> str | None:
    """Run ``spec`` with ``config`` on ``config.num_supernodes`` virtual SuperNodes under Ray.

    Returns why the run was interrupted (Ctrl-C), or None. A first SIGINT ends the run after the
    current round (``summary.json`` says so); a second ends it at once (exit status 130). Either
    way, and on a normal end, no process started by the run is left behind. ``launch`` and
    ``resume_from`` go to :meth:`~fedlab.appspec.AppSpec.run_server`.
    """
    from flwr.serverapp import Grid, ServerApp

    backend, device = backend_config(config.num_supernodes, gpu=gpu, ray_address=ray_address)
    if config.device == "auto":
        config = config.replace(device=device)
    log.info("ray backend: %s", backend)
    # Flower sets its logger's level when imported; quieten its per-round INFO lines after that.
    logging.getLogger("flwr").setLevel(logging.DEBUG if verbose else logging.WARNING)
    stop = StopRequest()
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Any) -> None:
        # The grid carries the stop request to fedlab.server.run_federation.
        spec.run_server(_GridWithStop(grid, stop), config, launch=launch,  # type: ignore[arg-type]
                        resume_from=resume_from)  # fmt: skip

    already_running = descendants(os.getpid())
    # Ray's workers are the raylet's children: when it exits first they would be orphaned to
    # init and out of reach of the clean-up below; as a subreaper this process inherits them.
    _become_child_subreaper()
    # If this process is killed outright (SIGKILL), no clean-up below runs: the guard ends
    # what the run started.
    guard = start_guard()
    try:
        with interrupt_handling(stop, stop_now=lambda: _stop_now(already_running, config)):
            _run_simulation_once(server_app, spec.client_app(config), config, backend, verbose)
    finally:
        stop_guard(guard)
        shutdown_ray(already_running)
    return stop.reason or None


def _run_simulation_once(
    server_app: Any, client_app: Any, config: RunConfig, backend: dict[str, Any], verbose: bool
) -> None:
    from flwr.simulation import run_simulation

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=config.num_supernodes,
            backend_name="ray",
            backend_config=backend,
            verbose_logging=verbose,
        )


class _GridWithStop:
    """Flower's grid, unchanged, plus the run's :class:`StopRequest` as ``stop_request``."""

    def __init__(self, grid: Any, stop: StopRequest) -> None:
        self._grid = grid
        setattr(self, STOP_REQUEST_ATTR, stop)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)


@contextlib.contextmanager
def interrupt_handling(stop: StopRequest, *, stop_now: Callable[[], None]) -> Iterator[None]:
    """While inside, SIGINT no longer raises KeyboardInterrupt: the first one calls
    ``stop.request``, the second ``stop_now``.

    A watcher thread reads the signal from Python's wakeup fd, which the C-level handler writes
    whichever thread the kernel chose, so a main thread parked in a join cannot miss it. SIGINT
    is blocked in the calling thread meanwhile: threads and processes started inside (Ray's
    raylet, workers and agents) inherit the mask and so survive a Ctrl-C sent to the terminal's
    whole process group until the run shuts them down. Outside the main thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    finished = threading.Event()

    def watch() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        count = 0
        while not finished.is_set():
            data = reader.recv(64)
            if finished.is_set() or not data:
                return
            count += sum(1 for byte in data if byte == signal.SIGINT)
            if count == 1:
                log.warning("interrupted: stopping after the current round (Ctrl-C again to "
                            "stop at once; finished rounds are kept)")  # fmt: skip
                stop.request("interrupted by SIGINT (Ctrl-C)")
            elif count >= 2:
                stop_now()
                return

    # The Python-level handler runs late (whenever the main thread next runs bytecode); the
    # watcher already acted on the signal, so it only has to not raise KeyboardInterrupt.
    previous_handler = signal.signal(signal.SIGINT, lambda signum, frame: None)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    watcher = threading.Thread(target=watch, name="fedlab-sigint", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()
        with contextlib.suppress(OSError):
            writer.send(b"\0")  # wakes the watcher
        watcher.join(timeout=5)
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGINT, previous_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        reader.close()
        writer.close()


def shutdown_ray(already_running: set[int] | None = None) -> list[int]:
    """Shut Ray down if this process started it, then end any process the run left behind.

    ``ray.shutdown`` normally stops the raylet, GCS, workers and agents; whatever of this
    process's descendants is still alive afterwards (and was not in ``already_running``) gets
    SIGTERM, then SIGKILL after a grace period. Returns the process ids that had to be ended.
    """
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    left = descendants(os.getpid()) - (already_running or set())
    if left:
        log.warning("ending %d process(es) the run left behind: %s", len(left), sorted(left))
        terminate(started_at(left))
    return sorted(left)


def _stop_now(already_running: set[int], config: RunConfig) -> None:
    """Second Ctrl-C: end the run's processes and this one at once; finished rounds stay."""
    log.warning("interrupted again: stopping now; finished rounds are kept in the run folder")
    terminate(started_at(descendants(os.getpid()) - already_running), grace=2.0)
    if config.out_dir:
        _write_interrupted_summary(Path(config.out_dir), config.num_server_rounds)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    # Flower's ServerApp thread is not a daemon and would keep the process alive: exit now.
    os._exit(130)


def _write_interrupted_summary(run_dir: Path, planned: int) -> None:
    """The summary run_federation had no time to write, from the rounds already recorded."""
    try:
        history = json.loads((run_dir / "history.json").read_text())
    except (OSError, ValueError):
        history = []  # no round finished yet
    atomic_write_json(
        run_dir / "summary.json",
        {
            "rounds-finished": len(history),
            "rounds-planned": planned,
            "stopped-early": "interrupted twice by SIGINT (Ctrl-C): stopped at once",
            "seconds": None,
            "final": history[-1] if history else None,
        },
    )


def _become_child_subreaper() -> None:
    """Linux: orphaned descendants are re-parented to this process instead of to init."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_child_subreaper = 36  # from <linux/prctl.h>
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) != 0:
        log.debug("prctl(PR_SET_CHILD_SUBREAPER) failed: errno %d", ctypes.get_errno())

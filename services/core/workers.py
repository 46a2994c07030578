"""Several server processes on one port, each with a listening socket of its own.

uvicorn's own ``--workers`` hands one listening socket to every worker, and the kernel then
gives each new connection to whichever worker happens to be waiting: with keep-alive clients
(Wallet, a shop's HTTP client, a load balancer) one worker may end up with most connections
while the other idles (28 of 32 seen here; the PassKit 304 path then ran at 1,400 instead of
3,900 requests/s). With ``SO_REUSEPORT`` each worker binds its own socket to the port and the
kernel spreads connections over the sockets evenly. The supervisor restarts a worker that dies
and passes SIGTERM/SIGINT on, so a container stops gracefully.

The workers share one ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode), so
``/metrics`` of whichever worker answers shows the whole group: the operator's directory if
set, else a private one; emptied at start, a dead worker's live gauges dropped
(``mark_process_dead``), a private one removed at the end.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from multiprocessing.context import SpawnProcess
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client import multiprocess

from services.core.metrics import MULTIPROCESS_DIR_ENV

log = logging.getLogger(__name__)

BACKLOG = 2048
"""uvicorn's default listen backlog."""


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` that other processes may bind too (``SO_REUSEPORT``)."""
    family, kind, protocol, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, protocol)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def claim_port(port: int) -> socket.socket:
    """Hold ``port`` for this supervisor, for as long as the returned socket stays open.

    ``SO_REUSEPORT`` would let a second ``serve --workers`` started by mistake share the port
    with the first (each then gets half the connections, possibly of another version or
    database). The claim is an abstract Unix socket named for the port: the kernel refuses a
    second one and drops it when the process ends, however it ends.
    """
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        claim.bind(f"\0passpost-serve-port-{port}")
    except OSError:
        claim.close()
        raise OSError(errno.EADDRINUSE, "another `passpost serve --workers` holds it") from None
    return claim


def _serve(app: str, options: dict[str, Any], supervisor: int) -> None:
    """One worker: its own socket, the app built by the factory ``app`` ("module:function")."""
    import uvicorn

    threading.Thread(target=_stop_when_orphaned, args=(supervisor,), daemon=True).start()
    sock = listening_socket(options["host"], options["port"])
    config = uvicorn.Config(app, factory=True, **options)
    uvicorn.Server(config).run(sockets=[sock])


def _stop_when_orphaned(supervisor: int) -> None:
    """A supervisor killed outright (SIGKILL, OOM) cannot stop its workers: they stop
    themselves, gracefully, rather than keep serving the port unsupervised.

    The supervisor's pid comes from the supervisor: a worker it started just before it was
    killed would find itself orphaned already, and its own first ``getppid()`` (init's) would
    never change.
    """
    while os.getppid() == supervisor:
        time.sleep(1)
    os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def shared_metrics_dir() -> Iterator[Path]:
    """The workers' multiprocess metrics directory, set in the environment they inherit."""
    given = os.environ.get(MULTIPROCESS_DIR_ENV)
    directory = Path(given) if given else Path(tempfile.mkdtemp(prefix="passpost-metrics-"))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # a previous group's counts are not this group's
        stale.unlink()
    os.environ[MULTIPROCESS_DIR_ENV] = str(directory)
    try:
        yield directory
    finally:
        if not given:
            os.environ.pop(MULTIPROCESS_DIR_ENV, None)
            shutil.rmtree(directory, ignore_errors=True)


class WorkerPool:
    """Runs ``count`` worker processes until SIGTERM or SIGINT, restarting any that dies."""

    def __init__(self, app: str, count: int, options: dict[str, Any]) -> None:
        self._app = app
        self._count = count
        self._options = options
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[SpawnProcess] = []
        self._stopping = threading.Event()
        self._metrics_dir = Path()

    def run(self) -> None:
        # Checked here first: a port in use fails at once, in the parent, with a clear error.
        with claim_port(self._options["port"]):
            listening_socket(self._options["host"], self._options["port"]).close()
            with shared_metrics_dir() as directory:
                self._metrics_dir = directory
                self._supervise()

    def _supervise(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        self._processes = [self._start() for _ in range(self._count)]
        while not self._stopping.wait(0.5):
            for index, process in enumerate(self._processes):
                if not process.is_alive() and not self._stopping.is_set():
                    if process.pid is not None:
                        multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
                            process.pid, str(self._metrics_dir)
                        )
                    log.error(
                        "server worker died; starting another",
                        extra={"pid": process.pid, "exitcode": process.exitcode},
                    )
                    self._processes[index] = self._start()
        for process in self._processes:
            if process.is_alive() and process.pid is not None:
                process.terminate()  # SIGTERM: uvicorn finishes requests and runs shutdown
        for process in self._processes:
            process.join()

    def _start(self) -> SpawnProcess:
        process = self._context.Process(target=_serve, args=(self._app, self._options, os.getpid()))
        process.start()
        return process

    def _stop(self, _signal: int, _frame: FrameType | None) -> None:
        self._stopping.set()

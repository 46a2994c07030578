"""The load generator: a small HTTP/1.1 keep-alive client in a process of its own.

``python -m bench.loadgen`` reads one JSON job on stdin and writes one JSON result on stdout
(``--serve``: one job per line, one result per line, until stdin closes).
It speaks raw HTTP/1.1 over asyncio protocols (uvloop and httptools when installed: uvicorn's
``standard`` extra brings both) because a general client such as httpx spends more CPU per
request than the server under test, and would measure itself.

Two modes, both bounded in time and count:
- closed loop (no ``rate``): ``connections`` connections each send the next request as soon as
  the previous answer is in; gives the peak rate;
- open loop (``rate``): requests are due at fixed times whatever the answers; latency counts
  from the due time, so a slow server cannot hide queueing (no coordinated omission).

A job's requests come from ``{"cycle": [raw request, ...]}`` (sent in turn) or from a factory
``{"factory": "module:function", "params": {...}}`` called once with ``params`` and returning a
function of the request number that gives the raw request bytes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import httptools

RequestMaker = Callable[[int], bytes]


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``request`` sends and waits for the whole answer."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[int] | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("connection lost"))
        if not self.lost.done():
            self.lost.set_result(None)

    def on_message_complete(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(self._parser.get_status_code())

    async def request(self, raw: bytes) -> int:
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(raw)
        return await self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _maker(spec: dict[str, Any]) -> RequestMaker:
    if "cycle" in spec:
        items = [item.encode("latin-1") for item in spec["cycle"]]
        return lambda i: items[i % len(items)]
    module_name, _, name = spec["factory"].partition(":")
    factory = getattr(importlib.import_module(module_name), name)
    made: RequestMaker = factory(**spec.get("params", {}))
    return made


class _Recorder:
    def __init__(self, keep_samples: bool) -> None:
        self.latencies: list[float] = []
        self.statuses: collections.Counter[int] = collections.Counter()
        self.errors = 0
        self.samples: list[tuple[int, float, float, int]] | None = [] if keep_samples else None

    def record(self, number: int, sent_wall: float, latency: float, status: int) -> None:
        self.latencies.append(latency)
        self.statuses[status] += 1
        if self.samples is not None:
            self.samples.append((number, sent_wall, latency, status))


async def _connect(host: str, port: int, count: int) -> list[_Connection]:
    loop = asyncio.get_running_loop()
    connections = []
    for _ in range(count):
        _, connection = await loop.create_connection(_Connection, host, port)
        connections.append(connection)
    return connections


async def _closed_loop(
    connections: list[_Connection],
    make: RequestMaker,
    recorder: _Recorder,
    duration: float,
    max_requests: int,
) -> float:
    counter = iter(range(max_requests))
    started = time.perf_counter()
    deadline = started + duration

    async def drive(connection: _Connection) -> None:
        for number in counter:
            now = time.perf_counter()
            if now >= deadline:
                return
            wall = time.time()
            try:
                status = await connection.request(make(number))
            except (ConnectionError, httptools.HttpParserError):
                recorder.errors += 1
                return
            recorder.record(number, wall, time.perf_counter() - now, status)

    await asyncio.gather(*(drive(c) for c in connections))
    return time.perf_counter() - started


async def _open_loop(
    connections: list[_Connection],
    make: RequestMaker,
    recorder: _Recorder,
    duration: float,
    rate: float,
) -> float:
    idle: asyncio.Queue[_Connection] = asyncio.Queue()
    for connection in connections:
        idle.put_nowait(connection)
    total = max(1, int(duration * rate))
    started = time.perf_counter()
    wall_started = time.time()
    tasks = set()

    async def one(number: int, due: float) -> None:
        connection = await idle.get()
        try:
            status = await connection.request(make(number))
        except (ConnectionError, httptools.HttpParserError):
            recorder.errors += 1
            return
        recorder.record(number, wall_started + (due - started), time.perf_counter() - due, status)
        idle.put_nowait(connection)

    for number in range(total):
        due = started + number / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(number, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=max(10.0, duration))
    return time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of unsorted ``values`` (0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


async def run_job(job: dict[str, Any]) -> dict[str, Any]:
    make = _maker(job["requests"])
    recorder = _Recorder(keep_samples=bool(job.get("samples")))
    connections = await _connect(job["host"], job["port"], job["connections"])
    warmup = float(job.get("warmup", 0))
    try:
        if warmup > 0:  # same requests, numbered past the measured ones, results dropped
            await _closed_loop(
                connections, lambda i: make(i + 10_000_000), _Recorder(False), warmup, 1 << 30
            )
        if job.get("rate"):
            elapsed = await _open_loop(
                connections, make, recorder, job["duration"], float(job["rate"])
            )
        else:
            elapsed = await _closed_loop(
                connections, make, recorder, job["duration"], int(job.get("max_requests", 1 << 30))
            )
    finally:
        for connection in connections:
            connection.close()
    count = len(recorder.latencies)
    result: dict[str, Any] = {
        "count": count,
        "elapsed": elapsed,
        "rps": count / elapsed if elapsed > 0 else 0.0,
        "statuses": {str(k): v for k, v in sorted(recorder.statuses.items())},
        "errors": recorder.errors,
        "p50_ms": percentile(recorder.latencies, 0.50) * 1000,
        "p90_ms": percentile(recorder.latencies, 0.90) * 1000,
        "p99_ms": percentile(recorder.latencies, 0.99) * 1000,
        "max_ms": max(recorder.latencies, default=0.0) * 1000,
    }
    if recorder.samples is not None:
        result["samples"] = recorder.samples
    return result


def _install_loop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it on Linux
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main() -> None:
    """One job from stdin; with ``--serve``, one job per line until stdin closes."""
    _install_loop()
    if "--serve" not in sys.argv[1:]:
        sys.stdout.write(json.dumps(asyncio.run(run_job(json.loads(sys.stdin.read())))))
        return
    with asyncio.Runner() as runner:
        for line in sys.stdin:
            if line.strip():
                sys.stdout.write(json.dumps(runner.run(run_job(json.loads(line)))) + "\n")
                sys.stdout.flush()


if __name__ == "__main__":
    main()


# ---------------------------------------------------------------- wrk, when it can be had

WRK_SCRIPT = """
local requests = {%(requests)s}
local i = 0
statuses = {}
local threads = {}

function setup(thread) table.insert(threads, thread) end

function request()
  i = i + 1
  return requests[i %% #requests + 1]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local codes = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      codes[#codes + 1] = string.format('"%%d": %%d', status, count)
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK-RESULT {"count": %%d, "elapsed": %%f, "errors": %%d, "p50_ms": %%f, "p90_ms": %%f, '
      .. '"p99_ms": %%f, "max_ms": %%f, "statuses": {%%s}}\\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3, table.concat(codes, ", ")))
end
"""


def wrk_path() -> str | None:
    """The ``wrk`` binary, installed from the distribution's packages when it is missing and we
    may (root with apt-get); None when it cannot be had: the Python generator is used then."""
    found = shutil.which("wrk")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        for refresh_first in (False, True):  # the package lists may be missing or stale
            if refresh_first:
                _quietly(["apt-get", "update", "-q"])
            _quietly(["apt-get", "install", "-y", "-q", "wrk"])
            if found := shutil.which("wrk"):
                break
    return found


def _quietly(command: list[str]) -> None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(command, capture_output=True, timeout=300, check=False)


def _lua_string(raw: str) -> str:
    """A Lua string literal of ``raw`` (decimal escapes for anything not plain ASCII)."""
    return (
        '"'
        + "".join(c if " " <= c <= "~" and c not in '"\\' else f"\\{ord(c):03d}" for c in raw)
        + '"'
    )


async def run_wrk(wrk: str, job: dict[str, Any]) -> dict[str, Any]:
    """A closed-loop job (``cycle`` requests, no ``rate``) run by wrk: one thread, C, so the
    load costs the server's cores far less than the Python generator does. Whole seconds."""
    requests = ", ".join(_lua_string(raw) for raw in job["requests"]["cycle"])
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT % {"requests": requests})
        script.flush()
        url = f"http://{job['host']}:{job['port']}/"
        for seconds, measured in ((1, False), (max(1, round(job["duration"])), True)):
            if not measured and not job.get("warmup"):
                continue
            process = await asyncio.create_subprocess_exec(
                wrk,
                "-t1",
                f"-c{job['connections']}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-s",
                script.name,
                url,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await process.communicate()
    lines = [line for line in out.decode().splitlines() if line.startswith("WRK-RESULT ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed: {err.decode()[-1000:]} {out.decode()[-1000:]}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("WRK-RESULT "))
    result["rps"] = result["count"] / result["elapsed"] if result["elapsed"] > 0 else 0.0
    return result

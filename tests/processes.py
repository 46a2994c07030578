"""Real passpost processes for tests that kill them: an installation (data directory, database,
demo merchant), ``passpost serve`` processes, the ``passpost apns-mock`` stand-in, a client that
spreads requests over replicas, and phones that act on the pushes the stand-in reports.

Everything here talks to the processes as the world does: HTTP to the services, HTTP/2 from
push to the stand-in, the database only to check the outcome. Waiting is for a state
(``converge``), never for a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import sys
import time
import uuid
import zipfile
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
READY_SECONDS = 120.0
"""How long a process may take to answer /readyz (Python starting on a busy 2-core machine)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


# ---------------------------------------------------------------- databases


async def fresh_postgres_database(url: str, name: str) -> str:
    """A new, empty database ``name`` on the server of ``url``; its URL."""
    admin = create_async_engine(
        make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


# ---------------------------------------------------------------- processes


@dataclass
class Process:
    """One OS process of ours (``python -m services ...``), its output in a log file."""

    name: str
    args: Sequence[str]
    env: dict[str, str]
    log_path: Path
    port: int
    process: asyncio.subprocess.Process | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        log = self.log_path.open("ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services",
                *self.args,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=log,
            )
        finally:
            log.close()
        self.starts += 1
        await self.ready()

    async def ready(self) -> None:
        """Wait until the process answers /readyz (or dies)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
            deadline = time.monotonic() + READY_SECONDS
            while time.monotonic() < deadline:
                if not self.running:
                    raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} never became ready:\n{self.log_tail()}")

    def log_tail(self, size: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-size:]

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no clean-up, whatever it was doing."""
        await self._signal(signal.SIGKILL)

    async def terminate(self, seconds: float = 60.0) -> float:
        """SIGTERM, and wait for the exit; returns how long the process took to exit."""
        started = time.monotonic()
        await self._signal(signal.SIGTERM, seconds)
        return time.monotonic() - started

    async def _signal(self, sig: int, seconds: float = 30.0) -> None:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(sig)
        async with asyncio.timeout(seconds):
            await self.process.wait()

    async def stop(self) -> None:
        if self.running:
            try:
                await self.terminate(seconds=30)
            except TimeoutError:
                await self.kill()


class Standin(Process):
    """``passpost apns-mock --record FILE``: the pushes it answers, read back as they come."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.record_path = data_dir / "pushes.jsonl"
        port = free_port()
        super().__init__(
            "apns-mock",
            ["apns-mock", "--port", str(port), "--record", str(self.record_path)],
            env,
            data_dir / "apns-mock.log",
            port,
        )
        self._read = 0

    @property
    def apns_url(self) -> str:
        return f"https://{HOST}:{self.port}"

    async def ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"the APNs stand-in exited:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(HOST, self.port)
                writer.close()
                return
            await asyncio.sleep(0.1)
        raise RuntimeError("the APNs stand-in never listened")

    def new_pushes(self) -> list[dict[str, Any]]:
        """The pushes recorded since the last call (whole lines only)."""
        if not self.record_path.exists():
            return []
        with self.record_path.open("rb") as record:
            record.seek(self._read)
            chunk = record.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._read += len(complete)
        return [json.loads(line) for line in complete.splitlines()]

    def all_pushes(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.record_path.read_bytes().splitlines()]


# ---------------------------------------------------------------- an installation


@dataclass
class Installation:
    """A data directory and a database with the demo merchant, and the processes serving it."""

    data_dir: Path
    database_url: str
    queue_backend: str = "db"
    nats_url: str = ""
    nats_stream: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    api_key: str = ""
    standin: Standin | None = None
    services: dict[str, list[Process]] = field(default_factory=dict)
    kills: list[tuple[str, float]] = field(default_factory=list)
    """(process name, time.time() of the SIGKILL) of every kill."""

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PASSPOST_")}
        env.update(
            {
                "PASSPOST_ENVIRONMENT": "development",
                "PASSPOST_DATA_DIR": str(self.data_dir),
                "PASSPOST_DATABASE_URL": self.database_url,
                "PASSPOST_LOG_JSON": "true",
                "PASSPOST_LOG_LEVEL": "WARNING",
                "PASSPOST_QUEUE_BACKEND": self.queue_backend,
                "PASSPOST_NATS_URL": self.nats_url,
                "PASSPOST_NATS_STREAM": self.nats_stream or "passpost",
                "PASSPOST_GOOGLE_API_URL": f"https://{HOST}:9/walletobjects/v1",
                **self.extra_env,
            }
        )
        return env

    async def init(self, keys: Path) -> None:
        """``passpost init`` on a fresh data directory (the development keys copied in)."""
        shutil.rmtree(self.data_dir, ignore_errors=True)
        shutil.copytree(keys, self.data_dir / "keys")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services",
            "init",
            cwd=ROOT,
            env=self.env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"passpost init failed: {err.decode()[-3000:]}")
        self.api_key = json.loads(out)["api_key"]

    async def start_standin(self) -> Standin:
        self.standin = Standin(self.data_dir, self.env())
        await self.standin.start()
        return self.standin

    def _serve_env(self, public_url: str) -> dict[str, str]:
        assert self.standin is not None
        return {
            **self.env(),
            "PASSPOST_APNS_URL": self.standin.apns_url,
            "PASSPOST_APNS_CA_FILE": str(self.data_dir / "keys" / "dev-root.pem"),
            "PASSPOST_PUBLIC_BASE_URL": public_url,
        }

    async def serve(self, shape: dict[str, int]) -> None:
        """Start ``passpost serve SERVICE`` ``count`` times per service, each on its own port.
        Links handed out point at the first passes (or all) process."""
        ports = {(s, i): free_port() for s, count in shape.items() for i in range(count)}
        linked = next(s for s in ("passes", "all") if s in shape)
        public_url = f"http://{HOST}:{ports[linked, 0]}"
        env = self._serve_env(public_url)
        for (service, index), port in ports.items():
            name = f"{service}-{index + 1}"
            self.services.setdefault(service, []).append(
                Process(
                    name,
                    ["serve", service, "--port", str(port)],
                    env,
                    self.data_dir / f"{name}.log",
                    port,
                )
            )
        await asyncio.gather(*(p.start() for p in self.processes()))

    def processes(self) -> list[Process]:
        return [p for replicas in self.services.values() for p in replicas]

    def urls(self, service: str) -> list[str]:
        """Where ``service`` is served (by its own processes, or by ``serve all``)."""
        return [p.url for p in self.services.get(service) or self.services["all"]]

    async def kill_and_restart(self, process: Process) -> None:
        await process.kill()
        self.kills.append((process.name, time.time()))
        await process.start()

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.processes()), return_exceptions=True)
        if self.standin is not None:
            await self.standin.stop()

    def engine(self) -> AsyncEngine:
        """For checking outcomes (the embedded SQLite default when no URL is set)."""
        return create_async_engine(
            self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'passpost.db'}"
        )


@contextlib.asynccontextmanager
async def installation(
    data_dir: Path, keys: Path, database_url: str, **options: Any
) -> AsyncIterator[Installation]:
    """An installed, not yet served installation with its stand-in running; stopped after."""
    found = Installation(data_dir, database_url, **options)
    await found.init(keys)
    await found.start_standin()
    try:
        yield found
    finally:
        await found.stop()


# ---------------------------------------------------------------- clients


class Replicas:
    """A client of one service's replicas: each request goes to the next one, and to another
    when a replica does not answer (killed, restarting) or answers 5xx, until ``seconds``."""

    def __init__(self, urls: Sequence[str], *, seconds: float = 60.0) -> None:
        self._clients = [httpx.AsyncClient(base_url=u, timeout=15) for u in urls]
        self._next = 0
        self._seconds = seconds
        self.retried = 0

    async def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        deadline = time.monotonic() + self._seconds
        while True:
            client = self._clients[self._next % len(self._clients)]
            self._next += 1
            try:
                response = await client.request(method, path, **options)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code < 500:
                return response
            if time.monotonic() > deadline:
                detail = "no answer" if response is None else f"{response.status_code}"
                raise RuntimeError(f"{method} {path}: {detail} from every replica")
            self.retried += 1
            await asyncio.sleep(0.05)

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._clients))


@dataclass
class Fetched:
    """One pass a phone downloaded: when the server said it changed, and its bytes."""

    last_modified: str
    content: bytes


@dataclass
class Phone:
    """One device holding one card: registered through the PassKit web service, and after each
    push it asks for its updated serials since its tag and downloads the pass, as Wallet does."""

    device: str
    push_token: str
    pass_type: str
    serial: str
    auth_token: str
    last_modified: str
    tag: str | None = None
    fetched: list[Fetched] = field(default_factory=list)
    pushes: int = 0
    """Pushes seen at the stand-in for this phone's token."""
    handled: int = 0
    """Pushes acted on: every push up to this one was followed by a look."""
    _woken: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def token_suffix(self) -> str:
        return self.push_token[-8:]

    def wake(self) -> None:
        self.pushes += 1
        self._woken.set()

    @property
    def busy(self) -> bool:
        return self.handled < self.pushes

    async def register(self, passes: Replicas) -> None:
        response = await passes.request(
            "POST",
            f"/passkit/v1/devices/{self.device}/registrations/{self.pass_type}/{self.serial}",
            json={"pushToken": self.push_token},
            headers={"Authorization": f"ApplePass {self.auth_token}"},
        )
        if response.status_code not in (200, 201):
            raise RuntimeError(f"registration refused: {response.status_code} {response.text}")

    async def run(self, passes: Replicas) -> None:
        """Act on every push, one look at a time (pushes during a look make one more look)."""
        while True:
            await self._woken.wait()
            self._woken.clear()
            seen = self.pushes
            await self.update(passes)
            self.handled = seen

    async def update(self, passes: Replicas) -> None:
        query = {"passesUpdatedSince": self.tag} if self.tag else {}
        listed = await passes.request(
            "GET",
            f"/passkit/v1/devices/{self.device}/registrations/{self.pass_type}",
            params=query,
        )
        if listed.status_code == 200:
            answer = listed.json()
            self.tag = answer["lastUpdated"]
            for serial in answer["serialNumbers"]:
                await self._download(passes, serial)
        elif listed.status_code != 204:
            raise RuntimeError(f"serials: {listed.status_code} {listed.text}")

    async def _download(self, passes: Replicas, serial: str) -> None:
        response = await passes.request(
            "GET",
            f"/passkit/v1/passes/{self.pass_type}/{serial}",
            headers={
                "Authorization": f"ApplePass {self.auth_token}",
                "If-Modified-Since": self.last_modified,
            },
        )
        if response.status_code == 304:
            return
        if response.status_code != 200:
            raise RuntimeError(f"pass: {response.status_code} {response.text}")
        self.last_modified = response.headers["last-modified"]
        self.fetched.append(Fetched(self.last_modified, response.content))


def pass_document(content: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(content)) as bundle:
        document: dict[str, Any] = json.loads(bundle.read("pass.json"))
        return document


def http_date(moment: Any) -> str:
    return format_datetime(moment, usegmt=True)


class Phones:
    """Every phone, woken by the pushes the stand-in records (by token suffix)."""

    def __init__(self, standin: Standin, passes: Replicas) -> None:
        self._standin = standin
        self._passes = passes
        self.by_suffix: dict[str, Phone] = {}
        self.pushes: list[dict[str, Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.errors: list[BaseException] = []

    def add(self, phone: Phone) -> None:
        assert phone.token_suffix not in self.by_suffix, "token suffixes must differ"
        self.by_suffix[phone.token_suffix] = phone

    def __iter__(self) -> Iterator[Phone]:
        return iter(self.by_suffix.values())

    async def __aenter__(self) -> Phones:
        self._tasks.append(asyncio.create_task(self._listen()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def start(self) -> None:
        """Phones act on pushes from now on (registered first)."""
        for phone in self:
            self._tasks.append(asyncio.create_task(self._phone(phone)))

    async def _phone(self, phone: Phone) -> None:
        try:
            await phone.run(self._passes)
        except Exception as exc:  # reported by ``check``
            self.errors.append(exc)

    async def _listen(self) -> None:
        while True:
            for push in self._standin.new_pushes():
                self.pushes.append(push)
                phone = self.by_suffix.get(push["token_suffix"])
                if phone is not None and push["status"] == 200:
                    phone.wake()
            await asyncio.sleep(0.02)

    @property
    def idle(self) -> bool:
        return not any(phone.busy for phone in self)


async def converge(
    check: Callable[[], Awaitable[bool]], *, seconds: float, what: str, poll: float = 0.25
) -> float:
    """Wait until ``check`` holds; returns how long it took. Fails after ``seconds``."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"{what}: not reached in {seconds:.0f} s")
        await asyncio.sleep(poll)
    return time.monotonic() - started


def by_key(rows: Iterable[tuple[Any, Any]]) -> dict[Any, list[Any]]:
    grouped: dict[Any, list[Any]] = defaultdict(list)
    for key, value in rows:
        grouped[key].append(value)
    return grouped


def new_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"

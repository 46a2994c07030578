"""What the figures share: settings of a run, results, a real server, the stand-in, seeding.

Every figure runs the real code on its real paths: a ``passpost serve all`` process started
here on a free loopback port with its own data directory under ``bench/out/`` (and its own
PostgreSQL database), the APNs stand-in in this (otherwise idle) process, and load from
``bench.loadgen`` in a process of its own.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import time
import zipfile
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "results.json"
KEYS_CACHE = OUT / "dev-keys"
REPORT = ROOT / "BENCHMARKS.md"
HOST = "127.0.0.1"
PG_ADMIN_URL = os.environ.get(
    "PASSPOST_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
"""Where the benchmarks create (and drop) their own databases."""

Database = Literal["sqlite", "postgres"]
_LIVE: set[int] = set()
"""Servers started and not yet stopped: killed at exit, whatever happened."""


@atexit.register
def _kill_leftovers() -> None:
    for pid in list(_LIVE):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class RunConfig:
    """Sizes of one run: the full run fits ``make bench`` in 10 minutes on 2 cores."""

    quick: bool = False
    repeats: int = 3
    """Measurements per figure; the medians are reported."""
    duration: float = 2.0
    """Seconds per load measurement."""

    @classmethod
    def for_mode(cls, quick: bool) -> RunConfig:
        return cls(quick=True, repeats=1, duration=0.5) if quick else cls()


@dataclass
class Result:
    name: str
    value: float | None
    unit: str
    reference: str
    reference_value: float | None
    ratio: float | None
    target: str
    met: bool | None
    method: str
    figure: str = field(default="", compare=False)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("figure")
        for key in ("value", "reference_value", "ratio"):
            if isinstance(data[key], float):
                data[key] = round(data[key], 4 if key == "ratio" else 2)
        return data


def median(values: Iterable[float]) -> float:
    items = list(values)
    return statistics.median(items) if items else 0.0


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return value / reference


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- databases


async def postgres_database(name: str) -> str | None:
    """A fresh database ``name`` (dropped first); its SQLAlchemy URL, or None without a server."""
    import asyncpg

    try:
        admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        log(f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}): its figures are skipped")
        return None
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


async def drop_postgres_database(name: str) -> None:
    import asyncpg

    with contextlib.suppress(OSError, asyncpg.PostgresError):
        admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


# ---------------------------------------------------------------- the APNs stand-in


class Standin:
    """The APNs stand-in, in this process, remembering when each push arrived (wall clock)."""

    def __init__(self, keys_dir: Path, limit: int = 50_000) -> None:
        from services.apns_standin import ApnsStandin
        from services.passes.apple.devchain import ensure_dev_chain

        chain = ensure_dev_chain(keys_dir)
        self.ca_file = chain.root_certificate
        self.server = ApnsStandin(
            HOST,
            0,
            certfile=chain.apns_standin_certificate,
            keyfile=chain.apns_standin_key,
            client_ca_file=chain.client_ca_bundle,
            received_limit=limit,
            log_pushes=False,
        )

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def count(self) -> int:
        return self.server.push_count

    def arrivals(self) -> list[tuple[str, float]]:
        """(token, received_at) of the pushes kept, oldest first."""
        return [(p.token, p.received_at) for p in self.server.received]

    def reset(self) -> None:
        self.server.reset()

    def rss_kib(self) -> int:
        """Resident size of this process, which holds the stand-in."""
        return _rss_kib(os.getpid())

    async def wait_for(self, count: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.server.push_count < count:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True


# ---------------------------------------------------------------- the server under test


class Server:
    """``passpost init``, then ``passpost serve all`` in a process of its own, or (``services``)
    one process per service: the first takes the load at ``base_url``; the card links and the
    PassKit web service are at ``passes_url`` (the ``passes`` process when it has its own)."""

    def __init__(self, name: str, database: Database, services: Sequence[str] = ("all",)) -> None:
        self.name = name
        self.database = database
        self.services = tuple(services)
        self.data_dir = OUT / name
        self.ports = {service: free_port() for service in self.services}
        self.port = self.ports[self.services[0]]
        self.base_url = f"http://{HOST}:{self.port}"
        passes = next((s for s in self.services if s in ("passes", "all")), self.services[0])
        self.passes_url = f"http://{HOST}:{self.ports[passes]}"
        self.database_url = ""
        self.api_key = ""
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._log_file: Any = None
        # The process id keeps runs in other checkouts on the same server apart.
        self.pg_name = f"passpost_bench_{name.replace('-', '_')}_{os.getpid()}"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def pid(self) -> int:
        """The process taking the load (``serve all``, or the first of ``services``)."""
        return self._processes[self.services[0]].pid

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PASSPOST_")}
        env.update(
            {
                "PASSPOST_ENVIRONMENT": "development",
                "PASSPOST_DATA_DIR": str(self.data_dir),
                "PASSPOST_DATABASE_URL": self.database_url,
                "PASSPOST_HOST": HOST,
                "PASSPOST_PORT": str(self.port),
                "PASSPOST_PUBLIC_BASE_URL": self.base_url,
                "PASSPOST_LOG_JSON": "true",
                "PASSPOST_LOG_LEVEL": "WARNING",
            }
        )
        env.update(extra or {})
        return env

    async def init(self) -> bool:
        """A fresh data directory and database, migrated, with the demo merchant.

        The development key chain is made once and copied into each data directory (making
        RSA keys is most of what ``init`` costs).
        """
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        if KEYS_CACHE.exists():
            shutil.copytree(KEYS_CACHE, self.keys_dir)
        if self.database == "postgres":
            url = await postgres_database(self.pg_name)
            if url is None:
                return False
            self.database_url = url
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
            raise RuntimeError(f"passpost init failed: {err.decode()[-2000:]}")
        self.api_key = json.loads(out)["api_key"]
        if not KEYS_CACHE.exists():
            shutil.copytree(self.keys_dir, KEYS_CACHE)
        return True

    async def serve(
        self,
        standin: Standin,
        extra_env: dict[str, str] | None = None,
        serve_args: Sequence[str] = (),
    ) -> None:
        env = self.env(
            {
                "PASSPOST_APNS_URL": standin.url,
                "PASSPOST_APNS_CA_FILE": str(standin.ca_file),
                "PASSPOST_PUBLIC_BASE_URL": self.passes_url,
                # Nothing here configures Google Wallet; should anything try, it stays local.
                "PASSPOST_GOOGLE_API_URL": f"https://{HOST}:9/walletobjects/v1",
                **(extra_env or {}),
            }
        )
        self._log_file = (self.data_dir / "server.log").open("ab")
        for service in self.services:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services",
                "serve",
                service,
                *serve_args,
                cwd=ROOT,
                env={**env, "PASSPOST_PORT": str(self.ports[service])},
                stdout=self._log_file,
                stderr=self._log_file,
            )
            self._processes[service] = process
            _LIVE.add(process.pid)
        for service, process in self._processes.items():
            if not await self._ready(process, self.ports[service]):
                await self.stop()
                tail = (self.data_dir / "server.log").read_text()[-3000:]
                raise RuntimeError(f"passpost serve {service} did not become ready:\n{tail}")

    @staticmethod
    async def _ready(process: asyncio.subprocess.Process, port: int) -> bool:
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}") as client:
            deadline = time.monotonic() + 180  # a loaded machine starts Python slowly
            while time.monotonic() < deadline:
                if process.returncode is not None:
                    return False
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/readyz")).status_code == 200:
                        return True
                await asyncio.sleep(0.1)
        return False

    def rss_kib(self, service: str | None = None) -> int:
        """Resident set size of ``service``'s process (default: the one taking the load) and
        its workers, from /proc."""
        pid = self._processes[service].pid if service else self.pid
        return sum(_rss_kib(pid) for pid in _with_descendants(pid))

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the server process (all of them) so far."""
        return sum(self.cpu_seconds_by_service().values())

    def cpu_seconds_by_service(self) -> dict[str, float]:
        """User plus system CPU time of each service's process so far."""
        return {
            service: sum(_cpu_seconds(pid) for pid in _with_descendants(process.pid))
            for service, process in self._processes.items()
        }

    async def backlog(self) -> int:
        """Queue messages and pushes still waiting (read straight from the database)."""
        queries = (
            "SELECT count(*) FROM outbox_messages WHERE processed_at IS NULL AND failed_at IS NULL",
            "SELECT count(*) FROM push_targets WHERE status = 'active' "
            "AND wanted_version > sent_version",
        )
        if self.database == "sqlite":
            import sqlite3

            connection = sqlite3.connect(f"file:{self.data_dir / 'passpost.db'}?mode=ro", uri=True)
            try:
                connection.execute("PRAGMA busy_timeout=10000")
                return sum(connection.execute(q).fetchone()[0] for q in queries)
            finally:
                connection.close()
        import asyncpg

        url = self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        for _ in range(120):
            try:
                connection = await asyncpg.connect(url)
                break
            except asyncpg.TooManyConnectionsError:  # a shared server, full for a moment
                await asyncio.sleep(0.5)
        else:
            raise RuntimeError(f"{self.name}: no connection to PostgreSQL for a minute")
        try:
            return sum([await connection.fetchval(q) for q in queries])
        finally:
            await connection.close()

    async def drained(self, seconds: float = 120) -> float:
        """Wait until the queue and the pushes are idle; returns the seconds it took."""
        started = time.monotonic()
        while await self.backlog():
            if time.monotonic() - started > seconds:
                raise RuntimeError(f"{self.name}: the backlog did not drain in {seconds:.0f} s")
            await asyncio.sleep(0.2)
        return time.monotonic() - started

    async def stop(self) -> None:
        for process in self._processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in self._processes.values():
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()
            _LIVE.discard(process.pid)
        self._processes = {}
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.database == "postgres" and self.database_url:
            await drop_postgres_database(self.pg_name)


def _with_descendants(pid: int) -> list[int]:
    """``pid`` and, recursively, its children (``serve --workers N`` forks worker processes)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            pids += _with_descendants(int(child))
    return pids


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process (not of its children) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


@contextlib.asynccontextmanager
async def running_server(
    name: str,
    database: Database,
    *,
    standin_limit: int = 50_000,
    services: Sequence[str] = ("all",),
    serve_args: Sequence[str] = (),
    extra_env: dict[str, str] | None = None,
) -> Any:
    """A served installation and its stand-in; yields (server, standin), or None without PG.

    ``serve_args`` go to every ``passpost serve`` (``--workers N``), ``extra_env`` (settings)
    to its environment.
    """
    server = Server(name, database, services)
    if not await server.init():
        yield None
        return
    standin = Standin(server.keys_dir, standin_limit)
    await standin.start()
    try:
        await server.serve(standin, extra_env=extra_env, serve_args=serve_args)
        yield server, standin
    finally:
        await server.stop()
        await standin.stop()


# ---------------------------------------------------------------- load from another process


class _LoadGenerator:
    """One ``bench.loadgen --serve`` process for the whole run (starting Python is slow)."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None

    async def run(self, job: dict[str, Any]) -> dict[str, Any]:
        if self._process is None or self._process.returncode is not None:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.loadgen",
                "--serve",
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 26,
            )
            _LIVE.add(self._process.pid)
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(json.dumps(job).encode() + b"\n")
        await self._process.stdin.drain()
        line = await self._process.stdout.readline()
        if not line:
            raise RuntimeError("the load generator died (its error is above)")
        result: dict[str, Any] = json.loads(line)
        return result

    async def close(self) -> None:
        if self._process is not None and self._process.returncode is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            await self._process.wait()
            _LIVE.discard(self._process.pid)
        self._process = None


LOAD_GENERATOR = _LoadGenerator()


async def load(server: Server, job: dict[str, Any]) -> dict[str, Any]:
    """Run one ``bench.loadgen`` job against ``server``, in the load generator's process."""
    return await LOAD_GENERATOR.run({"host": HOST, "port": server.port, **job})


def raw_request(
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    host: str = HOST,
) -> str:
    """An HTTP/1.1 keep-alive request as a latin-1 string (what ``bench.loadgen`` sends)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines) + "\r\n\r\n" + body.decode("latin-1")


# ---------------------------------------------------------------- the shop and the phones


FULL_ORDER = {
    "total": {"amount": "49.90", "currency": "EUR"},
    "shipping": {
        "carrier": "DPD",
        "tracking_number": "0123456789",
        "tracking_url": "https://track.example.com/0123456789",
        "estimated_delivery": "2026-11-25",
    },
    "items": [{"name": "Tea kettle", "quantity": 1}, {"name": "Green tea 100 g", "quantity": 2}],
    "links": {
        "order": "https://shop.example.com/orders/1001",
        "returns": "https://shop.example.com/returns/1001",
    },
}
STATUS_STEPS = ("confirmed", "processing", "shipped", "out_for_delivery", "delivered")


def order_event(
    event_id: str, order_id: str, customer: str, status: str, at: str
) -> dict[str, Any]:
    """A realistic order event (what an e-shop posts), full snapshot included."""
    return {
        "id": event_id,
        "occurred_at": at,
        "order": {
            "id": order_id,
            "number": order_id[-8:],
            "status": status,
            "customer": {"id": customer, "name": "Jana Nováková", "locale": "sk"},
            **FULL_ORDER,
        },
    }


EPOCH = datetime(2026, 11, 23, tzinfo=UTC)


def at_second(second: int) -> str:
    """An RFC 3339 time ``second`` seconds after a fixed moment (events move forward)."""
    return (EPOCH + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")


def push_token(n: int) -> str:
    return f"{n:064x}"


@dataclass(frozen=True)
class DeviceCard:
    """A card as a phone holding it knows it."""

    customer: str
    order_id: str
    pass_type: str
    serial: str
    token: str
    last_modified: str
    link: str


class Shop:
    """The e-shop and its customers' phones, over HTTP (seeding; not what is measured)."""

    def __init__(self, server: Server, concurrency: int = 16) -> None:
        self.server = server
        self.client = httpx.AsyncClient(
            base_url=server.base_url,
            timeout=60,
            limits=httpx.Limits(max_connections=concurrency),
        )
        self._slots = asyncio.Semaphore(concurrency)

    async def close(self) -> None:
        await self.client.aclose()

    def slot(self) -> asyncio.Semaphore:
        """Hold one of the shop's concurrent requests."""
        return self._slots

    async def __aenter__(self) -> Shop:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def post_event(self, event: dict[str, Any]) -> dict[str, Any]:
        async with self._slots:
            response = await self.client.post(
                "/v1/orders/events",
                json=event,
                headers={"Authorization": f"Bearer {self.server.api_key}"},
            )
        if response.status_code != 202:
            raise RuntimeError(f"event refused: {response.status_code} {response.text[:500]}")
        body: dict[str, Any] = response.json()
        return body

    async def card(
        self, link: str, customer: str, order_id: str, seconds: float = 120
    ) -> DeviceCard:
        """Download the pass behind a card link once it shows its order (as the customer does;
        a link answers at once, with the card "being prepared" until the order's event came)."""
        deadline = time.monotonic() + seconds
        while True:
            async with self._slots:
                response = await self.client.get(link)
            if response.status_code == 200:
                with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
                    document = json.loads(bundle.read("pass.json"))
                if document["storeCard"]["primaryFields"][0]["value"] != "status.preparing":
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"card never took its order: {link} {response.status_code}")
            await asyncio.sleep(0.05)
        return DeviceCard(
            customer=customer,
            order_id=order_id,
            pass_type=document["passTypeIdentifier"],
            serial=document["serialNumber"],
            token=document["authenticationToken"],
            last_modified=response.headers["last-modified"],
            link=link,
        )

    async def register(self, card: DeviceCard, device: str, token: str) -> None:
        async with self._slots:
            response = await self.client.post(
                f"{self.server.passes_url}/passkit/v1/devices/{device}/registrations/"
                f"{card.pass_type}/{card.serial}",
                json={"pushToken": token},
                headers={"Authorization": f"ApplePass {card.token}"},
            )
        if response.status_code not in (200, 201):
            raise RuntimeError(f"registration refused: {response.status_code} {response.text}")

    async def issue_cards(self, customers: Sequence[str], prefix: str) -> list[DeviceCard]:
        """One confirmed order per customer; then each customer's card, downloaded."""

        async def one(customer: str) -> DeviceCard:
            order_id = f"{prefix}-{customer}"
            accepted = await self.post_event(
                order_event(f"{order_id}-confirmed", order_id, customer, "confirmed", at_second(0))
            )
            return await self.card(accepted["card"]["apple_pass_url"], customer, order_id)

        return await gather_bounded([one(c) for c in customers])


async def gather_bounded(coroutines: Sequence[Awaitable[Any]]) -> list[Any]:
    return list(await asyncio.gather(*coroutines))


async def wait_until(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)

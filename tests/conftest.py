"""Every test gets its own database (SQLite always, PostgreSQL when configured) and data dir."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.js.errors
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from typer.testing import CliRunner

from services.cli import ServiceName, components_of
from services.cli import app as passpost
from services.core.db import create_engine, create_sessionmaker
from services.core.migrations import upgrade_to_head
from services.core.settings import Environment, Settings, get_settings
from services.core.web import create_app
from services.models import Base
from services.onboarding import DEV_TEAM_IDENTIFIER
from services.passes.apple.devchain import ensure_dev_chain, ensure_pass_type_certificate
from tests.factories import TEST_SECRET_KEY
from tests.figures import FIGURES

POSTGRES_URL = os.environ.get("PASSPOST_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite", *(["postgresql"] if POSTGRES_URL else [])]
NATS_URL = os.environ.get("PASSPOST_TEST_NATS_URL", "")
QUEUE_BACKENDS = ["db", *(["nats"] if NATS_URL else [])]
"""The queue backends that tests exercising the queue run on (``queue_settings``)."""
BASE_URL = "https://passpost.test"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI", "").lower() == "true":
        if not POSTGRES_URL:
            raise pytest.UsageError("CI needs PostgreSQL: set PASSPOST_TEST_DATABASE_URL")
        if not NATS_URL:
            raise pytest.UsageError("CI needs NATS JetStream: set PASSPOST_TEST_NATS_URL")


@dataclass(frozen=True)
class MigratedDatabase:
    backend: str
    url: str
    template: Path | None = None


async def _reset_postgres(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text("DROP SCHEMA public CASCADE"))
        await connection.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def migrated_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> MigratedDatabase:
    """The schema, built once per session by the real migrations."""
    if request.param == "sqlite":
        template = tmp_path_factory.mktemp("sqlite") / "template.db"
        upgrade_to_head(Settings(database_url=f"sqlite+aiosqlite:///{template}"))
        return MigratedDatabase("sqlite", "", template)
    asyncio.run(_reset_postgres(POSTGRES_URL))
    upgrade_to_head(Settings(database_url=POSTGRES_URL))
    return MigratedDatabase("postgresql", POSTGRES_URL)


@pytest.fixture(scope="session")
def dev_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The development chain and the test merchants' pass type certificates, made once."""
    keys = tmp_path_factory.mktemp("keys")
    ensure_dev_chain(keys)
    for slug in ("demo", "shop", "other"):
        ensure_pass_type_certificate(
            keys, f"pass.dev.passpost.{slug}", DEV_TEAM_IDENTIFIER, slug.title()
        )
    return keys


@pytest.fixture(scope="session")
def service_account_info() -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    """A throwaway Google service account key, as the console would download it."""
    return {
        "type": "service_account",
        "project_id": "passpost-test",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem,
        "client_email": "wallet@passpost-test.iam.gserviceaccount.com",
        "client_id": "100000000000000000000",
        "token_uri": GOOGLE_TOKEN_URI,
    }


@pytest.fixture
async def settings(migrated_database: MigratedDatabase, dev_keys: Path, tmp_path: Path) -> Settings:
    data_dir = tmp_path / "var"
    shutil.copytree(dev_keys, data_dir / "keys")
    if migrated_database.template is not None:
        database = data_dir / "passpost.db"
        shutil.copyfile(migrated_database.template, database)
        url = f"sqlite+aiosqlite:///{database}"
    else:
        url = migrated_database.url
        await _truncate_all(url)
    return Settings(
        environment=Environment.test,
        data_dir=data_dir,
        database_url=url,
        public_base_url=BASE_URL,
        secret_key=TEST_SECRET_KEY.decode(),
        queue_poll_interval=0.05,
        log_json=False,
    )


@contextlib.asynccontextmanager
async def nats_stream() -> AsyncIterator[str]:
    """A JetStream stream name of the test's own on the test NATS, deleted afterwards.

    NATS must answer: an unreachable one fails the test instead of hanging it."""
    try:
        client = await nats.connect(NATS_URL, connect_timeout=5, max_reconnect_attempts=0)
    except Exception as exc:
        pytest.fail(f"NATS at PASSPOST_TEST_NATS_URL does not answer: {type(exc).__name__}")
    stream = f"passpost_test_{uuid.uuid4().hex[:12]}"
    try:
        yield stream
    finally:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await client.jetstream().delete_stream(stream)
        await client.close()


@contextlib.asynccontextmanager
async def on_queue_backend(settings: Settings, backend: str) -> AsyncIterator[Settings]:
    """``settings`` with the queue on ``backend`` (``nats``: on a stream of the test's own)."""
    if backend == "db":
        yield settings
        return
    async with nats_stream() as stream:
        yield settings.model_copy(
            update={"queue_backend": "nats", "nats_url": NATS_URL, "nats_stream": stream}
        )


@pytest.fixture(params=QUEUE_BACKENDS)
async def queue_settings(
    request: pytest.FixtureRequest, settings: Settings
) -> AsyncIterator[Settings]:
    """``settings`` on each queue backend, for the tests that exercise the queue."""
    async with on_queue_backend(settings, request.param) as on_backend:
        yield on_backend


async def _truncate_all(url: str) -> None:
    engine = create_async_engine(url)
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine, settings: Settings) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine, settings)


@pytest.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for arranging and inspecting data; tests commit what the app must see."""
    async with sessionmaker() as session:
        yield session


@pytest.fixture
def cli(settings: Settings) -> Iterator[Any]:
    """``passpost ...`` as ops run it, on the test's database and data dir: ``cli("init")``."""
    runner = CliRunner()
    env = {
        "PASSPOST_ENVIRONMENT": "test",
        "PASSPOST_DATA_DIR": str(settings.data_dir),
        "PASSPOST_DATABASE_URL": settings.resolved_database_url,
        "PASSPOST_PUBLIC_BASE_URL": "https://cards.example.com",
    }

    def invoke(*args: str) -> Any:
        get_settings.cache_clear()
        return runner.invoke(passpost, list(args), env=env)

    yield invoke
    get_settings.cache_clear()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings, components_of(ServiceName.all, settings))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures tests recorded (``tests.figures``), after the results."""
    if FIGURES:
        terminalreporter.section("figures")
        for name, value in sorted(FIGURES.items()):
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a line of figures whether or not the test passes (and without ``-s``)."""

    def show(line: str) -> None:
        with capsys.disabled():
            print(f"\n{line}")

    return show

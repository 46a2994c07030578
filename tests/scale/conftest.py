"""What the replica tests share: a fresh PostgreSQL database per run, and figures printed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import NATS_URL, POSTGRES_URL
from tests.processes import fresh_postgres_database


def needs(queue_backend: str) -> None:
    """Skip without the servers the run needs (in CI, conftest refused to start without them)."""
    if not POSTGRES_URL:
        pytest.skip("needs PostgreSQL: set PASSPOST_TEST_DATABASE_URL")
    if queue_backend == "nats" and not NATS_URL:
        pytest.skip("needs NATS JetStream: set PASSPOST_TEST_NATS_URL")


async def own_database(suffix: str) -> str:
    """A fresh database next to the test database (``<its name>_<suffix>``), for processes
    that outlive any one test's schema."""
    name = f"{make_url(POSTGRES_URL).database}_{suffix}"
    return await fresh_postgres_database(POSTGRES_URL, name)


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a line of figures whether or not the test passes (and without ``-s``)."""

    def show(line: str) -> None:
        with capsys.disabled():
            print(f"\n{line}")

    return show

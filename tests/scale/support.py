"""What the tests that run real processes share: the servers they need, and a fresh PostgreSQL
database per run."""

from __future__ import annotations

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

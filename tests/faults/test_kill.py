"""kill -9 of the whole server (``passpost serve all``, one process) at a random point while
2,000 order events flow, on SQLite and on PostgreSQL with NATS JetStream: afterwards every event
answered 202 is applied, every card at its latest version on every device, and pushes per
(device, version) repeat only across the kill (the crash window)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import NATS_URL
from tests.processes import Phones, Replicas, installation, new_name
from tests.scale.scenario import SHORT_LEASES, OrderScenario
from tests.scale.support import needs, own_database


@pytest.mark.parametrize("database", ["sqlite", "postgresql+nats"])
async def test_kill_9_of_the_server_loses_nothing(
    database: str, dev_keys: Path, tmp_path: Path, report: Callable[[str], None]
) -> None:
    nats = database.endswith("+nats")
    if nats:
        needs("nats")
    url = await own_database("kill") if nats else ""
    async with installation(
        tmp_path / "var",
        dev_keys,
        url,
        queue_backend="nats" if nats else "db",
        nats_url=NATS_URL,
        nats_stream=new_name("kill"),
        extra_env=SHORT_LEASES,
    ) as running:
        await running.serve({"all": 1})
        server = running.services["all"][0]
        client = Replicas(running.urls("all"))
        scenario = OrderScenario(running, backend=database, cards=200, devices_per_card=1)
        async with Phones(running.standin, client) as phones:  # type: ignore[arg-type]
            await scenario.seed(client, client, phones)
            phones.start()
            await scenario.flow(client, [server])
            await scenario.converge()
            figures = await scenario.check(client, push_kills=[at for _, at in running.kills])
        figures.retried_requests = client.retried
        await client.aclose()
    report(figures.line())
    assert figures.accepted >= 2_000
    assert len(figures.kills) == 1
    assert figures.lost == 0
    assert figures.out_of_order_pushes == 0

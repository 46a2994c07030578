"""Two processes of each service on PostgreSQL, on both queue backends, one of each killed with
SIGKILL mid-flow and restarted: nothing lost, nothing repeated outside the crash window."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import NATS_URL
from tests.processes import Phones, Replicas, installation, new_name
from tests.scale.scenario import SHORT_LEASES, OrderScenario
from tests.scale.support import needs, own_database

SHAPE = {"orders": 2, "passes": 2, "push": 2}


@pytest.mark.parametrize("queue_backend", ["db", "nats"])
async def test_replicas_lose_nothing_when_one_of_each_is_killed(
    queue_backend: str, dev_keys: Path, tmp_path: Path, report: Callable[[str], None]
) -> None:
    needs(queue_backend)
    url = await own_database(f"scale_{queue_backend}")
    async with installation(
        tmp_path / "var",
        dev_keys,
        url,
        queue_backend=queue_backend,
        nats_url=NATS_URL,
        nats_stream=new_name("scale"),
        extra_env=SHORT_LEASES,
    ) as running:
        await running.serve(SHAPE)
        orders, passes = Replicas(running.urls("orders")), Replicas(running.urls("passes"))
        scenario = OrderScenario(running, backend=f"postgresql+{queue_backend}")
        async with Phones(running.standin, passes) as phones:  # type: ignore[arg-type]
            await scenario.seed(orders, passes, phones)
            phones.start()
            victims = [random.choice(running.services[s]) for s in SHAPE]  # noqa: S311
            await scenario.flow(orders, victims)
            await scenario.converge()
            push_kills = [at for name, at in running.kills if name.startswith("push")]
            figures = await scenario.check(orders, push_kills=push_kills)
        figures.retried_requests = orders.retried + passes.retried
        await orders.aclose()
        await passes.aclose()
    report(figures.line())
    assert figures.accepted >= 1_000
    assert figures.cards >= 100
    assert figures.duplicates > 0
    assert figures.late > 0
    assert len(figures.kills) == 3
    assert figures.lost == 0
    assert figures.out_of_order_pushes == 0

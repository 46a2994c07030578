"""SIGTERM mid-flow: a service stops taking work, finishes or hands back what it holds, and
exits within twice PASSPOST_SHUTDOWN_GRACE_SECONDS; the other replica carries on with nothing
lost, nothing repeated and nothing left leased (leases here outlast the test's patience, so a
lease left behind would show as work never done)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import NATS_URL
from tests.processes import Phones, Process, Replicas, installation, new_name
from tests.scale.scenario import OrderScenario
from tests.scale.support import needs, own_database

GRACE_SECONDS = 8.0
EXIT_BOUND_SECONDS = 2 * GRACE_SECONDS + 1
LONG_LEASES = {
    "PASSPOST_QUEUE_LEASE_SECONDS": "600",
    "PASSPOST_PUSH_LEASE_SECONDS": "600",
    "PASSPOST_APNS_TIMEOUT": "5",  # under the grace: a push in flight is finished
    "PASSPOST_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
}
SHAPE = {"orders": 2, "passes": 2, "push": 2}


@pytest.mark.parametrize("queue_backend", ["db", "nats"])
async def test_sigterm_mid_flow_loses_nothing_and_leaves_nothing_leased(
    queue_backend: str, dev_keys: Path, tmp_path: Path, report: Callable[[str], None]
) -> None:
    needs(queue_backend)
    url = await own_database(f"sigterm_{queue_backend}")
    exits: dict[str, float] = {}
    async with installation(
        tmp_path / "var",
        dev_keys,
        url,
        queue_backend=queue_backend,
        nats_url=NATS_URL,
        nats_stream=new_name("sigterm"),
        extra_env=LONG_LEASES,
    ) as running:
        await running.serve(SHAPE)

        async def terminate(process: Process) -> None:
            exits[process.name] = await process.terminate()

        orders, passes = Replicas(running.urls("orders")), Replicas(running.urls("passes"))
        scenario = OrderScenario(
            running,
            backend=f"postgresql+{queue_backend}, SIGTERM",
            cards=50,
            orders_per_card=1,
            devices_per_card=1,
        )
        async with Phones(running.standin, passes) as phones:  # type: ignore[arg-type]
            await scenario.seed(orders, passes, phones)
            phones.start()
            victims = [random.choice(running.services[s]) for s in SHAPE]  # noqa: S311
            await scenario.flow(orders, victims, disrupt=terminate)
            await scenario.converge()
            figures = await scenario.check(orders, push_kills=[])
        figures.retried_requests = orders.retried + passes.retried
        await orders.aclose()
        await passes.aclose()
        codes = {p.name: p.process.returncode for p in victims if p.process is not None}
    report(f"{figures.line()}; exits after SIGTERM {exits} s, codes {codes}")
    assert figures.lost == 0
    assert figures.repeated_pushes == figures.repeated_unanswered, "a graceful stop repeats nothing"
    assert len(exits) == 3
    assert all(seconds <= EXIT_BOUND_SECONDS for seconds in exits.values()), exits
    # uvicorn re-raises the SIGTERM it handled once it shut down, so a clean exit is -15.
    assert set(codes.values()) <= {0, -15}, codes

"""``/metrics``: what an on-call engineer reads, the outbox backlog included."""

from __future__ import annotations

from datetime import timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.models import utcnow
from services.core.queue import OutboxMessage
from services.core.settings import Settings
from services.core.web import create_app


def _gauges(text: str) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels.get("topic", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("passpost_outbox_")
    }


async def test_backlog_per_topic_and_the_age_of_its_oldest_message(
    settings: Settings, session: AsyncSession
) -> None:
    now = utcnow()

    def row(topic: str, age: float, **state: object) -> OutboxMessage:
        created = now - timedelta(seconds=age)
        return OutboxMessage(
            topic=topic, payload={}, created_at=created, available_at=created, **state
        )

    session.add_all(
        [
            row("a.topic", 90),
            row("a.topic", 10),
            row("a.topic", 500, failed_at=now, attempts=10),
            row("a.topic", 900, processed_at=now),
            row("b.topic", 5),
            row("c.topic", 700, processed_at=now),
        ]
    )
    await session.commit()
    app = create_app(settings, [])  # no consumer: the rows stay where they are
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            gauges = _gauges((await client.get("/metrics")).text)
    assert gauges.pop(("passpost_outbox_oldest_pending_age_seconds", "a.topic")) >= 90
    assert gauges.pop(("passpost_outbox_oldest_pending_age_seconds", "b.topic")) < 90
    assert gauges == {
        ("passpost_outbox_pending", "a.topic"): 2,
        ("passpost_outbox_pending", "b.topic"): 1,
        ("passpost_outbox_failed", "a.topic"): 1,
        ("passpost_outbox_failed", "b.topic"): 0,
    }

"""Prometheus metrics shared by every service, and the ``/metrics`` endpoint.

Under ``serve --workers N`` the supervisor gives its workers one ``PROMETHEUS_MULTIPROC_DIR``
(``core/workers.py``), so whichever worker answers a scrape reports the whole process group.
The outbox backlog is read from the database at scrape time, one grouped query on the partial
indexes of pending and failed rows, never counted per request.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core.models import utcnow
from services.core.queue.models import OutboxMessage

log = logging.getLogger(__name__)

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

HTTP_REQUESTS = Counter(
    "passpost_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "passpost_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
QUEUE_MESSAGES = Counter(
    "passpost_queue_messages_total",
    "Queue messages handled: processed, duplicate, retried, failed (given up)",
    ["topic", "outcome"],
)
QUEUE_LISTENING = Gauge(
    "passpost_queue_listening",
    "1 while the queue hears other processes' commits (PostgreSQL LISTEN); 0 while it only polls",
    multiprocess_mode="liveall",
)
QUEUE_LAG = Histogram(
    "passpost_queue_lag_seconds",
    "Time from publish to applied",
    ["topic"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
PUSHES = Counter(
    "passpost_pushes_total",
    "APNs push attempts by outcome, HTTP status and APNs reason (an exception's type for 0)",
    ["outcome", "status", "reason"],
)
GOOGLE_CALLS = Counter(
    "passpost_google_calls_total",
    "Google Wallet calls by kind, outcome and HTTP status",
    ["kind", "outcome", "status"],
)
GOOGLE_MESSAGES = Counter(
    "passpost_google_messages_total",
    "Google Wallet messages: notified, plain, downgraded (plain, over the daily budget),"
    " or expired (its display ended before it could go: dropped)",
    ["kind"],
)
PASSES_BUILT = Counter("passpost_passes_built_total", "Signed .pkpass bundles built")
PASS_BUILD_SECONDS = Histogram(
    "passpost_pass_build_seconds",
    "Time to build and sign one .pkpass bundle",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
DEVICE_LOG_REFUSED = Counter(
    "passpost_device_log_refused_total",
    "PassKit log requests refused (429): their address logged too often",
)
REGISTRATIONS_REFUSED = Counter(
    "passpost_registrations_refused_total",
    "PassKit (un)registrations refused (429): their card or device registered too often",
)
CAMPAIGN_CARDS = Counter(
    "passpost_campaign_cards_total",
    "Campaigns' cards by what they got: targeted, updated, notified, silent, deferred (held for "
    "quiet hours; falls back as they go), skipped, failed",
    ["outcome"],
)
CONNECTOR_DELIVERIES = Counter(
    "passpost_connector_deliveries_total",
    "Platform webhook deliveries by platform and outcome: applied, same, stale, duplicate,"
    " redelivered, ignored, unmappable (changed no card: see GET /v1/connectors/events),"
    " refused, pending (Shoptet: to fetch), failed (Shoptet: fetching gave up)",
    ["platform", "outcome"],
)
PRUNED_ROWS = Counter(
    "passpost_pruned_rows_total", "Rows deleted by retention, by table", ["table"]
)


@dataclass(frozen=True, slots=True)
class TopicBacklog:
    topic: str
    pending: int
    oldest_created_at: datetime | None
    failed: int


_PENDING = (
    select(OutboxMessage.topic, func.count(), func.min(OutboxMessage.created_at))
    .where(OutboxMessage.processed_at.is_(None), OutboxMessage.failed_at.is_(None))
    .group_by(OutboxMessage.topic)
)
_FAILED = (
    select(OutboxMessage.topic, func.count())
    .where(OutboxMessage.failed_at.is_not(None))
    .group_by(OutboxMessage.topic)
)


async def outbox_backlog(engine: AsyncEngine) -> list[TopicBacklog]:
    """Pending and failed messages per topic, from the partial indexes that cover them."""
    async with engine.connect() as connection:
        pending = {t: (n, oldest) for t, n, oldest in await connection.execute(_PENDING)}
        failed = dict((t, n) for t, n in await connection.execute(_FAILED))
    backlog = []
    for topic in sorted(pending.keys() | failed.keys()):
        count, oldest = pending.get(topic, (0, None))
        backlog.append(TopicBacklog(topic, count, oldest, failed.get(topic, 0)))
    return backlog


class BacklogCollector(Collector):
    """The backlog read for one scrape, as gauges (the same in every process: take ``max``)."""

    def __init__(self, backlog: Iterable[TopicBacklog], now: datetime) -> None:
        self._backlog = list(backlog)
        self._now = now

    def collect(self) -> Iterable[Metric]:
        pending = GaugeMetricFamily(
            "passpost_outbox_pending", "Outbox messages not yet applied", labels=["topic"]
        )
        age = GaugeMetricFamily(
            "passpost_outbox_oldest_pending_age_seconds",
            "Age of the oldest outbox message not yet applied (0 when none waits)",
            labels=["topic"],
        )
        failed = GaugeMetricFamily(
            "passpost_outbox_failed",
            "Outbox messages given up on (failed_at set), kept until retention prunes them",
            labels=["topic"],
        )
        for row in self._backlog:
            pending.add_metric([row.topic], row.pending)
            oldest = row.oldest_created_at
            waited = 0.0 if oldest is None else (self._now - oldest).total_seconds()
            age.add_metric([row.topic], waited)
            failed.add_metric([row.topic], row.failed)
        return [pending, age, failed]


def process_metrics() -> bytes:
    """This process's metrics, or the whole group's in multiprocess mode."""
    directory = os.environ.get(MULTIPROCESS_DIR_ENV)
    if not directory:
        return generate_latest()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    body = process_metrics()
    try:
        backlog = await outbox_backlog(request.app.state.read_engine)
    except (SQLAlchemyError, OSError) as exc:  # the database's own alerts say why
        log.warning("no outbox backlog in /metrics", extra={"error": type(exc).__name__})
    else:
        registry = CollectorRegistry()
        registry.register(BacklogCollector(backlog, utcnow()))
        body += generate_latest(registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)

"""Prometheus metrics shared by every service, and the ``/metrics`` endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

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
    "passpost_queue_messages_total", "Queue messages handled", ["topic", "outcome"]
)
QUEUE_LISTENING = Gauge(
    "passpost_queue_listening",
    "1 while the queue hears other processes' commits (PostgreSQL LISTEN); 0 while it only polls",
)
QUEUE_LAG = Histogram(
    "passpost_queue_lag_seconds",
    "Time from publish to applied",
    ["topic"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
PUSHES = Counter(
    "passpost_pushes_total", "APNs push attempts by outcome and HTTP status", ["outcome", "status"]
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
DEVICE_LOG_REFUSED = Counter(
    "passpost_device_log_refused_total",
    "PassKit log requests refused (429): their address logged too often",
)
REGISTRATIONS_REFUSED = Counter(
    "passpost_registrations_refused_total",
    "PassKit (un)registrations refused (429): their card or device registered too often",
)

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

"""What every service answers: health, readiness, metrics, errors, limits, request ids."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.schedule import Job
from services.core.settings import Settings
from services.core.web import Component, create_app
from tests.waiting import eventually


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok"


async def _readiness(settings: Settings, *, once_ready: bool = False) -> httpx.Response:
    """``/readyz`` of an app made with ``settings``; ``once_ready``: after it said ready (the
    NATS queue connects in the background)."""
    app = create_app(settings, [])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            if once_ready:
                await eventually(ready)
            return await client.get("/readyz")


async def test_readiness_reports_the_queue_backend(queue_settings: Settings) -> None:
    response = await _readiness(queue_settings, once_ready=True)
    expected = {"db": {}, "nats": {"queue": "ok"}}[queue_settings.queue_backend]
    assert response.json() == {"status": "ok", "database": "ok", **expected}


async def test_not_ready_while_nats_is_unreachable(settings: Settings) -> None:
    unreachable = settings.model_copy(
        update={"queue_backend": "nats", "nats_url": "nats://user:pw@127.0.0.1:1"}
    )
    response = await _readiness(unreachable)
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "queue": "unreachable"}


async def test_not_ready_when_the_database_is_gone(settings: Settings) -> None:
    broken = settings.model_copy(
        update={"database_url": "postgresql+asyncpg://nobody@127.0.0.1:1/none"}
    )
    response = await _readiness(broken)
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unreachable"}


async def test_metrics_are_exposed(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert (
        'passpost_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics.text
    )


async def test_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.get("/healthz")
    assert len(made.headers["x-request-id"]) == 32


async def test_unknown_route_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/route")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_openapi_document_is_served(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert "/c/{link_token}/pass.pkpass" in document["paths"]
    assert "303" in document["paths"]["/c/{link_token}/google"]["get"]["responses"]


def _echo_app(settings: Settings) -> FastAPI:
    app = create_app(settings, [])

    @app.post("/echo")
    async def echo(body: dict[str, str]) -> dict[str, int]:
        return {"keys": len(body)}

    return app


async def test_body_over_the_limit_is_413(settings: Settings) -> None:
    app = _echo_app(settings.model_copy(update={"max_request_bytes": 100}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        small = await client.post("/echo", json={"a": "b"})
        assert small.status_code == 200
        declared = await client.post("/echo", json={"a": "b" * 200})
        assert declared.status_code == 413
        assert declared.json()["error"] == "payload_too_large"

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"a": "'
            yield b"b" * 200
            yield b'"}'

        streamed = await client.post("/echo", content=chunks())  # no Content-Length
        assert streamed.status_code == 413


async def test_invalid_body_is_422_with_the_field_path(settings: Settings) -> None:
    transport = httpx.ASGITransport(app=_echo_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/echo", json={"a": 1})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_input"
    assert body["errors"][0]["path"] == "body.a"


async def test_a_trailing_slash_is_not_redirected_to_the_host_the_client_named(
    client: httpx.AsyncClient,
) -> None:
    """A redirect to the same path with or without a slash took its Location from the Host
    header, which anyone sets: such paths are simply not found."""
    for path in ("/healthz/", "/v1/orders/A-1/", "/passkit/v1/log/"):
        response = await client.get(path, headers={"Host": "evil.example"})
        assert response.status_code in (404, 405), (path, response.status_code)
        assert "location" not in response.headers


async def test_a_task_that_ignores_its_cancellation_does_not_hold_the_shutdown(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The process ends within its grace period and names the task, as an operator needs."""
    cancellations: list[int] = []

    async def stubborn(_: FastAPI) -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancellations.append(1)
                if len(cancellations) > 1:  # the test's own cleanup, below
                    raise

    component = Component(name="stubborn", tasks=[stubborn])
    app = create_app(settings.model_copy(update={"shutdown_grace_seconds": 0.2}), [component])
    async with asyncio.timeout(10):
        async with app.router.lifespan_context(app):
            pass
    assert cancellations == [1]
    stopping = [r for r in caplog.records if r.message.startswith("background tasks did not")]
    assert [r.tasks for r in stopping] == [["stubborn"]]
    # Where it waits, so that a hang in CI's log says what to fix.
    where = stopping[0].message.split(": ", 1)[1]
    assert re.fullmatch(
        r"stubborn at stubborn \(test_web.py:\d+\) > sleep \(tasks.py:\d+\) > a future", where
    )
    left = [task for task in asyncio.all_tasks() if task.get_name() == "stubborn"]
    for task in left:
        task.cancel()
    await asyncio.wait(left, timeout=5)
    assert all(task.done() for task in left)


async def test_a_job_mid_transaction_at_shutdown_commits_before_the_process_ends(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A shutdown waits for the scheduled round in flight instead of cancelling it inside its
    transaction (a test's clock reset in its teardown wakes every job just before it)."""
    started, release = asyncio.Event(), asyncio.Event()
    committed: list[bool] = []

    async def round_(sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> int:
        async with sessionmaker() as session, session.begin():
            await session.execute(text("SELECT 1"))
            started.set()
            await release.wait()
        committed.append(True)
        return 0

    component = Component(name="slow", jobs=[Job("slow", every=3600, run=round_)])
    app = create_app(settings, [component])
    async with asyncio.timeout(10):
        async with app.router.lifespan_context(app):
            await started.wait()
            asyncio.get_running_loop().call_later(0.1, release.set)  # during the shutdown
    assert committed == [True]
    assert not [r for r in caplog.records if r.message.startswith("background tasks did not")]

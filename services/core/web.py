"""The one way a service becomes an ASGI app: health, metrics, errors, limits and the queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core import metrics
from services.core.db import create_engine, create_sessionmaker, read_only
from services.core.errors import PasspostError, PayloadTooLarge, install_error_handlers
from services.core.jsonbody import nested_too_deep, too_deep_error
from services.core.logging import request_id
from services.core.queue import QueueBackend, Subscription, on_commit_of_published
from services.core.queue.db import DatabaseQueue
from services.core.queue.nats import NatsQueue, StreamLimits
from services.core.queue.notify import CommitListener
from services.core.settings import Settings

log = logging.getLogger(__name__)

AppHook = Callable[[FastAPI], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Component:
    """What one service contributes to a process.

    Routes, queue subscriptions, hooks run at startup and (in reverse) at shutdown, and
    long-running tasks, started after every startup hook and cancelled after every shutdown hook.
    """

    name: str
    routers: Sequence[APIRouter] = ()
    subscriptions: Sequence[Subscription[Any]] = ()
    on_startup: Sequence[AppHook] = field(default_factory=tuple)
    on_shutdown: Sequence[AppHook] = field(default_factory=tuple)
    tasks: Sequence[AppHook] = field(default_factory=tuple)


def create_app(settings: Settings, components: Sequence[Component]) -> FastAPI:
    names = "+".join(c.name for c in components)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.engine = engine
        app.state.read_engine = read_only(engine)
        app.state.sessionmaker = create_sessionmaker(engine)
        workers: list[asyncio.Task[None]] = []
        remove_listener: Callable[[], None] | None = None
        queue: QueueBackend | None = None
        try:
            for component in components:
                for hook in component.on_startup:
                    await hook(app)
            subscriptions = [s for c in components for s in c.subscriptions]
            if settings.queue_backend == "nats":
                # Even without subscriptions: its relay moves this process's commits to NATS.
                queue = NatsQueue(
                    app.state.sessionmaker,
                    url=settings.nats_url,
                    stream=settings.nats_stream,
                    poll_interval=settings.queue_poll_interval,
                    lease_seconds=settings.queue_lease_seconds,
                    max_attempts=settings.queue_max_attempts,
                    limits=StreamLimits(
                        max_age_seconds=settings.nats_max_age_seconds,
                        max_bytes=settings.nats_max_bytes,
                        max_msgs=settings.nats_max_msgs,
                        duplicate_window_seconds=settings.nats_duplicate_window_seconds,
                    ),
                    tls=settings.nats_tls(),
                )
            elif subscriptions:
                queue = DatabaseQueue(
                    app.state.sessionmaker,
                    poll_interval=settings.queue_poll_interval,
                    lease_seconds=settings.queue_lease_seconds,
                    max_attempts=settings.queue_max_attempts,
                )
                if engine.dialect.name == "postgresql":
                    # Commits of other processes (one process per service) wake it too.
                    listener = CommitListener(engine, [s.topic for s in subscriptions], queue.wake)
                    app.state.queue_listener = listener
                    workers.append(asyncio.create_task(listener.run(), name="queue-listener"))
            if queue is not None:
                app.state.queue = queue
                remove_listener = on_commit_of_published(queue.wake)
                workers.append(asyncio.create_task(queue.run(subscriptions), name="queue"))
            for component in components:
                for task in component.tasks:
                    workers.append(asyncio.create_task(task(app), name=component.name))
            log.info("service started", extra={"services": names})
            yield
        finally:
            if remove_listener is not None:
                remove_listener()
            # Uvicorn finished the requests in flight; now the background work stops taking
            # more and finishes or hands back what it holds, the queue beside the components.
            await asyncio.gather(
                _stop_components(app, components),
                queue.stop(settings.shutdown_grace_seconds) if queue is not None else _nothing(),
            )
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await engine.dispose()

    app = FastAPI(
        title=f"passpost ({names})",
        version="0.1.0",
        lifespan=lifespan,
        description="Order updates on the customer's lock screen through Apple and Google Wallet.",
        # No redirect to the path with or without a trailing slash: Starlette builds its
        # Location from the request's Host header, which anyone can set. Our paths are exact.
        redirect_slashes=False,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(metrics.router)
    for component in components:
        for router in component.routers:
            app.include_router(router)
    app.add_middleware(RequestContextMiddleware, max_body=settings.max_request_bytes)
    return app


async def _stop_components(app: FastAPI, components: Sequence[Component]) -> None:
    for component in reversed(components):
        for hook in component.on_shutdown:
            await hook(app)


async def _nothing() -> None:
    return None


def app_settings(request: Request) -> Settings:
    """The settings the app was made with (``create_app`` keeps them on ``app.state``)."""
    settings: Settings = request.app.state.settings
    return settings


AppSettings = Annotated[Settings, Depends(app_settings)]

health_router = APIRouter(tags=["health"])


@health_router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Alive: the process answers."""
    return {"status": "ok"}


@health_router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready: the database (and with it the ``db`` queue) answers, and NATS is connected when
    the ``nats`` backend carries the queue."""
    answer = {"status": "ok", "database": "ok"}
    try:
        async with request.app.state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means not ready; say which
        log.warning("not ready: database unreachable", extra={"error": type(exc).__name__})
        answer |= {"status": "unavailable", "database": "unreachable"}
    queue = getattr(request.app.state, "queue", None)
    if isinstance(queue, NatsQueue):
        answer["queue"] = "ok" if queue.connected else "unreachable"
        if not queue.connected:
            log.warning("not ready: NATS unreachable")
            answer["status"] = "unavailable"
    return JSONResponse(answer, status_code=200 if answer["status"] == "ok" else 503)


class RequestContextMiddleware:
    """Request ids, metrics, the body-size limit and the JSON depth limit, as one ASGI layer.

    A JSON body (``application/json``, ``*+json``, or no content type, which FastAPI also
    parses as JSON) is read here, within the size limit, and refused with 400 when it nests
    deeper than ``jsonbody.MAX_JSON_DEPTH``: FastAPI parses the bodies of pydantic parameters
    with ``json.loads`` before any route code runs, so here is the one place that covers them
    all. The routes that parse bodies themselves use ``jsonbody.parse_json_body``, which
    answers the same, whatever the content type.
    """

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await self._too_large(scope, receive, send)
            request_id.reset(token)
            return

        json_body = _is_json(headers.get(b"content-type"))
        if scope.get("method") in {"POST", "PUT", "PATCH"} and (declared is None or json_body):
            # A chunked body has no declared size, a JSON one a depth to check: read it here,
            # within the limit, and replay it.
            body = await self._read_limited(receive)
            if body is None:
                await self._too_large(scope, receive, send)
                request_id.reset(token)
                return
            if json_body and nested_too_deep(body):
                await self._refuse(too_deep_error(), scope, receive, send)
                request_id.reset(token)
                return
            receive = _replay(body, receive)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope.get("method", "")
            metrics.HTTP_REQUESTS.labels(method, path, str(status)).inc()
            metrics.HTTP_LATENCY.labels(method, path).observe(time.perf_counter() - started)
            request_id.reset(token)

    async def _read_limited(self, receive: Receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLarge(f"the request body is larger than {self.max_body} bytes")
        await self._refuse(error, scope, receive, send)

    @staticmethod
    async def _refuse(error: PasspostError, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(error.to_dict(), status_code=error.status_code)
        await response(scope, receive, send)


def _is_json(content_type: bytes | None) -> bool:
    """Whether FastAPI reads a body of this content type as JSON (as ``fastapi.routing`` does)."""
    if not content_type:
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media.startswith(b"application/") and (
        media == b"application/json" or media.endswith(b"+json")
    )


def _replay(body: bytes, receive: Receive) -> Receive:
    """The buffered body first, then the real channel (for the disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay

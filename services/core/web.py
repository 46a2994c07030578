"""The one way a service becomes an ASGI app: health, metrics, errors, limits and the queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core import metrics
from services.core.db import create_engine, create_sessionmaker, read_only
from services.core.dbfaults import (
    DESCRIPTIONS,
    RETRY_AFTER_SECONDS,
    database_fault,
    database_ready,
    describe,
)
from services.core.errors import (
    BadRequest,
    DatabaseUnavailable,
    ErrorBody,
    PayloadTooLarge,
    error_response,
    install_error_handlers,
)
from services.core.jsonbody import MAX_JSON_DEPTH, nested_too_deep, too_deep_error
from services.core.logging import request_id
from services.core.queue import QueueBackend, Subscription, on_commit_of_published
from services.core.queue.db import DatabaseQueue
from services.core.queue.nats import NatsQueue, StreamLimits
from services.core.queue.notify import CommitListener
from services.core.queue.retention import queue_retention
from services.core.schedule import Job, Schedule
from services.core.settings import Settings

log = logging.getLogger(__name__)

AppHook = Callable[[FastAPI], Coroutine[Any, Any, None]]
ReadinessDetails = Callable[[FastAPI], Coroutine[Any, Any, dict[str, Any]]]
"""What a component adds to ``/readyz``'s answer (details only: they never make it 503)."""


@dataclass(frozen=True)
class Component:
    """What one service contributes to a process.

    Routes, queue subscriptions, hooks run at startup and (in reverse) at shutdown, and
    long-running tasks and scheduled jobs, started after every startup hook; at shutdown the
    jobs finish their round beside the shutdown hooks, and what still runs is then cancelled;
    ``readiness``: details it adds to ``/readyz``.
    """

    name: str
    routers: Sequence[APIRouter] = ()
    subscriptions: Sequence[Subscription[Any]] = ()
    on_startup: Sequence[AppHook] = field(default_factory=tuple)
    on_shutdown: Sequence[AppHook] = field(default_factory=tuple)
    tasks: Sequence[AppHook] = field(default_factory=tuple)
    jobs: Sequence[Job] = ()
    """Scheduled work of the component's domain (``services.core.schedule``)."""
    body_limits: Sequence[BodyLimit] = ()
    """Routes that take larger bodies than ``PASSPOST_MAX_REQUEST_BYTES``."""
    readiness: Sequence[ReadinessDetails] = field(default_factory=tuple)


@dataclass(frozen=True)
class BodyLimit:
    """A route whose bodies may be larger than the process's limit (or must be smaller):
    ``path`` is a regular expression the whole request path matches."""

    method: str
    path: str
    max_bytes: int

    def applies(self, method: str, path: str) -> bool:
        return method == self.method and re.fullmatch(self.path, path) is not None


def create_app(settings: Settings, components: Sequence[Component]) -> FastAPI:
    names = "+".join(c.name for c in components)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.engine = engine
        app.state.read_engine = read_only(engine)
        app.state.sessionmaker = create_sessionmaker(engine, settings)
        workers: list[asyncio.Task[None]] = []
        remove_listener: Callable[[], None] | None = None
        queue: QueueBackend | None = None
        jobs = [queue_retention(settings), *(j for c in components for j in c.jobs)]
        schedule = Schedule(jobs, app.state.sessionmaker)
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
                # The NATS relay moves every topic; the database queue consumes its own.
                topics = None if isinstance(queue, NatsQueue) else {s.topic for s in subscriptions}
                remove_listener = on_commit_of_published(queue.wake, topics)
                workers.append(asyncio.create_task(queue.run(subscriptions), name="queue"))
            for component in components:
                for task in component.tasks:
                    workers.append(asyncio.create_task(task(app), name=component.name))
            workers.extend(schedule.start())
            log.info("service started", extra={"services": names})
            yield
        finally:
            if remove_listener is not None:
                remove_listener()
            # Uvicorn finished the requests in flight; now the background work stops taking
            # more and finishes or hands back what it holds: the components, the queue and the
            # scheduled jobs side by side.
            grace = settings.shutdown_grace_seconds
            await asyncio.gather(
                _stop_components(app, components),
                queue.stop(grace) if queue is not None else _nothing(),
                schedule.stop(grace),
            )
            await _cancel(workers, grace)
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
    app.state.readiness = [check for c in components for check in c.readiness]
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(metrics.router)
    for component in components:
        for router in component.routers:
            app.include_router(router)
    app.add_middleware(
        RequestContextMiddleware,
        max_body=settings.max_request_bytes,
        body_limits=[limit for component in components for limit in component.body_limits],
    )
    _document_body_refusals(app, settings.max_request_bytes)
    return app


def _document_body_refusals(app: FastAPI, max_body: int) -> None:
    """Every operation that takes a body says what ``RequestContextMiddleware`` answers for
    any body before a route sees it: 413 past the size limit, 400 for a JSON body that is not
    UTF-8 or nests too deep (the routes' own 422s are for JSON that is readable but wrong)."""
    generate = app.openapi
    refusals = {
        **BadRequest.openapi(
            f"The JSON body is not UTF-8, or nested deeper than {MAX_JSON_DEPTH} levels"
        ),
        **PayloadTooLarge.openapi(f"The body is larger than {max_body} bytes"),
    }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault(ErrorBody.__name__, ErrorBody.model_json_schema())
        reference = {"$ref": f"#/components/schemas/{ErrorBody.__name__}"}
        for operations in schema["paths"].values():
            for operation in operations.values():
                if "requestBody" not in operation:
                    continue
                for status, refusal in refusals.items():
                    operation["responses"].setdefault(
                        str(status),
                        {
                            "description": refusal["description"],
                            "content": {"application/json": {"schema": reference}},
                        },
                    )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _stop_components(app: FastAPI, components: Sequence[Component]) -> None:
    for component in reversed(components):
        for hook in component.on_shutdown:
            await hook(app)


async def _cancel(workers: list[asyncio.Task[None]], grace: float) -> None:
    """Cancel the background tasks and wait for them, ``grace`` seconds at most: a task that
    does not stop is named in the log, and the process still ends (an orchestrator would
    otherwise kill it mid-write after its own grace period)."""
    for worker in workers:
        worker.cancel()
    if not workers:
        return
    stopped, running = await asyncio.wait(workers, timeout=grace)
    for task in stopped:  # what they raised is theirs to log; retrieved, so asyncio is quiet
        if not task.cancelled():
            task.exception()
    if running:
        where = "; ".join(f"{t.get_name()} at {awaiting(t)}" for t in running)
        log.error(
            "background tasks did not stop when cancelled: %s",
            where,
            extra={"tasks": sorted(task.get_name() for task in running)},
        )


def awaiting(task: asyncio.Task[Any]) -> str:
    """Where a task waits, outermost await first (``Task.get_stack`` shows only the outermost
    frame of a suspended coroutine): what a task that ignores its cancellation is stuck on."""
    places: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = next(
            (f for a in ("cr_frame", "gi_frame", "ag_frame") if (f := getattr(awaited, a, None))),
            None,
        )
        if frame is None:  # a future (or a task) at the bottom of the chain
            places.append("a future")
            break
        code = frame.f_code
        places.append(f"{code.co_name} ({code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno})")
        awaited = next(
            (
                w
                for a in ("cr_await", "gi_yieldfrom", "ag_await")
                if (w := getattr(awaited, a, None))
            ),
            None,
        )
    return " > ".join(places)


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
    """Ready: the database (and with it the ``db`` queue) answers within two seconds and has
    room to write (``"database"`` says why not: ``full``, ``unreachable``, ...), and NATS is
    connected when the ``nats`` backend carries the queue."""
    answer: dict[str, Any] = {"status": "ok", "database": "ok"}
    fault = await database_ready(request.app.state.engine)
    if fault is not None:
        log.warning("not ready: database", extra={"reason": fault.value})
        answer |= {"status": "unavailable", "database": fault.value}
    queue = getattr(request.app.state, "queue", None)
    if isinstance(queue, NatsQueue):
        answer["queue"] = "ok" if queue.connected else "unreachable"
        if not queue.connected:
            log.warning("not ready: NATS unreachable")
            answer["status"] = "unavailable"
    if answer["database"] == "ok":
        for details in request.app.state.readiness:
            answer |= await details(request.app)
    return JSONResponse(answer, status_code=200 if answer["status"] == "ok" else 503)


class RequestContextMiddleware:
    """Request ids, metrics, the body-size limit, the JSON limits and the answer to an
    exception no handler took (``_failure``), as one ASGI layer.

    A JSON body (``application/json``, ``*+json``, or no content type, which FastAPI also
    parses as JSON) is read here, within the size limit, and refused with 400 when it nests
    deeper than ``jsonbody.MAX_JSON_DEPTH`` or is not UTF-8: FastAPI parses the bodies of
    pydantic parameters with ``json.loads`` before any route code runs, so here is the one
    place that covers them all. The routes that parse bodies themselves use
    ``jsonbody.parse_json_body``, which answers the same, whatever the content type.
    """

    def __init__(self, app: ASGIApp, max_body: int, body_limits: Sequence[BodyLimit] = ()) -> None:
        self.app = app
        self.max_body = max_body
        self.body_limits = tuple(body_limits)

    def _limit(self, scope: Scope) -> int:
        """The most a body of this request may have: its route's limit, else the process's."""
        method, path = scope.get("method", ""), scope.get("path", "")
        chosen = (limit for limit in self.body_limits if limit.applies(method, path))
        return next((limit.max_bytes for limit in chosen), self.max_body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status, started_response = 500, False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self._checked(scope, receive, send_with_id, headers)
        except Exception as exc:
            # Answered here, not re-raised: the server would log it a second time and close
            # the keep-alive connection, and its 500 would carry no request id.
            if not started_response:
                await _failure(exc)(scope, receive, send_with_id)
            else:
                log.exception("unhandled error after the response started")
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope.get("method", "")
            metrics.HTTP_REQUESTS.labels(method, path, str(status)).inc()
            metrics.HTTP_LATENCY.labels(method, path).observe(time.perf_counter() - started)
            request_id.reset(token)

    async def _checked(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]
    ) -> None:
        """The app, behind the body-size and JSON limits."""
        declared = headers.get(b"content-length")
        max_body = self._limit(scope)
        if declared is not None and declared.isdigit() and int(declared) > max_body:
            await _too_large(max_body)(scope, receive, send)
            return
        json_body = _is_json(headers.get(b"content-type"))
        if scope.get("method") in {"POST", "PUT", "PATCH"} and (declared is None or json_body):
            # A chunked body has no declared size, a JSON one a depth to check: read it here,
            # within the limit, and replay it.
            body = await _read_limited(receive, max_body)
            if body is None:
                await _too_large(max_body)(scope, receive, send)
                return
            refusal = _unreadable_json(body) if json_body else None
            if refusal is not None:
                await error_response(refusal)(scope, receive, send)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


async def _read_limited(receive: Receive, max_body: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _too_large(max_body: int) -> JSONResponse:
    return error_response(PayloadTooLarge(f"the request body is larger than {max_body} bytes"))


def _failure(exc: Exception) -> JSONResponse:
    """The answer for an exception no handler took: 503 for a database fault, else 500.

    Logged once here: a fault with its cause in a line, anything else with its traceback.
    """
    fault = database_fault(exc)
    if fault is None:
        log.exception("unhandled error")
        body = {"error": "internal_error", "message": "an internal error occurred"}
        return JSONResponse(body, status_code=500)
    log.warning("database unavailable", extra={"reason": fault.value, "error": describe(exc)})
    error = DatabaseUnavailable(
        f"{DESCRIPTIONS[fault]}; try again later",
        retry_after=RETRY_AFTER_SECONDS,
        reason=fault.value,
    )
    return error_response(error)


def _unreadable_json(body: bytes) -> BadRequest | None:
    """Why a JSON body cannot be read at all: nested too deep, or not UTF-8 (JSON is UTF-8,
    RFC 8259; FastAPI would answer its own, undocumented 400 for it). None when readable."""
    if nested_too_deep(body):
        return too_deep_error()
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return BadRequest("the JSON body is not UTF-8")
    return None


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

"""Apple's PassKit web service, exactly as devices call it under the pass's webServiceURL."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import metrics
from services.core.clock import clock
from services.core.db import Session, read_connection
from services.core.errors import BadRequest, NotFound, TooManyRequests, Unauthorized
from services.core.jsonbody import parse_json_body
from services.core.ratelimit import RateLimit
from services.core.settings import Settings
from services.passes import registrations
from services.passes.apple.pass_cache import CachedPass, PassCache
from services.passes.apple.pkpass import MEDIA_TYPE
from services.passes.bundles import SignedPass, cached_content
from services.passes.landing_on_a_device import card_landed
from services.passes.links import get_pass_builder, pkpass_response
from services.passes.models import Card

log = logging.getLogger("passpost.device_log")

router = APIRouter(prefix="/passkit/v1", tags=["PassKit web service"])

MAX_LOG_LINES = 50
MAX_LOG_LINE = 1000
REGISTRATION_PATH = "/devices/{device}/registrations/{pass_type}/{serial}"

APPLE_PASS = APIKeyHeader(
    name="Authorization",
    scheme_name="ApplePass",
    description="`Authorization: ApplePass <authenticationToken>`: the token in the pass",
    auto_error=False,
)
"""The PassKit web service's security scheme, as Apple's devices send it."""
Authorization = Annotated[str | None, Security(APPLE_PASS)]


def _shape(pattern: re.Pattern[str], max_length: int | None = None) -> dict[str, Any]:
    """The JSON schema of a string ``registrations`` holds to ``pattern`` (a full match)."""
    schema: dict[str, Any] = {"type": "string", "pattern": f"^{pattern.pattern}$"}
    return schema if max_length is None else {**schema, "maxLength": max_length}


DEVICE_SCHEMA = _shape(registrations.DEVICE_ID)
PASS_TYPE_SCHEMA = _shape(registrations.PASS_TYPE_ID, registrations.MAX_PASS_TYPE_LENGTH)
SERIAL_SCHEMA = _shape(registrations.SERIAL_NUMBER)
Device = Annotated[
    str, Path(description="deviceLibraryIdentifier", json_schema_extra=DEVICE_SCHEMA)
]
PassType = Annotated[
    str, Path(description="passTypeIdentifier", json_schema_extra=PASS_TYPE_SCHEMA)
]
Serial = Annotated[str, Path(description="serialNumber", json_schema_extra=SERIAL_SCHEMA)]

_device_errors: dict[int | str, dict[str, Any]] = {
    **BadRequest.openapi("Malformed path or body"),
    **Unauthorized.openapi("Missing or wrong ApplePass token"),
    **NotFound.openapi("Unknown pass or registration"),
}
_SERIALS_SCHEMA = {
    "type": "object",
    "properties": {
        "serialNumbers": {"type": "array", "items": {"type": "string"}},
        "lastUpdated": {"type": "string"},
    },
    "required": ["serialNumbers", "lastUpdated"],
}


async def json_object(request: Request) -> dict[str, Any]:
    body = parse_json_body(await request.body())
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


async def authorized_card(
    device: Device,
    pass_type: PassType,
    serial: Serial,
    session: Session,
    authorization: Authorization = None,
) -> Card:
    """The pass a registration path names, once the path and the ApplePass token check out."""
    registrations.check_path(device=device, pass_type=pass_type, serial=serial)
    card = await registrations.find_card(session, pass_type, serial)
    registrations.authenticate(card, authorization)
    return card


AuthorizedCard = Annotated[Card, Depends(authorized_card)]


_REGISTRATION_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"pushToken": _shape(registrations.PUSH_TOKEN)},
                "required": ["pushToken"],
            }
        }
    },
}


@dataclass(frozen=True)
class RegistrationFloods:
    """How often one card, and one device, may (un)register (``app.state``).

    Each may do it as often at once as it may have registrations (a card on all its devices
    at once; a device restored from a backup registering all its passes), then once a minute:
    a device registers a pass once, and again only when its push token changes. The counts
    are kept per process, in memory, after the pass's token was checked: nobody without it
    can use up a card's allowance.
    """

    per_card: RateLimit
    per_device: RateLimit

    @classmethod
    def of(cls, settings: Settings) -> RegistrationFloods:
        return cls(
            per_card=RateLimit(burst=settings.max_devices_per_card, per_second=1 / 60),
            per_device=RateLimit(burst=settings.max_passes_per_device, per_second=1 / 60),
        )

    def check(self, card: Card, device: str) -> None:
        wait = self.per_card.take(str(card.id)) or self.per_device.take(device)
        if wait is not None:
            metrics.REGISTRATIONS_REFUSED.inc()
            raise TooManyRequests("too many registrations; see Retry-After", retry_after=wait)


def _registration_limits(request: Request) -> registrations.RegistrationLimits:
    settings: Settings = request.app.state.settings
    return registrations.RegistrationLimits(
        devices_per_card=settings.max_devices_per_card,
        passes_per_device=settings.max_passes_per_device,
    )


_too_many = TooManyRequests.openapi(
    "Registered too often, or the pass (or the device) has all the registrations it may; "
    "see Retry-After"
)


@router.post(
    REGISTRATION_PATH,
    status_code=201,
    response_class=Response,
    responses={
        201: {"description": "Registered"},
        200: {"description": "Already registered"},
        **_device_errors,
        **_too_many,
    },
    openapi_extra={"requestBody": _REGISTRATION_BODY},
)
async def register_device(
    device: Device, card: AuthorizedCard, request: Request, session: Session
) -> Response:
    """Register a device to receive push notifications for a pass."""
    request.app.state.registration_floods.check(card, device)
    push_token = (await json_object(request)).get("pushToken")
    if not isinstance(push_token, str):
        raise BadRequest("pushToken is missing")
    limits = _registration_limits(request)
    created = await registrations.register(session, card, device, push_token, limits)
    if created:
        await card_landed(session, card, clock.now())
    return Response(status_code=201 if created else 200)


@router.delete(
    REGISTRATION_PATH,
    response_class=Response,
    responses={200: {"description": "Unregistered"}, **_device_errors, **_too_many},
)
async def unregister_device(
    device: Device, card: AuthorizedCard, request: Request, session: Session
) -> Response:
    """Stop pushes for a pass to a device."""
    request.app.state.registration_floods.check(card, device)
    await registrations.unregister(session, card, device)
    return Response(status_code=200)


def parameter(
    where: str, name: str, description: str, schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An OpenAPI parameter the endpoint reads from the request itself (see below)."""
    return {
        "in": where,
        "name": name,
        "required": where == "path",
        "description": description,
        "schema": schema or {"type": "string"},
    }


# The two calls every device makes after every push read their path, query and headers from
# the Request instead of declaring them: FastAPI's per-request parameter solving and
# validation was ~40% of a 304's CPU. The OpenAPI description keeps them through openapi_extra.


@router.get(
    "/devices/{device}/registrations/{pass_type}",
    response_class=Response,
    responses={
        200: {
            "description": "Serial numbers changed since the tag",
            "content": {"application/json": {"schema": _SERIALS_SCHEMA}},
        },
        204: {"description": "Nothing changed"},
        **BadRequest.openapi("Malformed path"),
    },
    openapi_extra={
        "parameters": [
            parameter("path", "device", "deviceLibraryIdentifier", DEVICE_SCHEMA),
            parameter("path", "pass_type", "passTypeIdentifier", PASS_TYPE_SCHEMA),
            parameter("query", "passesUpdatedSince", "lastUpdated of an earlier answer"),
        ]
    },
)
async def list_updated_passes(request: Request) -> Response:
    """The device's passes that changed after ``passesUpdatedSince`` (a tag we handed out)."""
    device: str = request.path_params["device"]
    pass_type: str = request.path_params["pass_type"]
    since = registrations.parse_tag(request.query_params.get("passesUpdatedSince"))
    registrations.check_path(device=device, pass_type=pass_type)
    async with read_connection(request) as connection:
        serials, last = await registrations.updated_serials(connection, device, pass_type, since)
    if not serials:
        return Response(status_code=204)
    # lastUpdated must be a JSON string: an integer there silently stops updates on devices.
    return JSONResponse({"serialNumbers": serials, "lastUpdated": str(last)})


@router.get(
    "/passes/{pass_type}/{serial}",
    response_class=Response,
    responses={
        200: {"content": {MEDIA_TYPE: {}}, "description": "The latest signed pass"},
        304: {"description": "Not modified since If-Modified-Since"},
        **Unauthorized.openapi("Missing or wrong ApplePass token"),
        **NotFound.openapi("Unknown pass"),
    },
    openapi_extra={
        "parameters": [
            parameter("path", "pass_type", "passTypeIdentifier", PASS_TYPE_SCHEMA),
            parameter("path", "serial", "serialNumber", SERIAL_SCHEMA),
            parameter("header", "If-Modified-Since", "Last-Modified of the device's copy"),
        ],
        "security": [{APPLE_PASS.scheme_name: []}],
    },
)
async def latest_pass(request: Request) -> Response:
    """The latest version of a pass, or 304 when the device has it already.

    Devices poll this after every push, mostly to hear 304: that answer needs four columns of
    the card, and a 200 adds only the bundle built for the card's current version; both are
    kept by the process (``pass_cache``), which forgets a card as soon as it changes.
    """
    pass_type: str = request.path_params["pass_type"]
    serial: str = request.path_params["serial"]
    cache: PassCache = request.app.state.pass_cache
    cached = cache.lookup(pass_type, serial) or await _read_pass_state(request, pass_type, serial)
    registrations.check_token(cached.token, request.headers.get("authorization"))
    state = cached.state
    since = request.headers.get("if-modified-since")
    if since == cached.last_modified or _not_modified(state.changed_at, since):
        return Response(status_code=304)
    content = cache.bundles.get(state.id, state.version)
    if content is None:
        async with read_connection(request) as connection:
            content = await cached_content(connection, state.id, state.version)
    if content is not None:
        cache.bundles.put(state.id, state.version, content)
        return pkpass_response(SignedPass(content, state.version, state.changed_at))
    signed = await _build_and_keep(request, pass_type, serial)
    cache.bundles.put(state.id, signed.version, signed.content)
    return pkpass_response(signed)


async def _read_pass_state(request: Request, pass_type: str, serial: str) -> CachedPass:
    """The card's ``PassState`` from the database, kept by the cache unless it raced a change."""
    try:
        registrations.check_path(pass_type=pass_type, serial=serial)
    except BadRequest:
        raise NotFound("no such pass") from None
    cache: PassCache = request.app.state.pass_cache
    ticket = cache.ticket()
    async with read_connection(request) as connection:
        state = await registrations.find_pass_state(connection, pass_type, serial)
    return cache.store(ticket, pass_type, serial, state)


async def _build_and_keep(request: Request, pass_type: str, serial: str) -> SignedPass:
    """A version no device fetched yet: built once, kept in a write transaction of its own."""
    builder = await get_pass_builder(request)
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session, session.begin():
        card = await registrations.find_card(session, pass_type, serial)
        return await builder.signed_pass(session, card)


def http_date(value: str | None) -> datetime | None:
    """An HTTP date with its zone (``If-Modified-Since``); anything else means none."""
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None


def _not_modified(changed_at: datetime, if_modified_since: str | None) -> bool:
    """Whether the device's copy is current."""
    since = http_date(if_modified_since)
    return since is not None and changed_at <= since


DEVICE_LOG_BURST = 10
DEVICE_LOG_PER_MINUTE = 10
"""How often one client address may log: anyone may call ``/log`` (it takes no credentials),
and a device has a problem to report now and then, not hundreds of times a minute."""


def device_log_limit() -> RateLimit:
    """The log endpoint's limit per client address (``app.state.device_log_limit``)."""
    return RateLimit(burst=DEVICE_LOG_BURST, per_second=DEVICE_LOG_PER_MINUTE / 60)


LOG_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"logs": {"type": "array", "items": {"type": "string"}}},
                "required": ["logs"],
            }
        }
    },
}


@router.post(
    "/log",
    response_class=Response,
    responses={
        200: {"description": "Logged"},
        **BadRequest.openapi("Malformed body"),
        **TooManyRequests.openapi("This address logged too often; see Retry-After"),
    },
    openapi_extra={"requestBody": LOG_BODY},
)
async def device_log(request: Request) -> Response:
    """Devices report problems with our passes here; the lines go to the service log, at most
    ``MAX_LOG_LINES`` lines a request and ``DEVICE_LOG_PER_MINUTE`` requests a minute from one
    address (more answer 429 and log nothing)."""
    limit: RateLimit = request.app.state.device_log_limit
    address = request.client.host if request.client is not None else "unknown"
    if (wait := limit.take(address)) is not None:
        metrics.DEVICE_LOG_REFUSED.inc()
        raise TooManyRequests("too many device logs from this address", retry_after=wait)
    logs = (await json_object(request)).get("logs")
    if not isinstance(logs, list) or not all(isinstance(line, str) for line in logs):
        raise BadRequest("logs must be a list of strings")
    for line in logs[:MAX_LOG_LINES]:
        log.warning("device log: %s", line[:MAX_LOG_LINE])
    if len(logs) > MAX_LOG_LINES:
        log.warning("device log: %d more lines dropped", len(logs) - MAX_LOG_LINES)
    return Response(status_code=200)

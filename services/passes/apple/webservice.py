"""Apple's PassKit web service, exactly as devices call it under the pass's webServiceURL."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from services.core.db import Session
from services.core.errors import BadRequest, NotFound, Unauthorized
from services.passes import registrations
from services.passes.apple.pkpass import MEDIA_TYPE
from services.passes.links import Builder, pkpass_response
from services.passes.models import Card

log = logging.getLogger("passpost.device_log")

router = APIRouter(prefix="/passkit/v1", tags=["PassKit web service"])

MAX_LOG_LINES = 50
MAX_LOG_LINE = 1000
REGISTRATION_PATH = "/devices/{device}/registrations/{pass_type}/{serial}"
Authorization = Annotated[str | None, Header()]

_device_errors: dict[int | str, dict[str, Any]] = {
    **BadRequest.openapi("Malformed path or body"),
    **Unauthorized.openapi("Missing or wrong ApplePass token"),
    **NotFound.openapi("Unknown pass or registration"),
}


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body must be JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


async def authorized_card(
    device: str,
    pass_type: str,
    serial: str,
    session: Session,
    authorization: Authorization = None,
) -> Card:
    """The pass a registration path names, once the path and the ApplePass token check out."""
    registrations.check_path(device=device, pass_type=pass_type, serial=serial)
    card = await registrations.find_card(session, pass_type, serial)
    registrations.authenticate(card, authorization)
    return card


AuthorizedCard = Annotated[Card, Depends(authorized_card)]


@router.post(
    REGISTRATION_PATH,
    status_code=201,
    responses={200: {"description": "Already registered"}, **_device_errors},
)
async def register_device(
    device: str, card: AuthorizedCard, request: Request, session: Session
) -> Response:
    """Register a device to receive push notifications for a pass."""
    push_token = (await _json_object(request)).get("pushToken")
    if not isinstance(push_token, str):
        raise BadRequest("pushToken is missing")
    created = await registrations.register(session, card, device, push_token)
    return Response(status_code=201 if created else 200)


@router.delete(REGISTRATION_PATH, responses=_device_errors)
async def unregister_device(device: str, card: AuthorizedCard, session: Session) -> Response:
    """Stop pushes for a pass to a device."""
    await registrations.unregister(session, card, device)
    return Response(status_code=200)


@router.get(
    "/devices/{device}/registrations/{pass_type}",
    responses={
        200: {"description": "Serial numbers changed since the tag"},
        204: {"description": "Nothing changed"},
        **BadRequest.openapi("Malformed path"),
    },
)
async def list_updated_passes(
    device: str,
    pass_type: str,
    session: Session,
    passes_updated_since: Annotated[str | None, Query(alias="passesUpdatedSince")] = None,
) -> Response:
    """The device's passes that changed after ``passesUpdatedSince`` (a tag we handed out)."""
    registrations.check_path(device=device, pass_type=pass_type)
    serials, last = await registrations.updated_serials(
        session, device, pass_type, registrations.parse_tag(passes_updated_since)
    )
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
)
async def latest_pass(
    pass_type: str,
    serial: str,
    session: Session,
    builder: Builder,
    authorization: Authorization = None,
    if_modified_since: Annotated[str | None, Header()] = None,
) -> Response:
    """The latest version of a pass, or 304 when the device has it already."""
    try:
        registrations.check_path(pass_type=pass_type, serial=serial)
    except BadRequest:
        raise NotFound("no such pass") from None
    card = await registrations.find_card(session, pass_type, serial)
    registrations.authenticate(card, authorization)
    since = _http_date(if_modified_since)
    if since is not None and card.changed_at <= since:
        return Response(status_code=304)
    return pkpass_response(await builder.signed_pass(session, card))


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None


@router.post("/log", responses=BadRequest.openapi("Malformed body"))
async def device_log(request: Request) -> Response:
    """Devices report problems with our passes here; the lines go to the service log."""
    logs = (await _json_object(request)).get("logs")
    if not isinstance(logs, list):
        raise BadRequest("logs must be a list of strings")
    for line in logs[:MAX_LOG_LINES]:
        log.warning("device log: %s", str(line)[:MAX_LOG_LINE])
    if len(logs) > MAX_LOG_LINES:
        log.warning("device log: %d more lines dropped", len(logs) - MAX_LOG_LINES)
    return Response(status_code=200)

"""Google Wallet's save and delete callbacks, verified before they change anything."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.core.db import Session
from services.core.errors import BadRequest, ErrorBody, NotConfigured, Unauthorized
from services.core.jsonbody import NestedTooDeep, parse_json_body
from services.core.web import AppSettings
from services.integrations.google_wallet.callbacks import (
    CALLBACK_PATH,
    InvalidCallback,
    root_keys_from_json,
    verify_callback,
)
from services.merchants.google_wallet import issuer_is_ours
from services.push.google import apply_callback

log = logging.getLogger(__name__)

router = APIRouter(tags=["Google Wallet callbacks"])


@lru_cache(maxsize=4)
def _root_keys(path: Path, _mtime: int) -> list[dict[str, Any]]:
    return root_keys_from_json(path.read_bytes())


def root_keys(path: Path | None) -> list[dict[str, Any]]:
    if path is None:
        raise NotConfigured(
            "PASSPOST_GOOGLE_ROOT_KEYS_FILE is not set: callbacks cannot be checked"
        )
    try:
        return _root_keys(path, path.stat().st_mtime_ns)
    except (OSError, ValueError) as exc:
        raise NotConfigured(f"PASSPOST_GOOGLE_ROOT_KEYS_FILE ({path}): {exc}") from None


RETRY_AFTER_SECONDS = 600
"""What a callback that cannot be checked is told: Google retries callbacks (best effort), so
one that comes while the root keys are missing still counts once ops have set them."""
_reported: set[str] = set()


def _unverifiable(error: NotConfigured) -> JSONResponse:
    """503 with ``Retry-After``; the cause is logged once per process, not once per callback
    (Google's retries, or anyone's posts, would flood the log with it)."""
    if error.message not in _reported:
        _reported.add(error.message)
        log.error("Google Wallet callbacks refused until fixed: %s", error.message)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return JSONResponse(error.to_dict(), status_code=error.status_code, headers=headers)


def _read(body: bytes) -> tuple[dict[str, Any], str]:
    """The envelope, and the issuer its (not yet verified) message names; the signature then
    covers it. Both levels are parsed with the depth limit: too deep is a 400 as everywhere,
    anything else unreadable is not a signed callback."""
    unsigned = Unauthorized("not a signed Google Wallet callback")
    try:
        envelope = parse_json_body(body)
        signed_message = envelope.get("signedMessage") if isinstance(envelope, dict) else None
        if not isinstance(signed_message, str):
            raise unsigned
        message = parse_json_body(signed_message)
    except NestedTooDeep:
        raise
    except BadRequest:
        raise unsigned from None
    class_id = message.get("classId") if isinstance(message, dict) else None
    if class_id is None:
        raise unsigned
    return envelope, str(class_id).split(".", 1)[0]


CALLBACK_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": "Google's ECv2SigningOnly envelope",
                "properties": {
                    "signature": {"type": "string"},
                    "intermediateSigningKey": {
                        "type": "object",
                        "properties": {
                            "signedKey": {"type": "string"},
                            "signatures": {"type": "array", "items": {"type": "string"}},
                        },
                        "required": ["signedKey", "signatures"],
                    },
                    "protocolVersion": {"type": "string", "enum": ["ECv2SigningOnly"]},
                    "signedMessage": {"type": "string"},
                },
                "required": [
                    "signature",
                    "intermediateSigningKey",
                    "protocolVersion",
                    "signedMessage",
                ],
            }
        }
    },
}


@router.post(
    CALLBACK_PATH,
    responses={
        **BadRequest.openapi("JSON nested too deep"),
        **Unauthorized.openapi("Unsigned or badly signed"),
        503: {
            "description": "PASSPOST_GOOGLE_ROOT_KEYS_FILE is unset or unreadable: try again later",
            "model": ErrorBody,
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        },
    },
    openapi_extra={"requestBody": CALLBACK_BODY},
)
async def google_callback(request: Request, session: Session, settings: AppSettings) -> Response:
    """Google tells us a card was saved to or deleted from Google Wallet."""
    envelope, issuer = _read(await request.body())
    try:
        keys = root_keys(settings.google_root_keys_file)
    except NotConfigured as exc:
        return _unverifiable(exc)
    try:
        event = verify_callback(envelope, root_keys=keys, issuer_id=issuer)
    except InvalidCallback as exc:
        raise Unauthorized(f"callback rejected: {exc}") from None
    if not event.object_id.startswith(f"{issuer}.") or not await issuer_is_ours(session, issuer):
        raise Unauthorized("callback rejected: not for an issuer and object of ours")
    applied = await apply_callback(session, event.object_id, event.event_type, event.nonce)
    log.info(
        "Google Wallet callback",
        extra={"event": event.event_type, "object": event.object_id, "duplicate": not applied},
    )
    return Response(status_code=200)

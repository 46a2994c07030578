"""Google Wallet's save and delete callbacks, verified before they change anything."""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response

from services.core.db import Session
from services.core.errors import NotConfigured, Unauthorized
from services.core.web import AppSettings
from services.integrations.google_wallet.callbacks import (
    CALLBACK_PATH,
    InvalidCallback,
    root_keys_from_json,
    verify_callback,
)
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


def _issuer_of(body: bytes) -> str:
    """The issuer the (not yet verified) message names; the signature then covers it."""
    try:
        class_id = json.loads(json.loads(body)["signedMessage"])["classId"]
        return str(class_id).split(".", 1)[0]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise Unauthorized("not a signed Google Wallet callback") from None


@router.post(
    CALLBACK_PATH,
    responses={**Unauthorized.openapi("Unsigned or badly signed"), **NotConfigured.openapi()},
)
async def google_callback(request: Request, session: Session, settings: AppSettings) -> Response:
    """Google tells us a card was saved to or deleted from Google Wallet."""
    body = await request.body()
    keys = root_keys(settings.google_root_keys_file)
    try:
        event = verify_callback(body, root_keys=keys, issuer_id=_issuer_of(body))
    except InvalidCallback as exc:
        raise Unauthorized(f"callback rejected: {exc}") from None
    applied = await apply_callback(session, event.object_id, event.event_type, event.nonce)
    log.info(
        "Google Wallet callback",
        extra={"event": event.event_type, "object": event.object_id, "duplicate": not applied},
    )
    return Response(status_code=200)

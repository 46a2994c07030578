"""Who may call the admin API (``/admin/v1``): the bearer of the admin token.

Each service that owns something ops administer mounts its own admin routes under the same
prefix with ``admin_router()``: the registry's (merchants, keys) in ``services/admin``, the
passes service's (designs, cards) in ``services/passes/admin.py``.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Header

from services.core.errors import Unauthorized
from services.core.settings import Settings
from services.core.web import AppSettings


def require_admin(
    settings: AppSettings, authorization: Annotated[str | None, Header()] = None
) -> Settings:
    expected = settings.resolved_admin_token()
    scheme, _, given = (authorization or "").partition(" ")
    if (
        expected is None
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(given.strip().encode(), expected.encode())
    ):
        raise Unauthorized("send Authorization: Bearer <admin token>")
    return settings


AdminSettings = Annotated[Settings, Depends(require_admin)]


def admin_router() -> APIRouter:
    """Routes under ``/admin/v1``, each refused without the admin token."""
    return APIRouter(
        prefix="/admin/v1",
        tags=["admin"],
        dependencies=[Depends(require_admin)],
        responses=Unauthorized.openapi(),
    )

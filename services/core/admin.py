"""Who may call the admin API (``/admin/v1``): the bearer of the admin token.

Each service that owns something ops administer mounts its own admin routes under the same
prefix with ``admin_router()``: the registry's (merchants, keys) in ``services/admin``, the
passes service's (designs, cards) in ``services/passes/admin.py``.
"""

from __future__ import annotations

import hmac
from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, Depends, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.core.errors import Unauthorized
from services.core.settings import Settings
from services.core.web import AppSettings

ADMIN_TOKEN = HTTPBearer(
    scheme_name="AdminToken",
    description="`Authorization: Bearer <admin token>` (`PASSPOST_ADMIN_TOKEN`)",
    auto_error=False,
)
"""The admin API's security scheme: the OpenAPI description names it on every admin route."""


def require_admin(
    settings: AppSettings,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(ADMIN_TOKEN)],
) -> Settings:
    expected = settings.resolved_admin_token()
    if (
        expected is None
        or credentials is None
        or not hmac.compare_digest(credentials.credentials.strip().encode(), expected.encode())
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


def admin_file(settings: Settings, path: str, *, field: tuple[str, ...]) -> str:
    """``path`` resolved inside the admin files directory (``PASSPOST_ADMIN_FILES_DIR``), or a
    422 naming ``field``: whoever holds the admin token must not make the server read, or
    report on, any file it can (``/etc/shadow`` as a certificate, say).

    A relative path is taken within the directory. ``..`` is refused outright; symlinks are
    followed, so one pointing out of the directory is refused too.
    """
    root = settings.resolved_admin_files_dir
    if ".." in PurePath(path).parts:
        problem = "may not contain '..'"
    elif not (resolved := (root / path).resolve()).is_relative_to(root):
        problem = f"must be a file in {root} (PASSPOST_ADMIN_FILES_DIR)"
    else:
        return str(resolved)
    raise RequestValidationError(
        [{"loc": field, "msg": f"the file {problem}", "type": "value_error", "input": path}]
    )

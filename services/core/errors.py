"""Typed domain errors, mapped to HTTP in one place."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic_core import ErrorDetails
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """What every error answer looks like."""

    error: str
    message: str
    details: dict[str, Any] | None = None


class PasspostError(Exception):
    """Base of every error we raise on purpose; ``status_code`` is its HTTP meaning."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    @classmethod
    def openapi(cls, description: str | None = None) -> dict[int | str, dict[str, Any]]:
        """A ``responses=`` entry for a route that can raise this error."""
        return {cls.status_code: {"description": description or cls.code, "model": ErrorBody}}


class BadRequest(PasspostError):
    status_code = 400
    code = "bad_request"


class Unauthorized(PasspostError):
    status_code = 401
    code = "unauthorized"


class NotFound(PasspostError):
    status_code = 404
    code = "not_found"


class Conflict(PasspostError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(PasspostError):
    status_code = 413
    code = "payload_too_large"


class RetryLater(PasspostError):
    """An error the same request may not meet later: ``retry_after`` (seconds) goes out as
    ``Retry-After``."""

    def __init__(self, message: str, *, retry_after: int, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class TooManyRequests(RetryLater):
    """A client asked too often."""

    status_code = 429
    code = "too_many_requests"


class DatabaseUnavailable(RetryLater):
    """The database cannot serve now (``core/dbfaults.py``): the request may succeed later."""

    status_code = 503
    code = "database_unavailable"


class InvalidInput(PasspostError):
    status_code = 422
    code = "invalid_input"


class NotConfigured(PasspostError):
    """A merchant's setting or file is missing or unusable; ops must fix the configuration."""

    status_code = 503
    code = "not_configured"


def validation_errors(errors: Sequence[ErrorDetails]) -> list[dict[str, str]]:
    """Each of pydantic's errors as ``{"path": "a.b.0", "message": ...}``, the form we answer."""
    return [
        {"path": ".".join(str(p) for p in err.get("loc", ())), "message": err.get("msg", "")}
        for err in errors
    ]


def invalid_body(message: str, errors: Sequence[ErrorDetails]) -> dict[str, Any]:
    """The body of a 422 for input that failed validation: one shape for every endpoint."""
    return {"error": InvalidInput.code, "message": message, "errors": validation_errors(errors)}


@contextmanager
def named_by_caller() -> Iterator[None]:
    """Files a caller has just named are their input: unusable ones are a 422, not a 503.

    The same check on stored settings stays a 503: there ops, not the caller, must act.
    """
    try:
        yield
    except NotConfigured as exc:
        raise InvalidInput(exc.message, **exc.details) from None


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes at this path.

    Starlette's 405 names only the methods of the first route whose path matched, though
    another route may serve the same path with other methods (``GET`` and ``POST /merchants``).
    Each method is tried against the app's routes as Starlette routes it (included routers too).
    """
    routes = request.app.router.routes
    return [
        method
        for method in HTTP_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes
        )
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PasspostError)
    async def _domain_error(_request: Request, exc: PasspostError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("request failed: %s", exc.message, extra={"error": exc.code})
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(invalid_body("the request is invalid", exc.errors()), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        body = {"error": code, "message": str(exc.detail)}
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return JSONResponse(body, status_code=exc.status_code, headers=headers)


def error_response(exc: PasspostError) -> JSONResponse:
    """The answer for one of our errors, with the headers its status asks for."""
    headers = None
    if isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, RetryLater):
        headers = {"Retry-After": str(exc.retry_after)}
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=headers)

"""The Google Wallet REST API (walletobjects v1) for Loyalty classes and objects, over httpx.

Every card change PATCHes its object; a PATCH answering 404 inserts it, and an insert answering
409 (someone inserted it meanwhile) patches again. 429, 5xx and unanswered requests are retried
with exponential backoff and full jitter; 400, 403, 404 and 409 are answers, raised at once as a
``GoogleWalletError`` carrying Google's own message and reason.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from services.integrations.google_wallet.auth import TokenRequestError
from services.integrations.google_wallet.objects import WalletMessage, add_message_request

DEFAULT_API_URL = "https://walletobjects.googleapis.com/walletobjects/v1"

ID_SUFFIX = re.compile(r"[A-Za-z0-9._-]+")
RESOURCE_ID = re.compile(r"[0-9]+\.[A-Za-z0-9._-]+")
# Failures that happen before the request leaves: retrying them cannot apply it twice.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def object_id(issuer_id: str, suffix: str) -> str:
    """A class or object id, ``<issuerId>.<suffix>``, in the characters Google allows."""
    if not issuer_id.isascii() or not issuer_id.isdigit():
        raise ValueError("a Google Wallet issuer id is a number")
    if not ID_SUFFIX.fullmatch(suffix):
        raise ValueError("an id suffix may hold only letters, digits, '.', '_' and '-'")
    return f"{issuer_id}.{suffix}"


def _checked_id(resource_id: str) -> str:
    if not RESOURCE_ID.fullmatch(resource_id):
        raise ValueError("not a Google Wallet id (<issuerId>.<suffix>)")
    return resource_id


class GoogleWalletError(Exception):
    """An error answer (or no answer: ``status`` 0) from the Wallet API or its token endpoint."""

    def __init__(
        self,
        status: int,
        message: str,
        reasons: tuple[str, ...] = (),
        google_status: str | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.reasons = reasons
        self.google_status = google_status
        label = f"{status} {self.reason}" if self.reason else str(status)
        super().__init__(f"Google Wallet API {label}: {message}")

    @property
    def reason(self) -> str | None:
        """Google's reason code for the first error, e.g. ``quotaExceeded`` or ``notFound``."""
        return self.reasons[0] if self.reasons else None

    @property
    def quota_exceeded(self) -> bool:
        """A notification beyond Google's budget (3 per pass per 24 h): send it as plain TEXT."""
        return self.status == 403 and "quotaExceeded" in self.reasons

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status == 429 or self.status >= 500

    @classmethod
    def from_response(cls, response: httpx.Response) -> GoogleWalletError:
        """Google's error shape: ``{"error": {"code", "message", "errors": [{"reason"}], ...}}``;
        APIs on the newer shape put the reason in a ``google.rpc.ErrorInfo`` detail instead."""
        fallback = response.reason_phrase or f"HTTP {response.status_code}"
        try:
            body = response.json()
        except ValueError:
            return cls(response.status_code, fallback)
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return cls(response.status_code, fallback)
        message = error.get("message")
        status = error.get("status")
        reasons = [
            item["reason"]
            for item in _dicts(error.get("errors"))
            if isinstance(item.get("reason"), str)
        ]
        reasons += [
            item["reason"]
            for item in _dicts(error.get("details"))
            if str(item.get("@type", "")).endswith("google.rpc.ErrorInfo")
            and isinstance(item.get("reason"), str)
        ]
        return cls(
            response.status_code,
            message if isinstance(message, str) and message else fallback,
            tuple(reasons),
            status if isinstance(status, str) else None,
        )


def _dicts(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


class TokenSource(Protocol):
    """Where the client gets its bearer token (``AccessTokens`` in production)."""

    async def token(self) -> str: ...

    def invalidate(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries: ``attempts`` in all, waits drawn from 0..base*2^n capped at max."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, retry: int) -> float:
        """Full jitter: spreads the retries of many callers hit by the same outage."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return random.uniform(0, ceiling)  # noqa: S311 (timing, not security)


class GoogleWalletClient:
    """Loyalty classes and objects of one issuer, authenticated by one ``TokenSource``."""

    def __init__(
        self,
        tokens: TokenSource,
        *,
        http: httpx.AsyncClient | None = None,
        base_url: str = DEFAULT_API_URL,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._tokens = tokens
        self._http = http if http is not None else httpx.AsyncClient(timeout=10.0)
        self._owns_http = http is None
        self._base_url = base_url.rstrip("/")
        self._retry = retry or RetryPolicy()
        self._sleep = sleep

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> GoogleWalletClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def get_class(self, class_id: str) -> dict[str, Any]:
        return await self._call("GET", f"loyaltyClass/{_checked_id(class_id)}")

    async def insert_class(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "loyaltyClass", body)

    async def patch_class(self, class_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("PATCH", f"loyaltyClass/{_checked_id(class_id)}", body)

    async def upsert_class(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update the class named by ``body["id"]``."""
        return await self._upsert("loyaltyClass", body)

    async def get_object(self, object_id: str) -> dict[str, Any]:
        return await self._call("GET", f"loyaltyObject/{_checked_id(object_id)}")

    async def insert_object(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "loyaltyObject", body)

    async def patch_object(self, object_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("PATCH", f"loyaltyObject/{_checked_id(object_id)}", body)

    async def upsert_object(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update the object named by ``body["id"]``."""
        return await self._upsert("loyaltyObject", body)

    async def add_message(
        self, object_id: str, message: WalletMessage, *, notify: bool
    ) -> dict[str, Any]:
        """Add a message to the object; ``notify`` also shows it as a notification (and spends
        one of the pass's 3 per 24 h: beyond that the error has ``quota_exceeded``).

        Never resent once it may have reached Google: a second copy would notify twice.
        """
        return await self._call(
            "POST",
            f"loyaltyObject/{_checked_id(object_id)}/addMessage",
            add_message_request(message, notify=notify),
            idempotent=False,
        )

    async def _upsert(self, collection: str, body: Mapping[str, Any]) -> dict[str, Any]:
        path = f"{collection}/{_checked_id(str(body.get('id', '')))}"
        try:
            return await self._call("PATCH", path, body)
        except GoogleWalletError as exc:
            if exc.status != 404:
                raise
        try:
            return await self._call("POST", collection, body)
        except GoogleWalletError as exc:
            if exc.status != 409:
                raise
        return await self._call("PATCH", path, body)

    async def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        """One API call with bounded retries. A POST insert counts as idempotent: sent twice,
        the second answers 409, which the upsert turns into a PATCH."""
        url = f"{self._base_url}/{path}"
        token_renewed = False
        attempt = 0
        while True:
            attempt += 1
            try:
                token = await self._tokens.token()
                response = await self._http.request(
                    method, url, json=body, headers={"Authorization": f"Bearer {token}"}
                )
            except TokenRequestError as exc:
                error = GoogleWalletError(exc.status, str(exc), (exc.error,))
            except httpx.TransportError as exc:
                error = GoogleWalletError(0, f"no answer ({type(exc).__name__})")
                if not idempotent and not isinstance(exc, NOT_SENT):
                    raise error from exc
            else:
                if response.status_code == 401 and not token_renewed:
                    # Revoked or expired early: one fresh token, not counted as an attempt.
                    self._tokens.invalidate()
                    token_renewed = True
                    attempt -= 1
                    continue
                if response.is_success:
                    return _response_object(response)
                error = GoogleWalletError.from_response(response)
            if not error.retryable or attempt >= self._retry.attempts:
                raise error
            await self._sleep(self._retry.delay(attempt))


def _response_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise GoogleWalletError(response.status_code, "the answer is not a JSON object")
    return body

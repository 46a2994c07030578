"""OAuth access tokens for the Google Wallet API from a merchant's service account key.

google-auth signs the JWT assertion (RFC 7523) but has no httpx transport, so the exchange at the
key file's ``token_uri`` is ours. One token serves every caller until shortly before it expires;
concurrent callers wait for a single refresh instead of each asking for a token of its own.
Neither the key nor a token is ever logged or put in an error message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt
from google.auth import jwt as google_jwt

log = logging.getLogger(__name__)

WALLET_SCOPE = "https://www.googleapis.com/auth/wallet_object.issuer"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 3600
DEFAULT_REFRESH_MARGIN_SECONDS = 300.0


class InvalidServiceAccount(ValueError):
    """The key file is not a usable service account key (the message never quotes the key)."""


class TokenRequestError(Exception):
    """The token endpoint refused or could not be reached; ``status`` 0 means no answer."""

    def __init__(self, status: int, error: str, description: str | None = None) -> None:
        self.status = status
        self.error = error
        self.description = description
        detail = f"{error}: {description}" if description else error
        super().__init__(f"token endpoint answered {status}: {detail}")


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The parts of a service account key file that we use, checked once when loaded."""

    client_email: str
    token_uri: str
    private_key_id: str | None
    private_key: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def from_file(cls, path: str | Path) -> ServiceAccount:
        try:
            info = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidServiceAccount(f"cannot read service account key file {path}") from exc
        if not isinstance(info, dict):
            raise InvalidServiceAccount("a service account key file holds a JSON object")
        return cls.from_info(info)

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> ServiceAccount:
        if info.get("type") != "service_account":
            raise InvalidServiceAccount('the key file\'s "type" is not "service_account"')
        for name in ("client_email", "private_key", "token_uri"):
            if not isinstance(info.get(name), str) or not info[name]:
                raise InvalidServiceAccount(f'the key file has no "{name}"')
        key_id = info.get("private_key_id")
        if key_id is not None and not isinstance(key_id, str):
            raise InvalidServiceAccount('the key file\'s "private_key_id" is not a string')
        pem: str = info["private_key"]
        try:
            key = serialization.load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            # The library's message could describe the key material: keep our own.
            raise InvalidServiceAccount("the key file's private key cannot be read") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise InvalidServiceAccount("the key file's private key is not an RSA key")
        return cls(
            client_email=info["client_email"],
            token_uri=info["token_uri"],
            private_key_id=key_id or None,
            private_key=key,
        )


class AccessTokens:
    """Access tokens for one service account, cached and refreshed ``refresh_margin`` early."""

    def __init__(
        self,
        account: ServiceAccount,
        *,
        http: httpx.AsyncClient | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._account = account
        # google-auth leaves its signer and ``jwt.encode`` unannotated.
        self._signer = crypt.RSASigner(  # type: ignore[no-untyped-call]
            account.private_key, account.private_key_id
        )
        self._http = http if http is not None else httpx.AsyncClient(timeout=10.0)
        self._owns_http = http is None
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self._refreshes = 0

    @property
    def refreshes(self) -> int:
        """How many tokens were fetched from the token endpoint (for tests and metrics)."""
        return self._refreshes

    async def token(self) -> str:
        """A token valid for at least the refresh margin; at most one refresh at a time."""
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        async with self._lock:
            # Whoever waited for the lock finds the token the previous holder fetched.
            if self._token is None or self._clock() >= self._refresh_at:
                await self._refresh()
            assert self._token is not None
            return self._token

    def invalidate(self) -> None:
        """Forget the token, e.g. after the API answered 401 to it."""
        self._token = None

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def _refresh(self) -> None:
        issued_at = self._clock()
        try:
            response = await self._http.post(
                self._account.token_uri,
                data={"grant_type": JWT_BEARER_GRANT, "assertion": self._assertion(issued_at)},
                headers={"Accept": "application/json"},
            )
        except httpx.TransportError as exc:
            raise TokenRequestError(0, type(exc).__name__) from exc
        body = _json_object(response)
        if response.status_code != 200:
            error = body.get("error")
            description = body.get("error_description")
            raise TokenRequestError(
                response.status_code,
                error if isinstance(error, str) else response.reason_phrase or "error",
                description if isinstance(description, str) else None,
            )
        token = body.get("access_token")
        lifetime = body.get("expires_in", ASSERTION_LIFETIME_SECONDS)
        if not isinstance(token, str) or not token or not isinstance(lifetime, int | float):
            raise TokenRequestError(response.status_code, "malformed token response")
        self._token = token
        # A margin longer than half the lifetime would refresh on nearly every call.
        self._refresh_at = issued_at + lifetime - min(self._refresh_margin, lifetime / 2)
        self._refreshes += 1
        log.debug(
            "fetched a Google Wallet access token",
            extra={"service_account": self._account.client_email, "expires_in": lifetime},
        )

    def _assertion(self, issued_at: float) -> str:
        iat = int(issued_at)
        claims = {
            "iss": self._account.client_email,
            "scope": WALLET_SCOPE,
            "aud": self._account.token_uri,
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME_SECONDS,
        }
        assertion: bytes = google_jwt.encode(self._signer, claims)  # type: ignore[no-untyped-call]
        return assertion.decode("ascii")


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}

"""Google Wallet test kit: a throwaway service account, a fake clock, and the Wallet API mocked
with respx, every request body checked against Google's published walletobjects schema."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import respx

from services.integrations.google_wallet.auth import AccessTokens, ServiceAccount
from services.integrations.google_wallet.client import (
    DEFAULT_API_URL,
    GoogleWalletClient,
    RetryPolicy,
)
from tests.integrations.google_wallet.schema import request_schema, validate

TOKEN_URI = "https://oauth2.googleapis.com/token"
ISSUER_ID = "3388000000012345678"
ACCESS_TOKEN = "ya29.test-access-token"


@pytest.fixture(scope="session")
def service_account(service_account_info: dict[str, str]) -> ServiceAccount:
    return ServiceAccount.from_info(service_account_info)


class FakeClock:
    """Seconds since the epoch, moved by hand."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@dataclass
class Sleeps:
    """Stands in for ``asyncio.sleep`` and records the backoff delays asked for."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class WalletApi:
    """walletobjects v1 under respx. ``answer`` queues responses for one method and path; each
    request is checked for our bearer token and its body against Google's schema."""

    def __init__(self, router: respx.MockRouter) -> None:
        self.router = router
        self.token_route = router.post(TOKEN_URI).mock(
            return_value=httpx.Response(
                200,
                json={"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"},
            )
        )
        self.requests: list[httpx.Request] = []

    def answer(self, method: str, path: str, *responses: httpx.Response) -> respx.Route:
        """Queue ``responses`` for ``method path``; the last one repeats."""
        queue = list(responses)
        schema = request_schema(method, path)

        def respond(request: httpx.Request) -> httpx.Response:
            assert request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
            if schema is not None:
                validate(schema, json.loads(request.content))
            self.requests.append(request)
            return queue.pop(0) if len(queue) > 1 else queue[0]

        return self.router.route(method=method, url=f"{DEFAULT_API_URL}/{path}").mock(
            side_effect=respond
        )

    def bodies(self) -> list[tuple[str, str, Any]]:
        """(method, path, JSON body or None) of every API request, in order."""
        prefix = DEFAULT_API_URL + "/"
        return [
            (
                request.method,
                str(request.url).removeprefix(prefix),
                json.loads(request.content) if request.content else None,
            )
            for request in self.requests
        ]


@pytest.fixture
def wallet_api() -> Iterator[WalletApi]:
    # Anything not mocked fails: no test reaches Google.
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield WalletApi(router)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def wallet_client(
    service_account: ServiceAccount, wallet_api: WalletApi, sleeps: Sleeps
) -> AsyncIterator[GoogleWalletClient]:
    async with httpx.AsyncClient() as http:
        tokens = AccessTokens(service_account, http=http)
        yield GoogleWalletClient(
            tokens, http=http, retry=RetryPolicy(attempts=4, base_delay=1.0), sleep=sleeps
        )


def google_error(
    status: int, message: str, reason: str, google_status: str | None = None
) -> httpx.Response:
    """Google's error body, as the Wallet API sends it."""
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "errors": [{"message": message, "domain": "walletobjects", "reason": reason}],
    }
    if google_status is not None:
        error["status"] = google_status
    return httpx.Response(status, json={"error": error})

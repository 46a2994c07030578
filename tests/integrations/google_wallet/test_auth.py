"""Access tokens: one refresh for many callers, refreshed before expiry, never leaked."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.integrations.google_wallet.auth import (
    WALLET_SCOPE,
    AccessTokens,
    InvalidServiceAccount,
    ServiceAccount,
    TokenRequestError,
)
from tests.integrations.google_wallet.conftest import ACCESS_TOKEN, TOKEN_URI, FakeClock, WalletApi


async def test_the_assertion_is_signed_by_the_service_account_for_the_wallet_scope(
    service_account: ServiceAccount, wallet_api: WalletApi, clock: FakeClock
) -> None:
    async with httpx.AsyncClient() as http:
        tokens = AccessTokens(service_account, http=http, clock=clock)
        assert await tokens.token() == ACCESS_TOKEN

    form = parse_qs(wallet_api.token_route.calls.last.request.content.decode())
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    assertion = form["assertion"][0]
    assert jwt.get_unverified_header(assertion)["kid"] == service_account.private_key_id
    claims = jwt.decode(
        assertion,
        service_account.private_key.public_key(),
        algorithms=["RS256"],
        audience=TOKEN_URI,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iss"] == service_account.client_email
    assert claims["scope"] == WALLET_SCOPE
    assert claims["iat"] == int(clock.now)
    assert claims["exp"] == claims["iat"] + 3600


async def test_many_concurrent_callers_share_one_refresh(
    service_account: ServiceAccount, wallet_api: WalletApi
) -> None:
    async def slow_token_endpoint(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.02)  # every caller arrives while the refresh is under way
        return httpx.Response(200, json={"access_token": ACCESS_TOKEN, "expires_in": 3599})

    wallet_api.token_route.mock(side_effect=slow_token_endpoint)
    async with httpx.AsyncClient() as http:
        tokens = AccessTokens(service_account, http=http)
        results = await asyncio.gather(*(tokens.token() for _ in range(50)))
        assert await tokens.token() == ACCESS_TOKEN

    assert set(results) == {ACCESS_TOKEN}
    assert wallet_api.token_route.call_count == 1
    assert tokens.refreshes == 1


async def test_the_token_is_refreshed_five_minutes_before_it_expires(
    service_account: ServiceAccount, wallet_api: WalletApi, clock: FakeClock
) -> None:
    wallet_api.token_route.mock(
        side_effect=[
            httpx.Response(200, json={"access_token": "first", "expires_in": 3600}),
            httpx.Response(200, json={"access_token": "second", "expires_in": 3600}),
        ]
    )
    async with httpx.AsyncClient() as http:
        tokens = AccessTokens(service_account, http=http, clock=clock)
        start = clock.now
        assert await tokens.token() == "first"
        clock.now = start + 3600 - 301
        assert await tokens.token() == "first"
        clock.now = start + 3600 - 300
        assert await tokens.token() == "second"
        assert await tokens.token() == "second"

    assert tokens.refreshes == 2


async def test_an_invalidated_token_is_fetched_again(
    service_account: ServiceAccount, wallet_api: WalletApi
) -> None:
    async with httpx.AsyncClient() as http:
        tokens = AccessTokens(service_account, http=http)
        await tokens.token()
        tokens.invalidate()
        await tokens.token()

    assert tokens.refreshes == 2


async def test_a_refused_assertion_is_reported_without_the_assertion(
    service_account: ServiceAccount, wallet_api: WalletApi, caplog: pytest.LogCaptureFixture
) -> None:
    wallet_api.token_route.mock(
        return_value=httpx.Response(
            400, json={"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        )
    )
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient() as http:
        tokens = AccessTokens(service_account, http=http)
        with pytest.raises(TokenRequestError) as raised:
            await tokens.token()

    assert raised.value.status == 400
    assert raised.value.error == "invalid_grant"
    assert str(raised.value) == "token endpoint answered 400: invalid_grant: Invalid JWT Signature."
    assertion = parse_qs(wallet_api.token_route.calls.last.request.content.decode())["assertion"]
    assert assertion[0] not in caplog.text
    assert tokens.refreshes == 0


async def test_a_token_endpoint_out_of_reach_is_status_zero(
    service_account: ServiceAccount, wallet_api: WalletApi
) -> None:
    wallet_api.token_route.mock(side_effect=httpx.ConnectError("connection refused"))
    async with httpx.AsyncClient() as http:
        with pytest.raises(TokenRequestError) as raised:
            await AccessTokens(service_account, http=http).token()

    assert raised.value.status == 0


async def test_tokens_are_never_logged(
    service_account: ServiceAccount, wallet_api: WalletApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient() as http:
        await AccessTokens(service_account, http=http).token()

    assert ACCESS_TOKEN not in caplog.text
    assert "PRIVATE KEY" not in caplog.text
    assert "PRIVATE KEY" not in repr(service_account)


def test_a_key_file_loads(service_account_info: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(service_account_info))
    account = ServiceAccount.from_file(path)
    assert account.client_email == service_account_info["client_email"]
    assert account.token_uri == TOKEN_URI
    assert account.private_key_id == service_account_info["private_key_id"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "authorized_user"}, "type"),
        ({"client_email": None}, "client_email"),
        ({"token_uri": ""}, "token_uri"),
        ({"private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, "read"),
        ({"private_key_id": 7}, "private_key_id"),
    ],
)
def test_a_broken_key_file_is_refused_without_quoting_the_key(
    service_account_info: dict[str, str], change: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidServiceAccount, match=message) as raised:
        ServiceAccount.from_info({**service_account_info, **change})
    assert "AAAA" not in str(raised.value)


def test_a_key_that_is_not_rsa_is_refused(service_account_info: dict[str, str]) -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(InvalidServiceAccount, match="not an RSA key"):
        ServiceAccount.from_info({**service_account_info, "private_key": pem})


def test_an_unreadable_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    path.write_text("not json")
    with pytest.raises(InvalidServiceAccount, match="cannot read"):
        ServiceAccount.from_file(path)

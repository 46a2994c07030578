"""No key, token, secret or push token in any log line or stored error, after a whole flow.

Ops set a merchant up (the admin token; a signing secret, a second API key, Google Wallet),
the shop posts signed order events (and a few it gets wrong), the customer opens the card's
links, two devices register (APNs stand-in: one is delivered, one's token is rejected), Google
(respx) fails once and then takes the object, and a signed Google callback arrives. Every log
line, as the JSON formatter writes it (the service's loggers at DEBUG, every other at INFO, as
deployed), and every error column in the database (``last_error``, ``reason``) is then searched
for every secret the flow used. None may be there.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.apns_standin import ApnsStandin
from services.cli import ServiceName, components_of
from services.core.logging import JSONFormatter
from services.core.settings import Settings
from services.core.web import create_app
from services.models import Base
from services.passes.models import Card, PassDesign
from services.push.models import GoogleDelivery
from tests.conftest import BASE_URL
from tests.factories import EVENTS, WS, order_event, pass_auth, push_token, registration_url
from tests.integrations.google_wallet.conftest import ACCESS_TOKEN, TOKEN_URI, google_error
from tests.integrations.google_wallet.test_callbacks import GoogleSigner, new_key
from tests.waiting import eventually, nothing_to_push, queue_drained

ADMIN = "/admin/v1"
ADMIN_TOKEN = "admin-token-of-the-leak-test-0123456789abcdef"
ISSUER = "3388000000098765432"
HOUR_MS = 3_600_000


@pytest.fixture
def signer() -> GoogleSigner:
    return GoogleSigner(root=new_key(), intermediate=new_key())


@pytest.fixture
def leak_settings(push_settings: Settings, signer: GoogleSigner, tmp_path: Path) -> Settings:
    keys = tmp_path / "google-root-keys.json"
    expires = int(time.time() * 1000) + 24 * HOUR_MS
    keys.write_text(json.dumps({"keys": signer.root_keys(expires=expires)}))
    return push_settings.model_copy(
        update={"google_root_keys_file": keys, "admin_token": SecretStr(ADMIN_TOKEN)}
    )


def _not_the_test_client(record: logging.LogRecord) -> bool:
    """httpx logs each request of the test's own client (links, tokens and all, since it is
    the customer, the device, the shop): those lines are not the service's."""
    return not (record.name == "httpx" and BASE_URL in record.getMessage())


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every log line of the test as the JSON formatter writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    handler.setLevel(logging.DEBUG)
    handler.addFilter(_not_the_test_client)
    root = logging.getLogger()
    ours = [logging.getLogger(name) for name in ("services", "passpost")]
    levels = (root.level, [logger.level for logger in ours])
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for logger in ours:
        logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        for logger, level in zip(ours, levels[1], strict=True):
            logger.setLevel(level)


@pytest.fixture
def google() -> Iterator[list[httpx.Request]]:
    """Google's API: the first object insert is refused (403, kept as the target's error, not
    retried at once), every other call is taken."""
    seen: list[httpx.Request] = []
    inserts = iter([google_error(403, "The caller does not have permission", "permissionDenied")])

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = json.loads(request.content) if request.content else {}
        if request.method == "PATCH" and "/loyaltyObject/" in str(request.url):
            inserted = any(
                r.method == "POST" and str(r.url).endswith("/loyaltyObject") for r in seen[:-1]
            )
            if not inserted:
                return httpx.Response(404, json={"error": {"code": 404}})
        if request.method == "POST" and str(request.url).endswith("/loyaltyObject"):
            failure = next(inserts, None)
            if failure is not None:
                return failure
        return httpx.Response(200, json=body)

    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.post(TOKEN_URI).respond(
            200, json={"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}
        )
        router.route(host="walletobjects.googleapis.com").mock(side_effect=answer)
        yield seen


@pytest.fixture
async def client(leak_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(leak_settings, components_of(ServiceName.all, leak_settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client


def _a_line_of(pem: Path) -> str:
    """A line of a PEM file's base64: any of it in a log is the key leaking."""
    return pem.read_text().splitlines()[1]


def _signed(secret: str, body: bytes) -> str:
    t = int(time.time())
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


async def _stored_errors(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    """Every error the database keeps: each column named like one, in every table."""
    texts: list[str] = []
    async with sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if "error" in c.name or c.name == "reason"]
            for column in columns:
                values = await session.scalars(select(column).where(column.is_not(None)))
                texts += [str(value) for value in values]
    return texts


async def test_no_secret_in_any_log_line_or_stored_error(
    client: httpx.AsyncClient,
    leak_settings: Settings,
    standin: ApnsStandin,
    google: list[httpx.Request],
    signer: GoogleSigner,
    log_lines: io.StringIO,
    sessionmaker: async_sessionmaker[AsyncSession],
    service_account_info: dict[str, str],
    tmp_path: Path,
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    # Ops: the merchant, a signing secret, a second key, Google Wallet.
    created = await client.post(
        f"{ADMIN}/merchants", json={"slug": "shop", "name": "Shop"}, headers=admin
    )
    api_key = created.json()["api_key"]
    secret = (
        await client.put(f"{ADMIN}/merchants/shop/signing-secret", json={}, headers=admin)
    ).json()["signing_secret"]
    second_key = (
        await client.post(f"{ADMIN}/merchants/shop/api-keys", json={}, headers=admin)
    ).json()["api_key"]
    key_file = leak_settings.resolved_admin_files_dir / "service-account.json"  # where ops put it
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(json.dumps(service_account_info))
    google_on = await client.put(
        f"{ADMIN}/merchants/shop/google",
        json={"issuer_id": ISSUER, "service_account_file": str(key_file)},
        headers=admin,
    )
    assert google_on.status_code == 200, google_on.text

    # The shop: signed events, and the mistakes a shop makes.
    def post(event: dict[str, Any], key: str = api_key, sign: bool = True) -> Any:
        body = json.dumps(event).encode()
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        if sign:
            headers["Passpost-Signature"] = _signed(secret, body)
        return client.post(EVENTS, content=body, headers=headers)

    accepted = await post(order_event("confirmed"))
    assert accepted.status_code == 202, accepted.text
    links = accepted.json()["card"]
    assert (await post(order_event("confirmed"), sign=False)).status_code == 401
    assert (await post(order_event("confirmed"), key=api_key[:-4] + "AAAA")).status_code == 401
    wrong_secret = await client.post(
        EVENTS,
        json=order_event("confirmed"),
        headers={"Authorization": f"Bearer {second_key}", "Passpost-Signature": "t=1,v1=00"},
    )
    assert wrong_secret.status_code == 401
    assert (
        await client.get(f"{ADMIN}/merchants", headers={"Authorization": "Bearer " + api_key})
    ).status_code == 401

    # The customer and two devices: one is delivered, APNs refuses the other's token.
    link_token = links["landing_url"].rsplit("/", 1)[1]
    await eventually(lambda: queue_drained(sessionmaker))  # the card is made
    assert (await client.get(links["landing_url"])).status_code == 200
    assert (await client.get(links["apple_pass_url"])).status_code == 200
    async with sessionmaker() as session:
        card = (await session.scalars(select(Card))).one()
        design = (await session.scalars(select(PassDesign))).one()
    tokens = {"device-0001": push_token(), "device-0002": push_token()}
    standin.fail(tokens["device-0002"], 410, "Unregistered")
    for device, token in tokens.items():
        registered = await client.post(
            registration_url(card, device), json={"pushToken": token}, headers=pass_auth(card)
        )
        assert registered.status_code == 201
    wrong_pass = {"Authorization": "ApplePass " + card.authentication_token[::-1]}
    assert (
        await client.post(
            registration_url(card, "device-0003"),
            json={"pushToken": push_token()},
            headers=wrong_pass,
        )
    ).status_code == 401
    assert (await post(order_event("shipped", at="2026-11-23T11:00:00Z"))).status_code == 202
    await eventually(lambda: nothing_to_push(sessionmaker))
    assert {push.token for push in standin.received} == set(tokens.values())  # one refused
    pass_url = f"{WS}/passes/{card.pass_type_identifier}/{card.serial_number}"
    assert (await client.get(pass_url, headers=pass_auth(card))).status_code == 200
    assert (
        await client.post(f"{WS}/log", json={"logs": ["could not update pass"]})
    ).status_code == 200

    # Google: the first insert was refused (and recorded), a callback comes signed.
    async def google_failed_once() -> bool:
        async with sessionmaker() as session:
            outcomes = await session.scalars(select(GoogleDelivery.outcome))
            return "failed" in outcomes.all()

    await eventually(google_failed_once)
    now_ms = int(time.time() * 1000)
    message = {
        "classId": f"{ISSUER}.shop",
        "objectId": f"{ISSUER}.{card.serial_number}",
        "expTimeMillis": now_ms + HOUR_MS,
        "eventType": "save",
        "nonce": uuid.uuid4().hex,
    }
    callback = signer.callback(message=message, key_expires=now_ms + HOUR_MS, issuer_id=ISSUER)
    assert (await client.post("/google/callbacks", content=callback)).status_code == 200

    # Ops again: a card by hand, the branding, the list.
    issued = await client.post(
        f"{ADMIN}/merchants/shop/cards", json={"customer_id": "c-9"}, headers=admin
    )
    assert issued.status_code == 200
    assert (
        await client.patch(
            f"{ADMIN}/merchants/shop/branding", json={"logo_text": "Shop"}, headers=admin
        )
    ).status_code == 204
    assert (await client.get(f"{ADMIN}/merchants", headers=admin)).status_code == 200
    await eventually(lambda: nothing_to_push(sessionmaker))

    to_google = await client.get(links["google_save_url"])  # ours: signs the object now
    assert to_google.status_code == 303
    save_jwt = to_google.headers["location"].rsplit("/", 1)[1]
    private_key_line = service_account_info["private_key"].splitlines()[1]
    pass_key_line = _a_line_of(Path(design.key_path))
    secrets = {
        "admin token": ADMIN_TOKEN,
        "API key": api_key,
        "second API key": second_key,
        "signing secret": secret,
        "server secret key": leak_settings.resolved_secret_key().decode(),
        "pass authenticationToken": card.authentication_token,
        "card link token": link_token,
        "Google save-link JWT": save_jwt,
        "Google access token": ACCESS_TOKEN,
        "service account private key": private_key_line,
        "pass type private key": pass_key_line,
        **{f"push token of {device}": token for device, token in tokens.items()},
    }
    lines = log_lines.getvalue().splitlines()
    errors = await _stored_errors(sessionmaker)
    for said in ("registration dropped", "device log", "walletobjects", "Google Wallet callback"):
        assert any(said in line for line in lines), said  # the capture saw the flow
    assert any("does not have permission" in error for error in errors)  # Google's was kept
    found = {
        name: [text[:200] for text in [*lines, *errors] if value in text]
        for name, value in secrets.items()
        if any(value in text for text in [*lines, *errors])
    }
    assert found == {}

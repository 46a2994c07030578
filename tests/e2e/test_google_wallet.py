"""Google Wallet end to end: order events -> object synced and messages within the budget,
save link, and callbacks; every Google call mocked and checked against Google's schema."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.contracts.messages import ChannelCounted, GoogleWalletChanged
from services.core.clock import clock
from services.core.queue import OutboxMessage, publish
from services.core.settings import Settings
from services.integrations.google_wallet.client import DEFAULT_API_URL
from services.merchants import google_wallet, journeys
from services.merchants.models import Merchant
from services.passes.models import Card
from services.push.models import GoogleDelivery, GoogleTarget
from tests.conftest import BASE_URL
from tests.e2e.conftest import installation
from tests.e2e.marketing import at_noon
from tests.factories import (
    create_merchant,
    order_event,
    post_order_event,
    post_shop_event,
    shop_event,
)
from tests.integrations.google_wallet.conftest import ISSUER_ID, WalletApi, google_error
from tests.integrations.google_wallet.schema import request_schema, validate
from tests.integrations.google_wallet.test_callbacks import GoogleSigner, new_key
from tests.waiting import eventually, queue_drained

__all__ = ["at_noon"]

HOUR_MS = 3_600_000
OBJECTS = "loyaltyObject"


@pytest.fixture
def wallet_api() -> Iterator[WalletApi]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield WalletApi(router)


@pytest.fixture
def signer() -> GoogleSigner:
    return GoogleSigner(root=new_key(), intermediate=new_key())


@pytest.fixture
def google_settings(settings: Settings, signer: GoogleSigner, tmp_path: Path) -> Settings:
    keys = tmp_path / "google-root-keys.json"
    now_ms = int(time.time() * 1000)
    keys.write_text(json.dumps({"keys": signer.root_keys(expires=now_ms + 24 * HOUR_MS)}))
    return settings.model_copy(update={"google_root_keys_file": keys})


@pytest.fixture
async def shop(
    session: AsyncSession,
    google_settings: Settings,
    service_account_info: dict[str, str],
    tmp_path: Path,
) -> Any:
    key_file = tmp_path / "service-account.json"
    key_file.write_text(json.dumps(service_account_info))
    onboarded = await create_merchant(session, google_settings)
    merchant = await session.merge(onboarded.merchant)
    await google_wallet.configure(
        session,
        merchant,
        issuer_id=ISSUER_ID,
        service_account_file=key_file,
        origins=["https://shop.example.com"],
    )
    await session.commit()
    return onboarded


@pytest.fixture
async def client(google_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = installation(google_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client


async def _deliveries(sessionmaker: async_sessionmaker[AsyncSession]) -> list[tuple[str, str]]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(GoogleDelivery).order_by(GoogleDelivery.id))
        return [(row.kind, row.outcome) for row in rows]


async def _published(
    sessionmaker: async_sessionmaker[AsyncSession], topic: str
) -> list[dict[str, Any]]:
    """The payloads published on ``topic`` so far, in order."""
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(OutboxMessage).where(OutboxMessage.topic == topic).order_by(OutboxMessage.id)
        )
        return [row.payload for row in rows]


def _messages(api: WalletApi) -> list[tuple[str, str]]:
    return [
        (body["message"]["messageType"], body["message"]["header"])
        for method, path, body in api.bodies()
        if path.endswith(":addMessage") or path.endswith("/addMessage")
    ]


def _checked(api: WalletApi, request: httpx.Request) -> None:
    """Every request we make is recorded and its body checked against Google's schema."""
    path = str(request.url).removeprefix(DEFAULT_API_URL + "/")
    schema = request_schema(request.method, path)
    if schema is not None:
        validate(schema, json.loads(request.content))
    api.requests.append(request)


def _ok(api: WalletApi, request: httpx.Request) -> httpx.Response:
    _checked(api, request)
    return httpx.Response(200, json=json.loads(request.content))


Responder = Callable[[httpx.Request], httpx.Response]


def _on_patch(api: WalletApi, respond: Responder | None = None) -> None:
    """Object PATCHes answered by ``respond`` (default: accepted and checked)."""
    api.router.route(method="PATCH", url__regex=rf".*/{OBJECTS}/.*").mock(
        side_effect=respond or (lambda request: _ok(api, request))
    )


def _on_add_message(api: WalletApi, respond: Responder | None = None) -> None:
    """addMessage calls answered by ``respond`` (default: accepted and checked)."""
    api.router.route(method="POST", url__regex=r".*/addMessage$").mock(
        side_effect=respond or (lambda request: _ok(api, request))
    )


async def test_order_life_in_google_wallet(
    client: httpx.AsyncClient,
    shop: Any,
    wallet_api: WalletApi,
    service_account_info: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    inserted: list[dict[str, Any]] = []
    _on_patch(
        wallet_api,
        lambda request: (
            httpx.Response(404, json={"error": {"code": 404}})
            if not inserted
            else _ok(wallet_api, request)
        ),
    )

    def insert(request: httpx.Request) -> httpx.Response:
        inserted.append(json.loads(request.content))
        return _ok(wallet_api, request)

    wallet_api.router.route(method="POST", url__regex=rf".*/{OBJECTS}$").mock(side_effect=insert)
    _on_add_message(wallet_api)

    accepted = await post_order_event(client, shop.api_key, order_event("confirmed"))
    ours = accepted["card"]["google_save_url"]
    assert ours == f"{accepted['card']['landing_url']}/google"
    saved = await client.get(ours)
    assert saved.status_code == 303
    url = saved.headers["location"]
    assert url.startswith("https://pay.google.com/gp/v/save/")
    assert len(url) <= 1800
    public_key = serialization.load_pem_private_key(
        service_account_info["private_key"].encode(), password=None
    ).public_key()
    claims = jwt.decode(url.rsplit("/", 1)[1], public_key, algorithms=["RS256"], audience="google")
    object_id = f"{ISSUER_ID}.{accepted['card']['serial_number']}"
    assert claims["iss"] == service_account_info["client_email"]
    assert claims["typ"] == "savetowallet"
    assert claims["origins"] == ["https://shop.example.com"]
    [saved_object] = claims["payload"]["loyaltyObjects"]
    assert saved_object["id"] == object_id  # Google can create it on save, inserted or not
    assert saved_object["classId"] == f"{ISSUER_ID}.customer-card"
    schema = request_schema("POST", OBJECTS)
    assert schema is not None
    validate(schema, saved_object)

    async def synced() -> bool:
        kinds = {
            kind for kind, outcome in await _deliveries(sessionmaker) if outcome == "delivered"
        }
        return {"object", "plain"} <= kinds

    await eventually(synced)
    assert inserted[0]["id"] == object_id
    assert inserted[0]["state"] == "ACTIVE"
    # "confirmed" is worth a message, not one of the 3 daily notifications.
    assert _messages(wallet_api) == [("TEXT", "Potvrdená")]

    for n, status in enumerate(
        ["shipped", "out_for_delivery", "delivery_issue", "out_for_delivery"], start=1
    ):
        await post_order_event(
            client, shop.api_key, order_event(status, at=f"2026-11-23T1{n}:00:00Z")
        )

        async def sent(count: int = n + 1) -> bool:
            return len(_messages(wallet_api)) == count

        await eventually(sent)
    assert _messages(wallet_api) == [
        ("TEXT", "Potvrdená"),
        ("TEXT_AND_NOTIFY", "Na ceste"),
        ("TEXT_AND_NOTIFY", "U kuriéra"),
        ("TEXT_AND_NOTIFY", "Problém s doručením"),
        ("TEXT", "U kuriéra"),  # the 4th important change in 24 h: over Google's budget
    ]

    async def all_recorded() -> bool:  # the mock saw the call; the worker records it after
        return ("downgraded", "delivered") in await _deliveries(sessionmaker)

    await eventually(all_recorded)
    kinds = [kind for kind, _ in await _deliveries(sessionmaker)]
    assert kinds.count("plain") == 1  # confirmed: worth a message, not a notification
    assert kinds.count("notified") == 3
    assert kinds.count("downgraded") == 1  # the 4th
    patched = [body for method, path, body in wallet_api.bodies() if method == "PATCH"]
    assert patched[-1]["textModulesData"][0]["body"] == "U kuriéra"
    # "No offers, thanks" to the card's own page (as on the back of the Apple pass), in the
    # customer's language.
    consent_page = f"{accepted['card']['landing_url']}/marketing"
    no_offers = {"id": "no_offers", "uri": consent_page, "description": "Ponuky nie, ďakujem"}
    assert no_offers in patched[-1]["linksModuleData"]["uris"]


async def test_quota_exceeded_is_resent_as_a_plain_message(
    client: httpx.AsyncClient,
    shop: Any,
    wallet_api: WalletApi,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _on_patch(wallet_api)
    answers = [google_error(403, "Quota exceeded", "quotaExceeded")]

    def add_message(request: httpx.Request) -> httpx.Response:
        _checked(wallet_api, request)
        return answers.pop(0) if answers else httpx.Response(200, json={})

    _on_add_message(wallet_api, add_message)
    await post_order_event(client, shop.api_key, order_event("shipped"))

    async def recorded() -> bool:
        return ("downgraded", "delivered") in await _deliveries(sessionmaker)

    await eventually(recorded)
    assert _messages(wallet_api) == [("TEXT_AND_NOTIFY", "Na ceste"), ("TEXT", "Na ceste")]


async def test_google_errors_are_recorded_and_retried(
    client: httpx.AsyncClient,
    shop: Any,
    wallet_api: WalletApi,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    answers = [google_error(403, "The service account is not authorized", "permissionDenied")]

    def patch(request: httpx.Request) -> httpx.Response:
        _checked(wallet_api, request)
        return answers.pop(0) if answers else httpx.Response(200, json={})

    _on_patch(wallet_api, patch)
    _on_add_message(wallet_api)
    await post_order_event(client, shop.api_key, order_event("shipped"))

    async def failed_once() -> bool:
        return ("object", "failed") in await _deliveries(sessionmaker)

    await eventually(failed_once)
    async with sessionmaker() as session:
        target = (await session.scalars(select(GoogleTarget))).one()
        assert "not authorized" in (target.last_error or "")
        target.available_at = target.available_at.replace(year=2000)  # skip the backoff
        await session.commit()

    async def recovered() -> bool:
        return ("object", "delivered") in await _deliveries(sessionmaker)

    await eventually(recovered)


async def test_callbacks_are_verified_and_a_removed_card_is_not_notified(
    client: httpx.AsyncClient,
    shop: Any,
    wallet_api: WalletApi,
    signer: GoogleSigner,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _on_patch(wallet_api)
    _on_add_message(wallet_api)
    accepted = await post_order_event(client, shop.api_key, order_event("confirmed"))
    object_id = f"{ISSUER_ID}.{accepted['card']['serial_number']}"

    async def has_target() -> bool:  # the object made and its first message sent
        async with sessionmaker() as session:
            row = await session.scalar(select(GoogleTarget))
            return row is not None and row.synced_version >= 1 and not row.messages_due

    await eventually(has_target)
    now_ms = int(time.time() * 1000)
    message = {
        "classId": f"{ISSUER_ID}.customer-card",
        "objectId": object_id,
        "expTimeMillis": now_ms + HOUR_MS,
        "eventType": "del",
        "nonce": str(uuid.uuid4()),
    }
    body = signer.callback(message=message, key_expires=now_ms + HOUR_MS)

    forged = GoogleSigner(root=new_key(), intermediate=new_key()).callback(
        message=message, key_expires=now_ms + HOUR_MS
    )
    assert (await client.post("/google/callbacks", content=forged)).status_code == 401
    assert (await client.post("/google/callbacks", content=b"{}")).status_code == 401
    expired = signer.callback(
        message={**message, "expTimeMillis": now_ms - 1000}, key_expires=now_ms + HOUR_MS
    )
    assert (await client.post("/google/callbacks", content=expired)).status_code == 401
    assert await _published(sessionmaker, GoogleWalletChanged.topic) == []

    assert (await client.post("/google/callbacks", content=body)).status_code == 200
    assert (await client.post("/google/callbacks", content=body)).status_code == 200  # retried
    assert len(await _published(sessionmaker, GoogleWalletChanged.topic)) == 1

    async with sessionmaker() as session:
        target = (await session.scalars(select(GoogleTarget))).one()
        assert target.removed is True

    before = len(_messages(wallet_api))
    await post_order_event(client, shop.api_key, order_event("shipped", at="2026-11-23T15:00:00Z"))

    async def patched() -> bool:
        async with sessionmaker() as session:
            row = (await session.scalars(select(GoogleTarget))).one()
            return row.synced_version == row.wanted_version and row.wanted_version > 1

    await eventually(patched)
    assert len(_messages(wallet_api)) == before, "a removed card gets no more messages"


async def test_saves_and_removals_tell_passes_and_the_channels_stats(
    client: httpx.AsyncClient,
    shop: Any,
    wallet_api: WalletApi,
    signer: GoogleSigner,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A verified callback for one of our cards publishes, in its own transaction, that the
    card is (or is no longer) on a device, and counts it for the merchant; a retried callback
    (same nonce) publishes nothing again."""
    _on_patch(wallet_api)
    _on_add_message(wallet_api)
    accepted = await post_order_event(client, shop.api_key, order_event("confirmed"))
    object_id = f"{ISSUER_ID}.{accepted['card']['serial_number']}"

    async def has_target() -> bool:
        async with sessionmaker() as session:
            return await session.scalar(select(GoogleTarget.card_id)) is not None

    await eventually(has_target)
    now_ms = int(time.time() * 1000)
    bodies = [
        signer.callback(
            message={
                "classId": f"{ISSUER_ID}.customer-card",
                "objectId": object_id,
                "expTimeMillis": now_ms + HOUR_MS,
                "eventType": event,
                "nonce": str(uuid.uuid4()),
            },
            key_expires=now_ms + HOUR_MS,
        )
        for event in ("save", "del")
    ]
    for body in (bodies[0], bodies[0], bodies[1]):
        assert (await client.post("/google/callbacks", content=body)).status_code == 200

    async with sessionmaker() as session:
        card_id = await session.scalar(select(GoogleTarget.card_id))
    changed = [
        GoogleWalletChanged.model_validate(payload)
        for payload in await _published(sessionmaker, GoogleWalletChanged.topic)
    ]
    counts = [
        ChannelCounted.model_validate(payload)
        for payload in await _published(sessionmaker, ChannelCounted.topic)
    ]
    assert [(c.card_id, c.saved) for c in changed] == [(card_id, True), (card_id, False)]
    from_callbacks = [c for c in counts if any(key.startswith("google.") for key in c.counts)]
    assert [(c.merchant_id, c.counts) for c in from_callbacks] == [  # passes counts the rest
        (shop.merchant.id, {"google.saved": 1}),
        (shop.merchant.id, {"google.removed": 1}),
    ]


async def test_a_callback_for_another_issuer_or_its_objects_is_refused(
    client: httpx.AsyncClient, shop: Any, signer: GoogleSigner
) -> None:
    """Google signs every issuer's callbacks with the same keys: a valid signature for an
    issuer that is not ours, or for an object outside our issuer, changes nothing here."""
    now_ms = int(time.time() * 1000)
    other = "3388000000099999999"
    for class_id, object_id in (
        (f"{other}.customer-card", f"{other}.0123456789abcdef"),
        (f"{ISSUER_ID}.customer-card", f"{other}.0123456789abcdef"),
    ):
        message = {
            "classId": class_id,
            "objectId": object_id,
            "expTimeMillis": now_ms + HOUR_MS,
            "eventType": "del",
            "nonce": str(uuid.uuid4()),
        }
        issuer = class_id.split(".", 1)[0]
        body = signer.callback(message=message, key_expires=now_ms + HOUR_MS, issuer_id=issuer)
        answer = await client.post("/google/callbacks", content=body)
        assert answer.status_code == 401, (class_id, object_id, answer.text)


async def test_at_most_ten_messages_stay_on_the_object(
    client: httpx.AsyncClient,
    shop: Any,
    wallet_api: WalletApi,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _on_patch(wallet_api)
    _on_add_message(wallet_api)
    await post_order_event(client, shop.api_key, order_event("confirmed"))

    async def settled() -> bool:
        async with sessionmaker() as session:
            row = await session.scalar(select(GoogleTarget))
            return row is not None and not row.messages_due and row.synced_version >= 1

    await eventually(settled)
    async with sessionmaker() as session:
        row = (await session.scalars(select(GoogleTarget))).one()
        old = {"header": "Old", "body": "old news", "messageType": "TEXT"}
        row.kept_messages = [{**old, "id": f"old{n}"} for n in range(10)]
        await session.commit()
    await post_order_event(client, shop.api_key, order_event("shipped", at="2026-11-23T15:00:00Z"))

    async def trimmed() -> bool:
        return any(
            method == "PATCH" and body and "messages" in body
            for method, _, body in wallet_api.bodies()
        )

    await eventually(trimmed)
    trim = next(b for m, _, b in wallet_api.bodies() if m == "PATCH" and b and "messages" in b)
    assert [m["id"] for m in trim["messages"]] == [f"old{n}" for n in range(1, 10)]

    async def kept_ten() -> bool:
        async with sessionmaker() as session:
            row = (await session.scalars(select(GoogleTarget))).one()
            return len(row.kept_messages) == 10 and row.kept_messages[-1]["header"] == "Na ceste"

    await eventually(kept_ten)


async def test_stores_and_a_ratings_follow_up_reach_the_google_object(
    client: httpx.AsyncClient,
    shop: Any,
    wallet_api: WalletApi,
    google_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """``merchantLocations`` (at most 10, latitude and longitude) and the review link after a
    9-10 rating, PATCHed whole; clearing the stores sends an empty list (a PATCH keeps a field
    it does not name)."""
    _on_patch(wallet_api)
    _on_add_message(wallet_api)
    admin = {"Authorization": f"Bearer {google_settings.ensure_admin_token()}"}
    slug = shop.merchant.slug
    stores = [{"latitude": 48.1439 + n / 100, "longitude": 17.1097} for n in range(10)]
    put = await client.put(
        f"/admin/v1/merchants/{slug}/locations", json={"locations": stores}, headers=admin
    )
    assert put.status_code == 200, put.text
    review = {"review_url_template": "https://reviews.example.com/r/{order_id}"}
    branded = await client.patch(f"/admin/v1/merchants/{slug}/branding", json=review, headers=admin)
    assert branded.status_code == 204
    await post_order_event(client, shop.api_key, order_event("delivered"))
    await eventually(lambda: queue_drained(sessionmaker))  # the card exists: the rating shows
    rated = await client.post(
        "/v1/customers/c-42/feedback",
        json={"order_id": "A-1001", "score": 10},
        headers={"Authorization": f"Bearer {shop.api_key}"},
    )
    assert rated.status_code == 201

    def patched() -> list[dict[str, Any]]:
        return [body for method, path, body in wallet_api.bodies() if method == "PATCH"]

    async def followed_up() -> bool:
        return any(
            link["id"] == "review" for body in patched() for link in body["linksModuleData"]["uris"]
        )

    await eventually(followed_up)
    last = patched()[-1]
    assert last["merchantLocations"] == stores
    [link] = [link for link in last["linksModuleData"]["uris"] if link["id"] == "review"]
    assert link["uri"] == "https://reviews.example.com/r/A-1001"
    assert link["description"] == "Páčilo sa vám? Napíšte recenziu"

    cleared = await client.delete(f"/admin/v1/merchants/{slug}/locations", headers=admin)
    assert cleared.status_code == 204

    async def without_stores() -> bool:
        return patched()[-1].get("merchantLocations") == []

    await eventually(without_stores)


async def test_a_welcome_reaches_the_google_object_once_when_the_card_is_saved(
    client: httpx.AsyncClient,
    shop: Any,
    wallet_api: WalletApi,
    signer: GoogleSigner,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """``customer.registered`` makes the card (its object inserted, no message); the save
    callback puts the card on a device, and the journeys' job adds the welcome as one message
    that notifies; a second save brings no other."""
    clock.set(datetime.now(UTC).replace(hour=12))  # outside the quiet hours
    try:
        await _welcome_once(client, shop, wallet_api, signer, sessionmaker)
    finally:
        clock.reset()


async def _welcome_once(
    client: httpx.AsyncClient,
    shop: Any,
    wallet_api: WalletApi,
    signer: GoogleSigner,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _on_patch(wallet_api)
    _on_add_message(wallet_api)
    accepted = await post_shop_event(
        client, shop, shop_event("customer.registered", "gina", locale="sk")
    )
    object_id = f"{ISSUER_ID}.{accepted['card']['serial_number']}"

    async def has_target() -> bool:
        async with sessionmaker() as session:
            return await session.scalar(select(GoogleTarget.card_id)) is not None

    await eventually(has_target)
    now_ms = int(time.time() * 1000)

    def saved() -> bytes:
        message = {
            "classId": f"{ISSUER_ID}.customer-card",
            "objectId": object_id,
            "expTimeMillis": now_ms + HOUR_MS,
            "eventType": "save",
            "nonce": str(uuid.uuid4()),
        }
        return signer.callback(message=message, key_expires=now_ms + HOUR_MS)

    assert (await client.post("/google/callbacks", content=saved())).status_code == 200
    clock.set(clock.now() + timedelta(seconds=1))  # wakes the journeys' job

    async def welcomed() -> bool:
        return len(_messages(wallet_api)) == 1

    await eventually(welcomed)
    assert _messages(wallet_api) == [("TEXT_AND_NOTIFY", f"Vitajte v {shop.merchant.name}")]
    assert (await client.post("/google/callbacks", content=saved())).status_code == 200
    clock.set(clock.now() + timedelta(minutes=1))
    await eventually(lambda: queue_drained(sessionmaker))
    assert len(_messages(wallet_api)) == 1, "never a second welcome"


async def test_the_feedback_request_notifies_in_google_wallet_after_a_quiet_day(
    at_noon: datetime,  # first: the clock is set before the services start
    client: httpx.AsyncClient,
    shop: Any,
    wallet_api: WalletApi,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _on_patch(wallet_api)
    wallet_api.router.route(method="POST", url__regex=rf".*/{OBJECTS}$").mock(
        side_effect=lambda request: _ok(wallet_api, request)
    )
    _on_add_message(wallet_api)
    async with sessionmaker() as session:
        merchant = await session.get_one(Merchant, shop.merchant.id)
        survey = "https://shop.example.com/survey/{order_id}"
        await journeys.update_journey(session, merchant, "feedback", {"url": survey})
        await session.commit()
    moment = at_noon.isoformat().replace("+00:00", "Z")
    accepted = await post_order_event(client, shop.api_key, order_event("shipped", at=moment))
    await eventually(lambda: queue_drained(sessionmaker))
    async with sessionmaker() as session:
        card = await session.scalar(
            select(Card).where(Card.serial_number == accepted["card"]["serial_number"])
        )
        assert card is not None
        publish(session, GoogleWalletChanged(card_id=card.id, saved=True, at=at_noon))
        await session.commit()
    await post_order_event(client, shop.api_key, order_event("delivered", at=moment))
    await eventually(lambda: _messages_sent(wallet_api, 2))

    clock.advance(timedelta(days=3))
    await eventually(lambda: _messages_sent(wallet_api, 3))
    assert _messages(wallet_api) == [
        ("TEXT_AND_NOTIFY", "Na ceste"),
        ("TEXT_AND_NOTIFY", "Doručená"),
        ("TEXT_AND_NOTIFY", "Ako ste spokojní s objednávkou 1001?"),
    ], "a marketing message notifies after a day without notifications"
    patched = [body for method, path, body in wallet_api.bodies() if method == "PATCH"]
    links = patched[-1]["linksModuleData"]["uris"]
    assert "https://shop.example.com/survey/A-1001" in [link["uri"] for link in links]


async def _messages_sent(api: WalletApi, count: int) -> bool:
    return len(_messages(api)) >= count

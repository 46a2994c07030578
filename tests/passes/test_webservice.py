"""Apple's PassKit web service, status by status, as a device calls it."""

from __future__ import annotations

import asyncio
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.queue import OutboxMessage
from services.core.ratelimit import RateLimit
from services.core.settings import Settings
from services.passes.apple.webservice import (
    DEVICE_LOG_BURST,
    DEVICE_LOG_PER_MINUTE,
    RegistrationFloods,
)
from services.passes.changes import record_change
from services.passes.models import Card, PassBundle, Registration
from services.passes.registrations import FULL_RETRY_AFTER_SECONDS
from tests.factories import WS, create_card, create_merchant, pass_auth, registration_url

DEVICE = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
TOKEN = "ab" * 32


def _registration(card: Card, device: str = DEVICE) -> str:
    return registration_url(card, device)


@pytest.fixture
async def card(session: AsyncSession, settings: Settings) -> Card:
    return await create_card(session, await create_merchant(session, settings))


async def test_register_new_then_again(client: httpx.AsyncClient, card: Card) -> None:
    first = await client.post(
        _registration(card), json={"pushToken": TOKEN}, headers=pass_auth(card)
    )
    assert first.status_code == 201
    again = await client.post(
        _registration(card), json={"pushToken": TOKEN}, headers=pass_auth(card)
    )
    assert again.status_code == 200


async def test_new_push_token_replaces_the_old(
    client: httpx.AsyncClient, card: Card, session: AsyncSession
) -> None:
    await client.post(_registration(card), json={"pushToken": TOKEN}, headers=pass_auth(card))
    newer = "cd" * 32
    response = await client.post(
        _registration(card), json={"pushToken": newer}, headers=pass_auth(card)
    )
    assert response.status_code == 200
    tokens = (await session.scalars(select(Registration.push_token))).all()
    assert tokens == [newer]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "ApplePass wrong-token-123456"}, {"Authorization": "Bearer x"}],
)
async def test_register_without_the_right_token_is_401(
    client: httpx.AsyncClient, card: Card, headers: dict[str, str]
) -> None:
    response = await client.post(_registration(card), json={"pushToken": TOKEN}, headers=headers)
    assert response.status_code == 401


async def test_register_unknown_pass_is_404(client: httpx.AsyncClient, card: Card) -> None:
    unknown_serial = f"{WS}/devices/{DEVICE}/registrations/{card.pass_type_identifier}/nope"
    response = await client.post(unknown_serial, json={"pushToken": TOKEN}, headers=pass_auth(card))
    assert response.status_code == 404
    unknown_type = f"{WS}/devices/{DEVICE}/registrations/pass.other.type/{card.serial_number}"
    response = await client.post(unknown_type, json={"pushToken": TOKEN}, headers=pass_auth(card))
    assert response.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b"{}",
        b'{"pushToken": 5}',
        b'{"pushToken": "not-hex!"}',
        b'{"pushToken": "' + b"a" * 300 + b'"}',
    ],
)
async def test_register_with_a_bad_body_is_400(
    client: httpx.AsyncClient, card: Card, body: bytes
) -> None:
    response = await client.post(_registration(card), content=body, headers=pass_auth(card))
    assert response.status_code == 400


@pytest.mark.parametrize("device", ["has space", "x" * 129, "semi;colon"])
async def test_malformed_path_parameters_are_400(
    client: httpx.AsyncClient, card: Card, device: str
) -> None:
    response = await client.post(
        _registration(card, device), json={"pushToken": TOKEN}, headers=pass_auth(card)
    )
    assert response.status_code == 400
    listing = await client.get(f"{WS}/devices/{device}/registrations/{card.pass_type_identifier}")
    assert listing.status_code == 400


async def test_unregister(client: httpx.AsyncClient, card: Card) -> None:
    await client.post(_registration(card), json={"pushToken": TOKEN}, headers=pass_auth(card))
    wrong = await client.delete(_registration(card), headers={"Authorization": "ApplePass nope"})
    assert wrong.status_code == 401
    assert (await client.delete(_registration(card), headers=pass_auth(card))).status_code == 200
    assert (await client.delete(_registration(card), headers=pass_auth(card))).status_code == 404


async def test_list_with_and_without_tag(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    onboarded = await create_merchant(session, settings)
    first, second = await create_card(session, onboarded), await create_card(session, onboarded)
    listing_url = f"{WS}/devices/{DEVICE}/registrations/{first.pass_type_identifier}"
    assert (await client.get(listing_url)).status_code == 204  # no registrations yet
    for card in (first, second):
        await client.post(_registration(card), json={"pushToken": TOKEN}, headers=pass_auth(card))

    everything = await client.get(listing_url)
    assert everything.status_code == 200
    body = everything.json()
    assert sorted(body["serialNumbers"]) == sorted([first.serial_number, second.serial_number])
    assert isinstance(body["lastUpdated"], str)

    nothing_new = await client.get(listing_url, params={"passesUpdatedSince": body["lastUpdated"]})
    assert nothing_new.status_code == 204

    await record_change(session, second)
    await session.commit()
    changed = await client.get(listing_url, params={"passesUpdatedSince": body["lastUpdated"]})
    assert changed.status_code == 200
    assert changed.json()["serialNumbers"] == [second.serial_number]
    assert int(changed.json()["lastUpdated"]) > int(body["lastUpdated"])

    garbage = await client.get(listing_url, params={"passesUpdatedSince": "yesterday"})
    assert len(garbage.json()["serialNumbers"]) == 2, "an unknown tag lists everything"


async def test_no_change_is_missed_when_cards_change_in_the_same_second(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    onboarded = await create_merchant(session, settings)
    cards = [await create_card(session, onboarded) for _ in range(6)]
    for card in cards:
        await client.post(_registration(card), json={"pushToken": TOKEN}, headers=pass_auth(card))
    listing_url = f"{WS}/devices/{DEVICE}/registrations/{cards[0].pass_type_identifier}"
    tag = (await client.get(listing_url)).json()["lastUpdated"]

    async def change(card_id: Any) -> None:
        async with sessionmaker() as own, own.begin():
            await record_change(own, await own.get_one(Card, card_id))

    seen: set[str] = set()
    # Changes land while the device keeps listing with the tag it was last given.
    for batch in (cards[:3], cards[3:]):
        await asyncio.gather(*(change(card.id) for card in batch))
        response = await client.get(listing_url, params={"passesUpdatedSince": tag})
        assert response.status_code == 200
        seen |= set(response.json()["serialNumbers"])
        tag = response.json()["lastUpdated"]
    assert seen == {card.serial_number for card in cards}


async def test_latest_pass_and_if_modified_since(
    client: httpx.AsyncClient, card: Card, session: AsyncSession
) -> None:
    url = f"{WS}/passes/{card.pass_type_identifier}/{card.serial_number}"
    response = await client.get(url, headers=pass_auth(card))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.apple.pkpass"
    last_modified = response.headers["last-modified"]

    unchanged = await client.get(
        url, headers={**pass_auth(card), "If-Modified-Since": last_modified}
    )
    assert unchanged.status_code == 304
    assert unchanged.content == b""

    # Two changes within one second still give the device a newer Last-Modified each time.
    for _ in range(2):
        await record_change(session, card)
        await session.commit()
        newer = await client.get(
            url, headers={**pass_auth(card), "If-Modified-Since": last_modified}
        )
        assert newer.status_code == 200
        assert newer.headers["last-modified"] != last_modified
        last_modified = newer.headers["last-modified"]

    older = format_datetime(card.changed_at.replace(year=2020), usegmt=True)
    stale = await client.get(url, headers={**pass_auth(card), "If-Modified-Since": older})
    assert stale.status_code == 200
    bogus = await client.get(url, headers={**pass_auth(card), "If-Modified-Since": "yesterday"})
    assert bogus.status_code == 200


async def test_a_new_version_is_built_once_then_served_as_kept(
    client: httpx.AsyncClient, card: Card, session: AsyncSession
) -> None:
    url = f"{WS}/passes/{card.pass_type_identifier}/{card.serial_number}"
    assert (await client.get(url, headers=pass_auth(card))).status_code == 200
    await record_change(session, card)
    await session.commit()

    first = await client.get(url, headers=pass_auth(card))
    again = await client.get(url, headers=pass_auth(card))
    assert first.status_code == again.status_code == 200
    assert again.headers["content-type"] == "application/vnd.apple.pkpass"
    assert again.headers["last-modified"] == first.headers["last-modified"]
    assert again.content == first.content  # signed once: the signing time would differ
    kept = await session.scalar(select(PassBundle.version).where(PassBundle.card_id == card.id))
    assert kept == card.version


async def test_latest_pass_needs_the_token_and_a_known_pass(
    client: httpx.AsyncClient, card: Card
) -> None:
    url = f"{WS}/passes/{card.pass_type_identifier}/{card.serial_number}"
    assert (await client.get(url)).status_code == 401
    assert (await client.get(url, headers={"Authorization": "ApplePass x" * 3})).status_code == 401
    unknown = f"{WS}/passes/{card.pass_type_identifier}/unknown-serial"
    assert (await client.get(unknown, headers=pass_auth(card))).status_code == 404


async def test_one_device_many_cards_and_one_card_many_devices(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    onboarded = await create_merchant(session, settings)
    a, b = await create_card(session, onboarded), await create_card(session, onboarded)
    for card in (a, b):
        for device in ("device-one", "device-two"):
            response = await client.post(
                _registration(card, device), json={"pushToken": TOKEN}, headers=pass_auth(card)
            )
            assert response.status_code == 201
    await record_change(session, a)
    await session.commit()
    message = (
        await session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.topic == "card.updated")
            .order_by(OutboxMessage.id.desc())
        )
    ).first()
    assert message is not None
    devices = {d["device_library_identifier"] for d in message.payload["devices"]}
    assert devices == {"device-one", "device-two"}
    assert message.payload["pass_type_identifier"] == a.pass_type_identifier
    assert message.payload["version"] == a.version


async def test_device_log(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    response = await client.post(f"{WS}/log", json={"logs": ["pass fetch failed", "x" * 5000]})
    assert response.status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "passpost.device_log"]
    assert lines[0] == "device log: pass fetch failed"
    assert len(lines[1]) <= 1000 + len("device log: ")
    assert (await client.post(f"{WS}/log", json={"logs": "nope"})).status_code == 400
    assert (await client.post(f"{WS}/log", content=b"{")).status_code == 400


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_one_address_logging_too_often_is_refused_and_logs_nothing(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """``/log`` takes no credentials: a flood from one address is answered 429 with
    Retry-After and leaves the log alone; other addresses, and the same one a little later,
    still get through."""
    clock = Clock()
    app.state.device_log_limit = RateLimit(
        burst=DEVICE_LOG_BURST, per_second=DEVICE_LOG_PER_MINUTE / 60, clock=clock
    )
    body = {"logs": ["x" * 1000] * 50}
    answers = [(await client.post(f"{WS}/log", json=body)).status_code for _ in range(200)]
    assert answers == [200] * DEVICE_LOG_BURST + [429] * (200 - DEVICE_LOG_BURST)
    refused = await client.post(f"{WS}/log", json=body)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == str(60 // DEVICE_LOG_PER_MINUTE)
    logged = [r for r in caplog.records if r.name == "passpost.device_log"]
    assert len(logged) == DEVICE_LOG_BURST * 50, "what was refused logged nothing"

    other = httpx.ASGITransport(app=app, client=("192.0.2.7", 4000))
    async with httpx.AsyncClient(transport=other, base_url=str(client.base_url)) as elsewhere:
        assert (await elsewhere.post(f"{WS}/log", json=body)).status_code == 200
    clock.now += 60 / DEVICE_LOG_PER_MINUTE
    assert (await client.post(f"{WS}/log", json=body)).status_code == 200
    assert (await client.post(f"{WS}/log", json=body)).status_code == 429


def test_a_rate_limit_keeps_a_bounded_number_of_addresses() -> None:
    clock = Clock()
    limit = RateLimit(burst=1, per_second=1.0, clock=clock, max_keys=3)
    assert [limit.take(a) for a in ("a", "b", "c", "d")] == [None] * 4
    assert limit.take("d") == 1
    assert limit.take("a") is None, "the least recently seen address was forgotten"


async def test_polling_calls_document_what_they_read_from_the_request(
    client: httpx.AsyncClient,
) -> None:
    """The two hot calls read path, query and headers themselves; OpenAPI still lists them."""
    paths = (await client.get("/openapi.json")).json()["paths"]

    def parameters(path: str) -> set[tuple[str, str]]:
        return {(p["in"], p["name"]) for p in paths[path]["get"]["parameters"]}

    assert parameters("/passkit/v1/passes/{pass_type}/{serial}") == {
        ("path", "pass_type"),
        ("path", "serial"),
        ("header", "If-Modified-Since"),
    }
    assert paths["/passkit/v1/passes/{pass_type}/{serial}"]["get"]["security"] == [
        {"ApplePass": []}
    ]
    assert parameters("/passkit/v1/devices/{device}/registrations/{pass_type}") == {
        ("path", "device"),
        ("path", "pass_type"),
        ("query", "passesUpdatedSince"),
    }


def _limited(app: FastAPI, *, devices_per_card: int, passes_per_device: int) -> Clock:
    """The app's registration bounds set lower (its floods on a clock of the test's)."""
    settings: Settings = app.state.settings
    settings.max_devices_per_card = devices_per_card
    settings.max_passes_per_device = passes_per_device
    clock = Clock()
    app.state.registration_floods = RegistrationFloods(
        per_card=RateLimit(burst=devices_per_card, per_second=1 / 60, clock=clock),
        per_device=RateLimit(burst=passes_per_device, per_second=1 / 60, clock=clock),
    )
    return clock


async def _register(client: httpx.AsyncClient, card: Card, device: str) -> httpx.Response:
    return await client.post(
        _registration(card, device), json={"pushToken": TOKEN}, headers=pass_auth(card)
    )


async def _registered(sessionmaker: async_sessionmaker[AsyncSession], card: Card) -> int:
    """In a session of its own, ended at once: on SQLite the app's writes wait for none."""
    counted = select(func.count()).select_from(Registration).where(Registration.card_id == card.id)
    async with sessionmaker() as session:
        return int(await session.scalar(counted) or 0)


async def test_a_flood_of_devices_on_one_card_stops_at_its_bound_and_spares_other_cards(
    client: httpx.AsyncClient,
    card: Card,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """Finding 8: one card's token registered 2,000 made-up devices (2,003 pushes per change).
    With the default bound the card keeps 32; the rest are 429 with Retry-After."""
    answers = [(await _register(client, card, f"flood-{n}")).status_code for n in range(300)]
    assert answers == [201] * settings.max_devices_per_card + [429] * (
        300 - settings.max_devices_per_card
    )
    assert await _registered(sessionmaker, card) == settings.max_devices_per_card
    refused = await _register(client, card, "one-more")
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    other = await create_card(session, await create_merchant(session, settings, "other"))
    assert (await _register(client, other, "flood-1")).status_code == 201


async def test_a_card_with_all_its_devices_refuses_a_new_one_but_not_the_old_ones(
    app: FastAPI,
    client: httpx.AsyncClient,
    card: Card,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    clock = _limited(app, devices_per_card=3, passes_per_device=10)
    for n in range(3):
        assert (await _register(client, card, f"phone-{n}")).status_code == 201
    clock.now += 3600  # the flood allowance is back: what refuses now is the bound
    full = await _register(client, card, "phone-3")
    assert full.status_code == 429
    assert full.headers["retry-after"] == str(FULL_RETRY_AFTER_SECONDS)
    assert full.json()["error"] == "too_many_requests"
    assert (await _register(client, card, "phone-0")).status_code == 200  # a new push token
    unregistered = await client.delete(_registration(card, "phone-1"), headers=pass_auth(card))
    assert unregistered.status_code == 200
    clock.now += 60
    assert (await _register(client, card, "phone-3")).status_code == 201
    assert await _registered(sessionmaker, card) == 3


async def test_a_device_registering_for_too_many_passes_is_refused(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    clock = _limited(app, devices_per_card=5, passes_per_device=2)
    shop = await create_merchant(session, settings)
    cards = [await create_card(session, shop) for _ in range(4)]
    assert (await _register(client, cards[0], DEVICE)).status_code == 201
    assert (await _register(client, cards[1], DEVICE)).status_code == 201
    clock.now += 3600
    refused = await _register(client, cards[2], DEVICE)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == str(FULL_RETRY_AFTER_SECONDS)
    assert (await _register(client, cards[2], "another-device")).status_code == 201


async def test_registering_too_often_is_429_per_card_and_per_device_until_a_minute_passes(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    clock = _limited(app, devices_per_card=2, passes_per_device=3)
    shop = await create_merchant(session, settings)
    card, other = await create_card(session, shop), await create_card(session, shop)
    # The same device re-registering changes nothing but still counts against the card.
    answers = [(await _register(client, card, DEVICE)).status_code for _ in range(4)]
    assert answers == [201, 200, 429, 429]
    flooded = await _register(client, card, DEVICE)
    assert flooded.headers["retry-after"] == "60"
    assert (await _register(client, other, "elsewhere")).status_code == 201
    deleted = await client.delete(_registration(card, DEVICE), headers=pass_auth(card))
    assert deleted.status_code == 429  # unregistering counts too
    clock.now += 60
    assert (await _register(client, card, DEVICE)).status_code == 200
    # The device's own allowance: 3 at once, over every card.
    clock.now += 3600
    third = await create_card(session, shop)
    answers = [(await _register(client, c, "busy")).status_code for c in (card, other, third)]
    assert answers == [201, 201, 201]
    assert (await _register(client, card, "busy")).status_code == 429

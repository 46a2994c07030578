"""Store locations end to end: the admin API sets a merchant's stores, every card gets a new
version carrying them without a notification, the pass's ``locations`` say the store's own text
in the card's language or a shown offer's title while it lasts; bad stores are 422 by field."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.apns_standin import ApnsStandin
from services.contracts.messages import OfferView
from services.core.clock import clock
from services.core.settings import Settings
from services.onboarding import Onboarded
from services.passes import locations
from services.passes.marketing import offers
from tests.e2e.marketing import (
    at_noon,
    audience,
    card_registered,
    notifying_changes,
    offer,
    ordered_card,
    pass_json,
    pushed_in_all,
    reloaded,
    send,
    settled,
)
from tests.factories import create_card, create_merchant

__all__ = ["at_noon"]

BRATISLAVA = {
    "latitude": 48.1439,
    "longitude": 17.1097,
    "relevant_text": {"sk": "Naša predajňa je za rohom", "en": "Our store is round the corner"},
}
PRAGUE = {"latitude": 50.0875, "longitude": 14.4213}


def _admin(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.ensure_admin_token()}"}


async def _set(
    client: httpx.AsyncClient, settings: Settings, stores: list[dict[str, Any]]
) -> httpx.Response:
    return await client.put(
        "/admin/v1/merchants/shop/locations", json={"locations": stores}, headers=_admin(settings)
    )


async def test_stores_reach_every_card_silently_and_an_offer_speaks_near_them(
    at_noon: datetime,
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    jana = await ordered_card(client, sessionmaker, shop)  # in Slovak
    await card_registered(client, jana)
    petr = await create_card(session, shop, customer_id="petr", locale="de")  # no German text
    await card_registered(client, petr)
    await settled(sessionmaker)
    before = await pass_json(client, jana)
    assert "locations" not in before
    pushes = standin.push_count

    answer = await _set(client, settings, [BRATISLAVA, PRAGUE])
    assert answer.status_code == 200, answer.text
    assert answer.json()["locations"][1] == {**PRAGUE, "relevant_text": {}}
    await pushed_in_all(standin, sessionmaker, pushes + 2)  # both phones, once each
    near = await pass_json(client, jana)
    assert near["locations"] == [
        {"latitude": 48.1439, "longitude": 17.1097, "relevantText": "Naša predajňa je za rohom"},
        {"latitude": 50.0875, "longitude": 14.4213},
    ]
    assert notifying_changes(before, near) == set()
    petr_near = await pass_json(client, petr)
    assert petr_near["locations"][0]["relevantText"] == "Our store is round the corner"
    listed = await client.get("/admin/v1/merchants/shop/locations", headers=_admin(settings))
    assert listed.json() == answer.json()

    # The same stores again change nothing.
    assert (await _set(client, settings, [BRATISLAVA, PRAGUE])).status_code == 200
    await settled(sessionmaker)
    assert standin.push_count == pushes + 2

    # While an offer is on the card, its title is what the lock screen says near a store.
    tea = offer("tea", title="10 % off tea", valid_until=at_noon + timedelta(days=2))
    await send_offer(sessionmaker, shop, tea)
    with_offer = await pass_json(client, jana)
    assert [loc.get("relevantText") for loc in with_offer["locations"]] == ["10 % off tea"] * 2
    assert notifying_changes(near, with_offer) == {"offer"}  # the offer's own line, no other
    pushes = standin.push_count
    clock.advance(timedelta(days=2, minutes=1))
    await pushed_in_all(standin, sessionmaker, pushes + 1)  # the offer leaves Jana's card
    expired = await pass_json(client, jana)
    assert expired["locations"] == near["locations"]

    # Cleared: no locations on the pass any more, silently.
    pushes = standin.push_count
    cleared = await client.delete("/admin/v1/merchants/shop/locations", headers=_admin(settings))
    assert cleared.status_code == 204
    await pushed_in_all(standin, sessionmaker, pushes + 2)
    after = await pass_json(client, jana)
    assert "locations" not in after
    assert notifying_changes(expired, after) == set()


async def send_offer(
    sessionmaker: async_sessionmaker[AsyncSession], shop: Onboarded, view: OfferView
) -> None:
    await send(sessionmaker, audience(shop, view, ["c-42"], campaign_id=uuid.uuid4()))
    await settled(sessionmaker)


async def test_every_card_gets_the_stores_a_page_at_a_time(
    at_noon: datetime,
    device_client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(offers, "PAGE", 2)
    monkeypatch.setattr(locations, "PAGE", 2)
    shop = await create_merchant(session, settings)
    cards = [await create_card(session, shop, customer_id=f"c-{n}") for n in range(5)]
    await settled(sessionmaker)
    versions = [(await reloaded(sessionmaker, card)).version for card in cards]
    assert (await _set(device_client, settings, [PRAGUE])).status_code == 200
    await settled(sessionmaker)
    after = [(await reloaded(sessionmaker, card)).version for card in cards]
    assert after == [version + 1 for version in versions]


@pytest.mark.parametrize(
    ("stores", "path"),
    [
        ([PRAGUE] * 11, "body.locations"),
        ([{**PRAGUE, "latitude": 90.5}], "body.locations.0.latitude"),
        ([PRAGUE, {**PRAGUE, "longitude": -180.01}], "body.locations.1.longitude"),
        ([{**PRAGUE, "latitude": "50.1"}], "body.locations.0.latitude"),
        ([{**PRAGUE, "longitude": True}], "body.locations.0.longitude"),
        ([{"latitude": 50.0}], "body.locations.0.longitude"),
        ([{**PRAGUE, "relevant_text": {"en": ""}}], "body.locations.0.relevant_text.en"),
        ([{**PRAGUE, "relevant_text": {"en": "x" * 101}}], "body.locations.0.relevant_text.en"),
        ([{**PRAGUE, "altitude": 3}], "body.locations.0.altitude"),
    ],
)
async def test_bad_stores_are_422_with_the_field_path_and_change_nothing(
    device_client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    stores: list[dict[str, Any]],
    path: str,
) -> None:
    await create_merchant(session, settings)
    refused = await _set(device_client, settings, stores)
    assert refused.status_code == 422, refused.text
    assert path in [e["path"] for e in refused.json()["errors"]], refused.text
    listed = await device_client.get("/admin/v1/merchants/shop/locations", headers=_admin(settings))
    assert listed.json() == {"locations": []}


async def test_coordinates_that_are_no_numbers_are_refused(
    device_client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    """Python's JSON reader takes ``NaN`` and ``Infinity``: a store there is none."""
    await create_merchant(session, settings)
    for value in ("NaN", "Infinity", "-Infinity", "1e400"):
        refused = await device_client.put(
            "/admin/v1/merchants/shop/locations",
            content=f'{{"locations": [{{"latitude": {value}, "longitude": 0}}]}}',
            headers={**_admin(settings), "Content-Type": "application/json"},
        )
        assert refused.status_code == 422, (value, refused.text)

"""A card's links work from the moment the shop has them (issue 17): with the passes consumer
held back (its process down or lagging), the landing page, the pass and the Google link answer
at once, from a card issued on demand; when the queue runs, the card takes the order and the
device registered meanwhile is pushed, as if the card had existed all along."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import zipfile
from collections.abc import AsyncIterator, Iterator
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

from services.apns_standin import ApnsStandin
from services.core.settings import Settings
from services.core.web import create_app
from services.integrations.google_wallet.jwt import SAVE_URL_PREFIX
from services.merchants import google_wallet
from services.offers.app import component as offers_component
from services.orders.app import component as orders_component
from services.passes.app import component as passes_component
from services.passes.models import Card
from services.push.app import component as push_component
from services.push.models import GoogleTarget
from tests.conftest import BASE_URL
from tests.factories import (
    FULL,
    WS,
    Onboarded,
    create_merchant,
    order_event,
    pass_auth,
    post_order_event,
    register_device,
)
from tests.integrations.google_wallet.conftest import ISSUER_ID, WalletApi
from tests.passes.test_pkpass import _verify
from tests.waiting import eventually, pushed

SLOVAK = {"Accept-Language": "sk-SK,sk;q=0.9,en;q=0.5"}


def passes_held_back(settings: Settings) -> FastAPI:
    """orders (with offers, the shop's API), push and the passes service's routes, without its
    queue consumer: what a split deployment serves while the passes consumer is down or behind."""
    web_only = dataclasses.replace(passes_component(settings), subscriptions=())
    shop_api = [orders_component(settings), offers_component(settings)]
    return create_app(settings, [*shop_api, web_only, push_component(settings)])


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client


@pytest.fixture
def wallet_api() -> Iterator[WalletApi]:
    """Google's API, answering every object PATCH, insert and message (push keeps the object
    current)."""
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        api = WalletApi(router)
        echo = httpx.Response(200, json={})
        router.route(method="PATCH", url__regex=r".*/loyaltyObject/.*").mock(return_value=echo)
        router.route(method="POST", url__regex=r".*/loyaltyObject$").mock(return_value=echo)
        router.route(method="POST", url__regex=r".*/addMessage$").mock(return_value=echo)
        yield api


@pytest.fixture
async def shop(
    session: AsyncSession, settings: Settings, service_account_info: dict[str, str], tmp_path: Path
) -> Onboarded:
    """A shop with Google Wallet, as customers of both wallets meet it."""
    key_file = tmp_path / "service-account.json"
    key_file.write_text(json.dumps(service_account_info))
    onboarded = await create_merchant(session, settings)
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


async def _google_synced(
    sessionmaker: async_sessionmaker[AsyncSession], card: Card, version: int
) -> bool:
    """Push has given Google the card's object at ``version``."""
    async with sessionmaker() as session:
        target = await session.get(GoogleTarget, card.id)
        return target is not None and target.synced_version == version


async def _cards(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Card]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Card)))


def _pass_json(response: httpx.Response, tmp_path: Path, root: Path) -> dict[str, Any]:
    """The bundle's pass.json, once its signature verified with openssl."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.apple.pkpass"
    with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
        (tmp_path / "manifest.json").write_bytes(bundle.read("manifest.json"))
        (tmp_path / "signature").write_bytes(bundle.read("signature"))
        document: dict[str, Any] = json.loads(bundle.read("pass.json"))
    verified = _verify(tmp_path, root)
    assert verified.returncode == 0, verified.stderr
    return document


def _status(document: dict[str, Any]) -> str:
    [status] = [f for f in document["storeCard"]["primaryFields"] if f["key"] == "status"]
    return str(status["value"])


async def test_links_answer_before_the_consumer_made_the_card(
    push_settings: Settings,
    standin: ApnsStandin,
    shop: Onboarded,
    wallet_api: WalletApi,
    service_account_info: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    settings = push_settings
    root = settings.keys_dir / "dev-root.pem"
    async with serving(passes_held_back(settings)) as client:
        accepted = await post_order_event(client, shop.api_key, order_event("confirmed", **FULL))
        links = accepted["card"]
        landing, pkpass, google = await asyncio.gather(
            client.get(links["landing_url"], headers=SLOVAK),
            client.get(links["apple_pass_url"], headers=SLOVAK),
            client.get(links["google_save_url"], headers=SLOVAK),
        )

        assert landing.status_code == 200, landing.text
        assert landing.headers["content-type"].startswith("text/html")
        assert '<html lang="sk">' in landing.text
        assert "Vašu kartu pripravujeme" in landing.text
        before = _pass_json(pkpass, tmp_path, root)
        assert before["serialNumber"] == links["serial_number"]
        assert _status(before) == "status.preparing"
        assert google.status_code == 303
        location = google.headers["location"]
        assert location.startswith(SAVE_URL_PREFIX)
        assert len(location) <= 1800
        public_key = serialization.load_pem_private_key(
            service_account_info["private_key"].encode(), password=None
        ).public_key()
        claims = jwt.decode(
            location.removeprefix(SAVE_URL_PREFIX),
            public_key,
            algorithms=["RS256"],
            audience="google",
        )
        [saved] = claims["payload"]["loyaltyObjects"]
        assert saved["id"] == f"{ISSUER_ID}.{links['serial_number']}"

        [card] = await _cards(sessionmaker)  # three requests at once, one card
        assert (card.serial_number, card.locale, card.version) == (links["serial_number"], "sk", 1)
        await register_device(client, card, "phone-1", "0b" * 32)
        await eventually(lambda: _google_synced(sessionmaker, card, version=1))

    async with (
        serving(passes_held_back(settings)) as client,
        serving(create_app(settings, [passes_component(settings)])),
    ):
        await eventually(lambda: pushed(sessionmaker, card.id, devices=1))
        await eventually(lambda: _google_synced(sessionmaker, card, version=2))
        [taken] = await _cards(sessionmaker)
        assert taken.version == 2
        assert taken.customer_name == "Jana Nováková"
        assert standin.push_count == 1
        after = _pass_json(await client.get(links["apple_pass_url"]), tmp_path, root)
        assert after["serialNumber"] == links["serial_number"]
        assert _status(after) == "status.confirmed"
        latest = await client.get(
            f"{WS}/passes/{card.pass_type_identifier}/{card.serial_number}", headers=pass_auth(card)
        )
        assert _status(_pass_json(latest, tmp_path, root)) == "status.confirmed"
        page = (await client.get(links["landing_url"])).text
        assert "Vaša objednávka 1001: Potvrdená" in page
        assert "pripravujeme" not in page

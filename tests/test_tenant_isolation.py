"""Tenant isolation, route by route: merchant A, with everything A holds, reaches for merchant
B's orders, cards, designs and devices, and gets nothing of B's and changes nothing of B's.

``REACHES`` has one row per route of ``serve all``: how A calls it aimed at B's object, and
what A must be answered. Where a merchant's key is the credential the answer is 404, exactly
as for an object that does not exist (never a 403 that would confirm it does); where the
credential is something else (the admin token, a pass's own token, Google's signature, an
unguessable link) the row says so and A's credentials get no further. Afterwards every row of
B's in every table (whatever has B's ``merchant_id``, B's cards' ``card_id`` or B's design's
``design_id``) is as it was. A route added to the app without a row fails
``test_every_route_has_a_row``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.routing import Route

from services.cli import ServiceName, components_of
from services.contracts.wallet_orders import WalletOrderIdentity, wallet_order_identity
from services.core import metrics
from services.core.settings import Settings
from services.core.web import health_router
from services.merchants import google_wallet
from services.models import Base
from services.onboarding import Onboarded, development_wallet_orders
from services.orders.connectors import service as connectors
from services.orders.connectors.common import Platform
from services.orders.connectors.schemas import ConnectorConfigure
from services.passes.models import Card, PassDesign
from tests.factories import (
    EVENTS,
    SHOP_EVENTS,
    WS,
    api_auth,
    batch,
    create_merchant,
    offer_body,
    order_event,
    pass_auth,
    post_order_event,
    post_shop_event,
    register_device,
    registration_url,
    shop_event,
)
from tests.integrations.google_wallet.conftest import ACCESS_TOKEN, TOKEN_URI
from tests.integrations.google_wallet.test_callbacks import GoogleSigner, new_key
from tests.orders.connectors.platforms import SHOPIFY_SECRET, post_shopify, shopify_order
from tests.waiting import eventually, queue_drained

ADMIN = "/admin/v1"
A_ISSUER, B_ISSUER = "3388000000000000001", "3388000000000000002"
B_ORDER = "B-1001"
"""B's order that A writes to under the same id (A gets an order of its own)."""
B_ONLY_ORDER = "B-2002"
"""B's order A never posts: A's reads of it are 404."""
B_OFFER = "autumn-sale"
"""B's offer A creates one of its own under (A gets an offer of its own)."""
B_ONLY_OFFER = "b-only"
"""B's offer A never posts: A's reads and changes of it are 404."""
B_OFFER_TITLE = "B only: 30 % off"
B_DEVICE = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"
B_WEBHOOK = "b-only-shopify-webhook-0b0b0b0b"
"""B's Shopify delivery: A's list of deliveries must not have it."""
A_DEVICE = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0"
PUSH_TOKEN = "ab" * 32
WO = "/wallet-orders/v1"
B_ORDER_TYPE = "order.dev.passpost.other"
B_CART_EVENT: dict[str, Any] = {
    "customer_id": "c-42",
    "data": {"cart_id": "b-cart"},
    "event_id": "b-cart-event",
}
"""B's customer's abandoned cart (B's event id): A recovers "the same" cart of its own."""
B_WATCHED_PRICE_DROP = shop_event(
    "price.dropped",
    "shop",
    {
        "product": {"id": "b-product", "name": "B's tea"},
        "old_price": {"amount": "10", "currency": "EUR"},
        "new_price": {"amount": "5", "currency": "EUR"},
    },
)
"""A drop of the product B's customer watches, posted by A: B's watcher hears nothing."""


@dataclass
class World:
    client: httpx.AsyncClient
    settings: Settings
    signer: GoogleSigner
    a: Onboarded
    b: Onboarded
    a_card: Card
    b_card: Card
    b_campaign: str

    @property
    def b_registration(self) -> str:
        return registration_url(self.b_card, B_DEVICE)

    def wallet_order(self, onboarded: Onboarded, order_id: str) -> WalletOrderIdentity:
        key = self.settings.resolved_secret_key()
        return wallet_order_identity(key, onboarded.merchant.id, order_id)

    def b_wallet_registration(self) -> str:
        b = self.wallet_order(self.b, B_ONLY_ORDER).order_identifier
        return f"{WO}/devices/{B_DEVICE}/registrations/{B_ORDER_TYPE}/{b}"

    def b_link_guessed(self) -> str:
        """B's link token with a character changed: links are not enumerable."""
        token = self.b_card.link_token
        return token[:10] + ("A" if token[10] != "A" else "B") + token[11:]


Call = Callable[[World], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Reach:
    """How A's credentials reach for B's object on one route, and what A must get."""

    call: Call
    status: int
    credential: str
    """What the route takes as a credential, and so why A gets what it gets."""


def _as_a(method: str, url: Callable[[World], str], body: Any = None) -> Call:
    """A request with A's API key."""

    async def call(w: World) -> httpx.Response:
        return await w.client.request(method, url(w), json=body, headers=api_auth(w.a))

    return call


def _with_a_card(method: str, url: Callable[[World], str], body: Any = None) -> Call:
    """A request with the token of A's card, the credential of the PassKit web service."""

    async def call(w: World) -> httpx.Response:
        return await w.client.request(method, url(w), json=body, headers=pass_auth(w.a_card))

    return call


def _with_a_wallet_order(method: str, url: Callable[[World], str], body: Any = None) -> Call:
    """A request with the token of A's Wallet order, the Orders web service's credential."""

    async def call(w: World) -> httpx.Response:
        token = w.wallet_order(w.a, "A-1").authentication_token
        headers = {"Authorization": f"AppleOrder {token}"}
        return await w.client.request(method, url(w), json=body, headers=headers)

    return call


def _anonymous(method: str, url: Callable[[World], str], body: Any = None) -> Call:
    """A request with A's API key where the route takes none (it must not matter)."""
    return _as_a(method, url, body)


async def _callback_for_b_object(w: World) -> httpx.Response:
    """A callback Google signed for A's issuer (A's class) naming an object under B's issuer:
    Google signs every issuer's callbacks with the same keys."""
    now_ms = int(time.time() * 1000)
    message = {
        "classId": f"{A_ISSUER}.{w.a.merchant.slug}",
        "objectId": f"{B_ISSUER}.{w.b_card.serial_number}",
        "expTimeMillis": now_ms + 3_600_000,
        "eventType": "del",
        "nonce": uuid.uuid4().hex,
    }
    body = w.signer.callback(message=message, key_expires=now_ms + 3_600_000, issuer_id=A_ISSUER)
    return await w.client.post("/google/callbacks", content=body)


async def _shopify_signed_by_a_for_b(w: World) -> httpx.Response:
    """A's Shopify webhook, signed with A's connector secret, posted to B's connector."""
    return await post_shopify(w.client, "orders/create", shopify_order("paid"), slug="other")


MERCHANT_KEY = "A's API key: B's objects are not there for it (as if they did not exist)"
ADMIN_TOKEN = "the admin token (ops see every merchant): a merchant's key is not it"
PASS_TOKEN = "the pass's own authenticationToken (Apple): A's card's token opens no other card"
DEVICE_ID = "the device's library id, which only the device knows (Apple's protocol)"
ORDER_TOKEN = "the Wallet order's own authenticationToken: A's order's token opens no other"
LINK = "the unguessable link token (derived with the server's secret key)"
NONE = "nothing: no merchant's data is behind it"

B_SLUG = "/merchants/other"

REACHES: dict[str, Reach] = {
    # Merchant-key routes: A's key on B's object is 404, as for no object at all; a list or
    # the stats are A's own (B's offer title and campaign must not be in them).
    "POST /v1/orders/events": Reach(
        _as_a("POST", lambda w: EVENTS, order_event("cancelled", order_id=B_ORDER)),
        202,  # A's own order under the same id: B's is untouched (checked after)
        MERCHANT_KEY,
    ),
    "POST /v1/orders/events:batch": Reach(
        _as_a(
            "POST", lambda w: f"{EVENTS}:batch", batch(order_event("cancelled", order_id=B_ORDER))
        ),
        200,
        MERCHANT_KEY,
    ),
    "GET /v1/orders/{order_id}": Reach(
        _as_a("GET", lambda w: f"/v1/orders/{B_ONLY_ORDER}"), 404, MERCHANT_KEY
    ),
    "POST /v1/offers": Reach(
        _as_a("POST", lambda w: "/v1/offers", offer_body(offer_id=B_OFFER)),
        202,  # A's own offer under the same id: B's is untouched (checked after)
        MERCHANT_KEY,
    ),
    "GET /v1/offers": Reach(_as_a("GET", lambda w: "/v1/offers"), 200, MERCHANT_KEY),
    "GET /v1/offers/{offer_id}": Reach(
        _as_a("GET", lambda w: f"/v1/offers/{B_ONLY_OFFER}"), 404, MERCHANT_KEY
    ),
    "POST /v1/offers/{offer_id}:cancel": Reach(
        _as_a("POST", lambda w: f"/v1/offers/{B_ONLY_OFFER}:cancel"), 404, MERCHANT_KEY
    ),
    "POST /v1/offers/{offer_id}/redemptions": Reach(
        _as_a(
            "POST",
            lambda w: f"/v1/offers/{B_ONLY_OFFER}/redemptions",
            {"customer_id": "c-1", "code": "TEA10"},
        ),
        404,
        MERCHANT_KEY,
    ),
    "GET /v1/campaigns": Reach(_as_a("GET", lambda w: "/v1/campaigns"), 200, MERCHANT_KEY),
    "GET /v1/campaigns/{campaign_id}": Reach(
        _as_a("GET", lambda w: f"/v1/campaigns/{w.b_campaign}"), 404, MERCHANT_KEY
    ),
    "POST /v1/campaigns/{campaign_id}/audience": Reach(
        _as_a(
            "POST", lambda w: f"/v1/campaigns/{w.b_campaign}/audience", {"customer_ids": ["c-9"]}
        ),
        404,
        MERCHANT_KEY,
    ),
    "POST /v1/customers/{customer_id}/marketing": Reach(
        _as_a("POST", lambda w: "/v1/customers/c-1/marketing", {"consent": False}),
        202,  # A's own customer of that id: B's customer's consent is B's (checked after)
        MERCHANT_KEY,
    ),
    "GET /v1/stats": Reach(_as_a("GET", lambda w: "/v1/stats"), 200, MERCHANT_KEY),
    "GET /v1/connectors/events": Reach(
        _as_a("GET", lambda w: "/v1/connectors/events"), 200, MERCHANT_KEY
    ),
    # A platform's webhook: the signature under the connector's own secret is the credential.
    "POST /v1/connectors/{platform}/{merchant_slug}": Reach(
        _shopify_signed_by_a_for_b,
        401,
        "the platform's signature under the merchant's connector secret: A's signs nothing of B",
    ),
    "POST /v1/customers/{customer_id}/feedback": Reach(
        _as_a("POST", lambda w: "/v1/customers/c-42/feedback", {"order_id": B_ORDER, "score": 2}),
        201,  # A's own customer and order of those ids: B's rating is B's (checked after)
        MERCHANT_KEY,
    ),
    "GET /v1/feedback": Reach(_as_a("GET", lambda w: "/v1/feedback"), 200, MERCHANT_KEY),
    "POST /v1/events": Reach(
        _as_a("POST", lambda w: SHOP_EVENTS, shop_event("cart.recovered", **B_CART_EVENT)),
        202,  # A's own event and customer of those ids: B's reminder stays (checked after)
        MERCHANT_KEY,
    ),
    "POST /v1/events:batch": Reach(
        _as_a("POST", lambda w: f"{SHOP_EVENTS}:batch", batch(B_WATCHED_PRICE_DROP)),
        200,  # no watcher of A's: nothing reaches B's watcher's card
        MERCHANT_KEY,
    ),
    # Admin routes: the admin token or nothing, whichever merchant the path names.
    "GET /admin/v1/merchants": Reach(
        _as_a("GET", lambda w: f"{ADMIN}/merchants"), 401, ADMIN_TOKEN
    ),
    "POST /admin/v1/merchants": Reach(
        _as_a("POST", lambda w: f"{ADMIN}/merchants", {"slug": "other", "name": "Mine"}),
        401,
        ADMIN_TOKEN,
    ),
    "GET /admin/v1/merchants/{slug}": Reach(
        _as_a("GET", lambda w: f"{ADMIN}{B_SLUG}"), 401, ADMIN_TOKEN
    ),
    "POST /admin/v1/merchants/{slug}/api-keys": Reach(
        _as_a("POST", lambda w: f"{ADMIN}{B_SLUG}/api-keys", {"revoke_others": True}),
        401,
        ADMIN_TOKEN,
    ),
    "PUT /admin/v1/merchants/{slug}/signing-secret": Reach(
        _as_a("PUT", lambda w: f"{ADMIN}{B_SLUG}/signing-secret", {"enabled": True}),
        401,
        ADMIN_TOKEN,
    ),
    "PUT /admin/v1/merchants/{slug}/google": Reach(
        _as_a(
            "PUT",
            lambda w: f"{ADMIN}{B_SLUG}/google",
            {"issuer_id": A_ISSUER, "service_account_file": "/etc/passwd"},
        ),
        401,
        ADMIN_TOKEN,
    ),
    "PUT /admin/v1/merchants/{slug}/apple": Reach(
        _as_a(
            "PUT",
            lambda w: f"{ADMIN}{B_SLUG}/apple",
            {
                "pass_type_identifier": "pass.dev.passpost.shop",
                "team_identifier": "PASSPOST42",
                "certificate_path": "a.pem",
                "key_path": "a.key",
                "wwdr_path": "w.pem",
            },
        ),
        401,
        ADMIN_TOKEN,
    ),
    "GET /admin/v1/merchants/{slug}/marketing": Reach(
        _as_a("GET", lambda w: f"{ADMIN}{B_SLUG}/marketing"), 401, ADMIN_TOKEN
    ),
    "GET /admin/v1/merchants/{slug}/journeys": Reach(
        _as_a("GET", lambda w: f"{ADMIN}{B_SLUG}/journeys"), 401, ADMIN_TOKEN
    ),
    "GET /admin/v1/merchants/{slug}/journeys/{journey}": Reach(
        _as_a("GET", lambda w: f"{ADMIN}{B_SLUG}/journeys/welcome"), 401, ADMIN_TOKEN
    ),
    "PATCH /admin/v1/merchants/{slug}/journeys/{journey}": Reach(
        _as_a("PATCH", lambda w: f"{ADMIN}{B_SLUG}/journeys/welcome", {"enabled": False}),
        401,
        ADMIN_TOKEN,
    ),
    "PATCH /admin/v1/merchants/{slug}/marketing": Reach(
        _as_a("PATCH", lambda w: f"{ADMIN}{B_SLUG}/marketing", {"daily_cap": 5}),
        401,
        ADMIN_TOKEN,
    ),
    "PATCH /admin/v1/merchants/{slug}/branding": Reach(
        _as_a("PATCH", lambda w: f"{ADMIN}{B_SLUG}/branding", {"organization_name": "A was here"}),
        401,
        ADMIN_TOKEN,
    ),
    "GET /admin/v1/merchants/{slug}/connectors": Reach(
        _as_a("GET", lambda w: f"{ADMIN}{B_SLUG}/connectors"), 401, ADMIN_TOKEN
    ),
    "PUT /admin/v1/merchants/{slug}/connectors/{platform}": Reach(
        _as_a(
            "PUT", lambda w: f"{ADMIN}{B_SLUG}/connectors/shopify", {"secrets": [SHOPIFY_SECRET]}
        ),
        401,
        ADMIN_TOKEN,
    ),
    "PUT /admin/v1/merchants/{slug}/connectors/{platform}/mapping": Reach(
        _as_a(
            "PUT",
            lambda w: f"{ADMIN}{B_SLUG}/connectors/shopify/mapping",
            {"from": "paid", "to": "cancelled"},
        ),
        401,
        ADMIN_TOKEN,
    ),
    "GET /admin/v1/merchants/{slug}/locations": Reach(
        _as_a("GET", lambda w: f"{ADMIN}{B_SLUG}/locations"), 401, ADMIN_TOKEN
    ),
    "PUT /admin/v1/merchants/{slug}/locations": Reach(
        _as_a(
            "PUT",
            lambda w: f"{ADMIN}{B_SLUG}/locations",
            {"locations": [{"latitude": 48.1, "longitude": 17.1}]},
        ),
        401,
        ADMIN_TOKEN,
    ),
    "DELETE /admin/v1/merchants/{slug}/locations": Reach(
        _as_a("DELETE", lambda w: f"{ADMIN}{B_SLUG}/locations"), 401, ADMIN_TOKEN
    ),
    "POST /admin/v1/merchants/{slug}/cards": Reach(
        _as_a("POST", lambda w: f"{ADMIN}{B_SLUG}/cards", {"customer_id": "c-b"}),
        401,
        ADMIN_TOKEN,
    ),
    # The PassKit web service: each pass has its own token.
    "POST /passkit/v1/devices/{device}/registrations/{pass_type}/{serial}": Reach(
        _with_a_card("POST", lambda w: w.b_registration, {"pushToken": "cd" * 32}),
        401,
        PASS_TOKEN,
    ),
    "DELETE /passkit/v1/devices/{device}/registrations/{pass_type}/{serial}": Reach(
        _with_a_card("DELETE", lambda w: w.b_registration), 401, PASS_TOKEN
    ),
    "GET /passkit/v1/passes/{pass_type}/{serial}": Reach(
        _with_a_card(
            "GET", lambda w: f"{WS}/passes/{w.b_card.pass_type_identifier}/{w.b_card.serial_number}"
        ),
        401,
        PASS_TOKEN,
    ),
    "GET /passkit/v1/devices/{device}/registrations/{pass_type}": Reach(
        _with_a_card(
            "GET",
            lambda w: f"{WS}/devices/{A_DEVICE}/registrations/{w.b_card.pass_type_identifier}",
        ),
        204,  # A's device has no pass of B's
        DEVICE_ID,
    ),
    "POST /passkit/v1/log": Reach(
        _anonymous("POST", lambda w: f"{WS}/log", {"logs": ["a line"]}), 200, NONE
    ),
    # The Wallet Orders web service: each order has its own token.
    "POST /wallet-orders/v1/devices/{device}/registrations/{order_type}/{order_identifier}": Reach(
        _with_a_wallet_order("POST", lambda w: w.b_wallet_registration(), {"pushToken": "cd" * 32}),
        401,
        ORDER_TOKEN,
    ),
    "DELETE /wallet-orders/v1/devices/{device}/registrations/{order_type}/{order_identifier}": (
        Reach(_with_a_wallet_order("DELETE", lambda w: w.b_wallet_registration()), 401, ORDER_TOKEN)
    ),
    "GET /wallet-orders/v1/orders/{order_type}/{order_identifier}": Reach(
        _with_a_wallet_order(
            "GET",
            lambda w: (
                f"{WO}/orders/{B_ORDER_TYPE}/{w.wallet_order(w.b, B_ONLY_ORDER).order_identifier}"
            ),
        ),
        401,
        ORDER_TOKEN,
    ),
    "GET /wallet-orders/v1/devices/{device}/registrations/{order_type}": Reach(
        _with_a_wallet_order(
            "GET", lambda w: f"{WO}/devices/{A_DEVICE}/registrations/{B_ORDER_TYPE}"
        ),
        204,  # A's device has no order of B's
        DEVICE_ID,
    ),
    "POST /wallet-orders/v1/log": Reach(
        _anonymous("POST", lambda w: f"{WO}/log", {"logs": ["a line"]}), 200, NONE
    ),
    "GET /wallet-orders/packages/{order_identifier}/{link}": Reach(
        _anonymous(
            "GET",
            lambda w: (
                f"/wallet-orders/packages/{w.wallet_order(w.b, B_ONLY_ORDER).order_identifier}/"
                f"{w.wallet_order(w.a, 'A-1').link}"
            ),
        ),
        404,
        LINK,
    ),
    # Links a customer opens, and Google's callbacks.
    "GET /c/{link_token}": Reach(
        _anonymous("GET", lambda w: f"/c/{w.b_link_guessed()}"), 404, LINK
    ),
    "GET /c/{link_token}/pass.pkpass": Reach(
        _anonymous("GET", lambda w: f"/c/{w.b_link_guessed()}/pass.pkpass"), 404, LINK
    ),
    "GET /c/{link_token}/marketing": Reach(
        _anonymous("GET", lambda w: f"/c/{w.b_link_guessed()}/marketing"), 404, LINK
    ),
    "POST /c/{link_token}/marketing": Reach(
        _anonymous("POST", lambda w: f"/c/{w.b_link_guessed()}/marketing"), 404, LINK
    ),
    "GET /c/{link_token}/feedback": Reach(
        _anonymous("GET", lambda w: f"/c/{w.b_link_guessed()}/feedback"), 404, LINK
    ),
    "POST /c/{link_token}/feedback": Reach(
        _anonymous("POST", lambda w: f"/c/{w.b_link_guessed()}/feedback"), 404, LINK
    ),
    "GET /c/{link_token}/google": Reach(
        _anonymous("GET", lambda w: f"/c/{w.b_link_guessed()}/google"), 404, LINK
    ),
    "GET /assets/{merchant_slug}/{name}": Reach(
        _anonymous("GET", lambda w: "/assets/other/signing.key"),
        404,
        "nothing: a merchant's card artwork is public (Google fetches it); nothing else is there",
    ),
    "POST /google/callbacks": Reach(
        _callback_for_b_object,
        401,
        "Google's signature for an issuer of ours, on an object under that same issuer",
    ),
    # No tenant's data at all.
    "GET /healthz": Reach(_anonymous("GET", lambda w: "/healthz"), 200, NONE),
    "GET /readyz": Reach(_anonymous("GET", lambda w: "/readyz"), 200, NONE),
    "GET /metrics": Reach(_anonymous("GET", lambda w: "/metrics"), 200, NONE),
    "GET /openapi.json": Reach(_anonymous("GET", lambda w: "/openapi.json"), 200, NONE),
    "GET /docs": Reach(_anonymous("GET", lambda w: "/docs"), 200, NONE),
    "GET /docs/oauth2-redirect": Reach(
        _anonymous("GET", lambda w: "/docs/oauth2-redirect"), 200, NONE
    ),
    "GET /redoc": Reach(_anonymous("GET", lambda w: "/redoc"), 200, NONE),
}


def _routes_of(app: FastAPI, settings: Settings) -> set[str]:
    """Every ``METHOD path`` the app serves: the components' routers, the kernel's, and the
    app's own (OpenAPI, docs)."""
    routers = [health_router, metrics.router]
    routers += [r for c in components_of(ServiceName.all, settings) for r in c.routers]
    routes = [route for router in routers for route in router.routes]
    routes += [route for route in app.router.routes if isinstance(route, Route)]
    return {
        f"{method} {route.path}"
        for route in routes
        if isinstance(route, Route | APIRoute)
        for method in sorted(route.methods or ())
        if method != "HEAD"
    }


def test_every_route_has_a_row(app: FastAPI, settings: Settings) -> None:
    served = _routes_of(app, settings)
    described = {
        f"{method.upper()} {path}"
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    assert described <= served, "a route outside the components' routers: list it here"
    assert served - set(REACHES) == set(), "add each new route to REACHES"
    assert set(REACHES) - served == set(), "a row for a route the app no longer has"


@pytest.fixture
def signer() -> GoogleSigner:
    return GoogleSigner(root=new_key(), intermediate=new_key())


@pytest.fixture
def settings(settings: Settings, signer: GoogleSigner, tmp_path: Path) -> Settings:
    """With Google's root keys, so callbacks are checked rather than refused with a 503."""
    keys = tmp_path / "google-root-keys.json"
    expires = int(time.time() * 1000) + 24 * 3_600_000
    keys.write_text(json.dumps({"keys": signer.root_keys(expires=expires)}))
    return settings.model_copy(update={"google_root_keys_file": keys})


@pytest.fixture
def google() -> Iterator[respx.MockRouter]:
    """Google's API answering every call of A's cards (nothing reaches the network)."""

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=json.loads(request.content) if request.content else {})

    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.post(TOKEN_URI).respond(
            200, json={"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}
        )
        router.route(host="walletobjects.googleapis.com").mock(side_effect=echo)
        yield router


def _in_a_month() -> str:
    return (datetime.now(UTC) + timedelta(days=30)).isoformat()


async def _card_of(session: AsyncSession, onboarded: Onboarded, serial: str) -> Card:
    card = await session.scalar(
        select(Card).where(Card.merchant_id == onboarded.merchant.id, Card.serial_number == serial)
    )
    assert card is not None
    return card


async def _rows_of(session: AsyncSession, b: Onboarded) -> dict[str, list[dict[str, Any]]]:
    """Every row of B's, table by table: B's own, its cards', its design's."""
    merchant_id = b.merchant.id
    cards = set(
        (await session.scalars(select(Card.id).where(Card.merchant_id == merchant_id))).all()
    )
    designs = set(
        (
            await session.scalars(
                select(PassDesign.id).where(PassDesign.merchant_id == merchant_id)
            )
        ).all()
    )
    rows: dict[str, list[dict[str, Any]]] = {}
    for table in Base.metadata.sorted_tables:
        columns = table.columns
        if table.name == "merchants":
            condition = columns["id"] == merchant_id
        elif "merchant_id" in columns:
            condition = columns["merchant_id"] == merchant_id
        elif "card_id" in columns:
            condition = columns["card_id"].in_(cards)
        elif "design_id" in columns:
            condition = columns["design_id"].in_(designs)
        else:
            continue
        result = await session.execute(select(table).where(condition))
        rows[table.name] = sorted(
            (dict(row._mapping) for row in result), key=lambda row: repr(sorted(row.items()))
        )
    return rows


async def test_no_route_lets_one_merchant_reach_anothers(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    signer: GoogleSigner,
    google: respx.MockRouter,
    service_account_info: dict[str, str],
    tmp_path: Path,
) -> None:
    a = await create_merchant(session, settings, slug="shop", name="Shop")
    b = await create_merchant(session, settings, slug="other", name="Other")
    for onboarded in (a, b):
        await development_wallet_orders(session, settings, onboarded.merchant)
    await session.commit()
    a_links = await post_order_event(client, a.api_key, order_event(order_id="A-1"))
    await post_order_event(client, b.api_key, order_event(order_id=B_ORDER))
    b_links = await post_order_event(client, b.api_key, order_event(order_id=B_ONLY_ORDER))
    cart = {**B_CART_EVENT, "data": {**B_CART_EVENT["data"], "url": "https://b.example/c"}}
    await post_shop_event(client, b, shop_event("cart.abandoned", **cart))
    watch = {"product_id": "b-product"}
    await post_shop_event(client, b, shop_event("customer.watch", "c-42", watch))
    b_campaign = ""
    for offer_id in (B_OFFER, B_ONLY_OFFER):
        body = offer_body(offer_id=offer_id, title=B_OFFER_TITLE, valid_until=_in_a_month())
        created = await client.post("/v1/offers", json=body, headers=api_auth(b))
        assert created.status_code == 202, created.text
        b_campaign = created.json()["campaign_id"]
    b_rating = {"order_id": B_ORDER, "score": 10, "text": B_OFFER_TITLE}
    rated = await client.post("/v1/customers/c-42/feedback", json=b_rating, headers=api_auth(b))
    assert rated.status_code == 201, rated.text
    await eventually(lambda: queue_drained(sessionmaker))
    a_card = await _card_of(session, a, a_links["card"]["serial_number"])
    b_card = await _card_of(session, b, b_links["card"]["serial_number"])
    await session.commit()  # a session of the app's kind holds SQLite's write lock till then
    await register_device(client, b_card, B_DEVICE, PUSH_TOKEN)
    b_order = wallet_order_identity(settings.resolved_secret_key(), b.merchant.id, B_ONLY_ORDER)
    registered = await client.post(
        f"{WO}/devices/{B_DEVICE}/registrations/{B_ORDER_TYPE}/{b_order.order_identifier}",
        json={"pushToken": PUSH_TOKEN},
        headers={"Authorization": f"AppleOrder {b_order.authentication_token}"},
    )
    assert registered.status_code == 201, registered.text
    key_file = tmp_path / "service-account.json"
    key_file.write_text(json.dumps(service_account_info))
    for onboarded, issuer in ((a, A_ISSUER), (b, B_ISSUER)):
        merchant = await session.merge(onboarded.merchant)
        await google_wallet.configure(
            session, merchant, issuer_id=issuer, service_account_file=key_file, origins=[]
        )
    await session.commit()
    for onboarded, secret in ((a, SHOPIFY_SECRET), (b, "shpss_b-only-secret-0123456789")):
        merchant = await session.merge(onboarded.merchant)
        body = ConnectorConfigure(secrets=[secret])
        await connectors.configure(session, merchant, Platform.shopify, body)
    await session.commit()
    b_delivery = await post_shopify(  # unmappable: a delivery of B's that changes no card
        client,
        "orders/create",
        shopify_order("b-only-status"),
        slug="other",
        secret="shpss_b-only-secret-0123456789",
        webhook_id=B_WEBHOOK,
    )
    assert b_delivery.status_code == 200, b_delivery.text
    world = World(client, settings, signer, a, b, a_card, b_card, b_campaign)
    await eventually(lambda: queue_drained(sessionmaker))  # B's counts of it all are in
    before = await _rows_of(session, b)
    await session.commit()

    answers = {name: await reach.call(world) for name, reach in REACHES.items()}
    await eventually(lambda: queue_drained(sessionmaker))

    wrong = {
        name: (answer.status_code, answer.text[:200])
        for name, answer in answers.items()
        if answer.status_code != REACHES[name].status
    }
    assert wrong == {}
    # What A did not send and must not learn (a 404 may echo the id A asked for).
    b_said = [
        b_card.serial_number,
        b_card.link_token,
        b_card.authentication_token,
        b.api_key,
        b_order.authentication_token,
        b_order.link,
        B_OFFER_TITLE,  # (B's campaign id A sent, and a 404 may echo it)
        B_WEBHOOK,
    ]
    leaks = {
        name: [s for s in b_said if s in answer.text]
        for name, answer in answers.items()
        if any(s in answer.text for s in b_said)
    }
    assert leaks == {}
    assert await _rows_of(session, b) == before
    await session.commit()
    # B's key still works, and B's order and card are B's as they were.
    mine = await client.get(f"/v1/orders/{B_ORDER}", headers=api_auth(b))
    assert mine.json()["status"] == "confirmed"

"""Factories for test data: each makes a valid object with what a test leaves out.

The async ones write to the database (and commit); the others build what a client sends.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.clock import clock
from services.core.settings import Settings
from services.merchants.schemas import MerchantCreate
from services.onboarding import Onboarded, onboard_merchant
from services.orders.schemas import OrderEventIn
from services.passes.issuing import issue_card
from services.passes.models import Card
from services.passes.schemas import Branding, CardIssue

_customers = itertools.count(1)
_events = itertools.count(1)

EVENTS = "/v1/orders/events"
"""Where a shop posts an order event (``:batch`` appended for many)."""
WS = "/passkit/v1"
"""Apple's PassKit web service, as a device calls it."""

SHOP_BRANDING = Branding(
    support_phone="+421 2 1234 5678",
    order_url_template="https://shop.example.com/orders/{order_id}",
    tracking_url_template="https://track.example.com/{tracking_number}",
    returns_url_template="https://shop.example.com/returns?order={order_number}",
    account_url_template="https://shop.example.com/account",
)


async def create_merchant(
    session: AsyncSession, settings: Settings, slug: str = "shop", name: str = "Shop"
) -> Onboarded:
    """A merchant with an API key and a design signed by the development chain (committed)."""
    onboarded = await onboard_merchant(
        session, settings, MerchantCreate(slug=slug, name=name), branding=SHOP_BRANDING
    )
    await session.commit()
    return onboarded


TEST_SECRET_KEY = b"test-secret-key-of-at-least-32-characters"


async def create_card(
    session: AsyncSession,
    onboarded: Onboarded,
    customer_id: str | None = None,
    name: str | None = "Jana Nováková",
    locale: str | None = "sk",
) -> Card:
    card = await issue_card(
        session,
        onboarded.merchant,
        CardIssue(
            customer_id=customer_id or f"c-{next(_customers)}", customer_name=name, locale=locale
        ),
        TEST_SECRET_KEY,
    )
    await session.commit()
    return card


def order_event(
    status: str = "confirmed",
    *,
    order_id: str = "A-1001",
    at: str | None = None,
    event_id: str | None = None,
    **order: Any,
) -> dict[str, Any]:
    """An order event as a shop posts it (a fresh id unless given); ``order`` adds fields."""
    return {
        "id": event_id or f"evt_{next(_events)}",
        "occurred_at": at or "2026-11-23T10:15:00Z",
        "order": {
            "id": order_id,
            "number": "1001",
            "status": status,
            "customer": {"id": "c-42", "name": "Jana Nováková", "locale": "sk"},
            **order,
        },
    }


FULL: dict[str, Any] = {
    "total": {"amount": "49.90", "currency": "EUR"},
    "shipping": {
        "carrier": "DPD",
        "tracking_number": "0123456789",
        "tracking_url": "https://track.example.com/0123456789",
        "estimated_delivery": "2026-11-25",
        "cost": {"amount": "0.00", "currency": "EUR"},
    },
    "items": [{"name": "Tea kettle", "quantity": 1}],
    "links": {
        "order": "https://shop.example.com/orders/A-1001",
        "returns": "https://shop.example.com/returns/A-1001",
    },
}
"""Every snapshot field an order event can carry, for ``order_event(**FULL)``."""


def batch(*events: dict[str, Any]) -> dict[str, Any]:
    """The body of ``POST /v1/orders/events:batch``."""
    return {"events": list(events)}


def api_auth(onboarded: Onboarded) -> dict[str, str]:
    """The headers of a shop's backend calling the orders API with its key."""
    return {"Authorization": f"Bearer {onboarded.api_key}"}


async def post_order_event(
    client: httpx.AsyncClient, api_key: str, event: dict[str, Any]
) -> dict[str, Any]:
    """Post one event as the shop with ``api_key``; it must be accepted (its answer)."""
    response = await client.post(EVENTS, json=event, headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def push_token() -> str:
    """A push token of a device's own (64 hex digits, as APNs hands them out)."""
    return uuid.uuid4().hex * 2


def pass_auth(card: Card) -> dict[str, str]:
    """The headers of a device asking about ``card`` (the token in its pass)."""
    return {"Authorization": f"ApplePass {card.authentication_token}"}


def registration_url(card: Card, device: str) -> str:
    """Where ``device`` registers for (and unregisters from) ``card``'s updates."""
    return f"{WS}/devices/{device}/registrations/{card.pass_type_identifier}/{card.serial_number}"


async def register_device(client: httpx.AsyncClient, card: Card, device: str, token: str) -> None:
    """Register ``device`` for ``card``'s pushes with ``token``; it must be a new registration."""
    response = await client.post(
        registration_url(card, device), json={"pushToken": token}, headers=pass_auth(card)
    )
    assert response.status_code == 201, response.text


def order_event_in(status: str = "confirmed", **fields: Any) -> OrderEventIn:
    """``order_event(...)`` as the orders service receives it, validated."""
    return OrderEventIn.model_validate(order_event(status, **fields))


OFFERS = "/v1/offers"
"""Where a shop creates offers (and finds them: ``/v1/offers/{id}``)."""


def offer_body(
    target: dict[str, Any] | None = None,
    *,
    offer_id: str | None = None,
    valid_until: str = "2026-12-31T23:00:00Z",
    **fields: Any,
) -> dict[str, Any]:
    """An offer as a shop posts it (a fresh id unless given), for two customers by default."""
    return {
        "id": offer_id or f"offer-{next(_events)}",
        "title": "10 % off tea",
        "text": "All teas this week, with the code below.",
        "coupon_code": "TEA10",
        "url": "https://shop.example.com/tea",
        "valid_until": valid_until,
        "target": target or {"customer_ids": ["c-1", "c-2"]},
        "notify": True,
        **fields,
    }


SHOP_EVENTS = "/v1/events"
"""Where a shop posts its customers' events (and ``/v1/events:batch``)."""


def shop_event(
    kind: str,
    customer_id: str = "c-42",
    data: dict[str, Any] | None = None,
    *,
    event_id: str | None = None,
    **customer: Any,
) -> dict[str, Any]:
    """A shop event's body, happening now on the clock."""
    body: dict[str, Any] = {
        "id": event_id or f"ev-{uuid.uuid4().hex[:12]}",
        "occurred_at": clock.now().isoformat(),
        "type": kind,
        "customer": {"id": customer_id, **customer},
    }
    if data is not None:
        body["data"] = data
    return body


async def post_shop_event(
    client: httpx.AsyncClient, onboarded: Onboarded, event: dict[str, Any]
) -> dict[str, Any]:
    """Post one shop event; it must be accepted (its answer)."""
    response = await client.post(SHOP_EVENTS, json=event, headers=api_auth(onboarded))
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body

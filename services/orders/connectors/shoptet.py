"""Shoptet: webhooks that name an order, and the order fetched from the shop's API.

A webhook (developers.shoptet.com/api/documentation/webhooks/, api.docs.shoptet.com
"Webhooks") carries only ``{eshopId, event, eventCreated, eventInstance}``; for ``order:create``
and ``order:update`` the instance is the order's code. It is signed in the
``Shoptet-Webhook-Signature`` header: the hex HMAC-SHA1 of the raw body under the shop's
signature key (``POST /api/webhooks/renew-signature-key`` issues it). We dedupe on all four
fields, record the delivery and answer at once; the fetch job (``fetching.py``) then reads
``GET /api/orders/{code}`` with the shop's access token and maps the order, its status by the
shop's own status ids (``GET /api/orders/statuses``, read once per merchant).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from services.contracts.orders import OrderStatus
from services.orders.connectors.common import (
    Mapped,
    Outcome,
    Platform,
    Received,
    Skip,
    card_language,
    event_id,
    fields,
    items,
    money,
    order_event,
    parse_time,
    text,
)

SIGNATURE_HEADER = "shoptet-webhook-signature"
ORDER_EVENTS = frozenset({"order:create", "order:update"})
TOKEN_HEADER = "Shoptet-Access-Token"  # noqa: S105  (a header's name)
MEDIA_TYPE = "application/vnd.shoptet.v1.0"
S = OrderStatus

STATUSES: dict[str, OrderStatus | None] = {
    "-1": S.placed,  # Nevyřízená / Nevybavená: new
    "-2": S.processing,  # Vyřizuje se / Vybavuje sa: being handled
    "-3": S.shipped,  # Vyřízena / Vybavená: done, sent
    "-4": S.cancelled,  # Stornována / Stornovaná
}
"""Shoptet's system statuses (negative ids) and ours. A shop's own statuses (positive ids) are
its own: unmappable until the merchant maps them (``connectors map --from 12 --to delivered``);
a status marked as paid (``markAsPaid``) counts as confirmed meanwhile."""

PRODUCT_ITEMS = frozenset({"product", "product-set", "service", "gift", "bazar"})


def receive(payload: Any) -> Received:
    body = payload if isinstance(payload, dict) else {}
    instance = body.get("eventInstance")
    return Received(
        topic=str(body.get("event", "")),
        dedupe="|".join(
            str(body.get(k)) for k in ("eshopId", "event", "eventInstance", "eventCreated")
        ),
        delivery=None,
        order_ref=None if instance is None else str(instance),
        occurred_at=parse_time(_iso(body.get("eventCreated"))),
        payload=payload,
    )


def _iso(value: object) -> object:
    """Shoptet writes offsets as ``+0100``: ISO 8601's basic form, ``+01:00`` for Python."""
    if isinstance(value, str) and len(value) > 5 and value[-5] in "+-" and value[-4:].isdigit():
        return f"{value[:-2]}:{value[-2:]}"
    return value


def skip_early(received: Received) -> Skip | None:
    """What needs no fetch: an event that is not an order's, or one that names none."""
    if received.topic not in ORDER_EVENTS:
        return Skip(Outcome.ignored, f"event {received.topic!r} says nothing of an order")
    if not received.order_ref:
        return Skip(Outcome.unmappable, "no eventInstance (the order's code)")
    return None


class FetchFailed(Exception):
    """The shop's API did not give us what we asked for (this time)."""


async def fetch_order(
    client: httpx.AsyncClient, base_url: str, token: str, code: str
) -> dict[str, Any]:
    """``GET /api/orders/{code}``: the order's detail (``data.order``)."""
    body = await _get(client, f"{base_url}/api/orders/{code}", token)
    order = (body.get("data") or {}).get("order") if isinstance(body, dict) else None
    if not isinstance(order, dict):
        raise FetchFailed("the order's detail has no data.order")
    return order


async def fetch_statuses(
    client: httpx.AsyncClient, base_url: str, token: str
) -> dict[str, dict[str, Any]]:
    """``GET /api/orders/statuses``: the shop's statuses by id (name, system, markAsPaid)."""
    body = await _get(client, f"{base_url}/api/orders/statuses", token)
    statuses = (body.get("data") or {}).get("statuses") if isinstance(body, dict) else None
    if not isinstance(statuses, list):
        raise FetchFailed("the statuses have no data.statuses")
    return {
        str(s["id"]): {
            "name": text(s.get("name")),
            "system": bool(s.get("system")),
            "markAsPaid": bool(s.get("markAsPaid")),
        }
        for s in statuses
        if isinstance(s, dict) and "id" in s
    }


async def _get(client: httpx.AsyncClient, url: str, token: str) -> Any:
    try:
        answer = await client.get(url, headers={TOKEN_HEADER: token, "Content-Type": MEDIA_TYPE})
    except httpx.HTTPError as exc:
        raise FetchFailed(f"the shop's API could not be reached ({type(exc).__name__})") from exc
    if answer.status_code != 200:
        raise FetchFailed(f"the shop's API answered {answer.status_code}")
    try:
        return answer.json()
    except ValueError as exc:
        raise FetchFailed("the shop's API answered something other than JSON") from exc


def to_event(
    order: dict[str, Any],
    statuses: Mapping[str, Mapping[str, Any]],
    overrides: Mapping[str, str],
    fetched_for: datetime,
) -> Mapped:
    """The fetched order as an order event. Its time is the order's ``changeTime`` (the state
    read), so two deliveries that read the same state make the same event, applied once."""
    code = text(str(order.get("code") or ""))
    status = _status(order.get("status"), statuses, overrides)
    if isinstance(status, Skip):
        return status
    customer_id = order.get("customerGuid") or order.get("email")
    if not code or not customer_id:
        return Skip(Outcome.unmappable, "missing customer: no customerGuid and no email")
    changed = parse_time(_iso(order.get("changeTime") or order.get("creationTime")))
    occurred_at = changed or fetched_for
    billing = fields(order.get("billingAddress"))
    price = fields(order.get("price"))
    lines = [i for i in order.get("items") or [] if isinstance(i, dict)]
    carrier = next((i.get("name") for i in lines if i.get("itemType") == "shipping"), None)
    snapshot: dict[str, Any] = {
        "id": code,
        "number": text(code, 50),
        "status": status,
        "customer": {
            "id": str(customer_id),
            "name": text(billing.get("fullName")),
            "locale": card_language(order.get("language")),
        },
        "total": money(price.get("withVat"), price.get("currencyCode")),
        "shipping": {"carrier": text(carrier)},
        "items": items([i for i in lines if i.get("itemType") in PRODUCT_ITEMS], quantity="amount")
        or None,
    }
    key = f"{occurred_at.isoformat()}:{snapshot['status']}"
    return order_event(event_id(Platform.shoptet, code, key), occurred_at, snapshot)


def _status(
    given: object, statuses: Mapping[str, Mapping[str, Any]], overrides: Mapping[str, str]
) -> OrderStatus | Skip:
    status_id = str(given.get("id")) if isinstance(given, dict) else None
    if status_id is None:
        return Skip(Outcome.unmappable, "the order has no status")
    if status_id in overrides:
        return OrderStatus(overrides[status_id])
    if (ours := STATUSES.get(status_id)) is not None:
        return ours
    known = statuses.get(status_id) or {}
    if known.get("markAsPaid"):
        return S.confirmed
    name = known.get("name") or (given.get("name") if isinstance(given, dict) else None)
    return Skip(
        Outcome.unmappable,
        f"the shop's status {name!r} (id {status_id}) has no mapping: connectors map"
        f" --from {status_id} --to <status>",
    )

"""Shopify: order, fulfillment and refund webhooks.

Headers (shopify.dev/docs/apps/build/webhooks): ``X-Shopify-Hmac-Sha256`` (base64 HMAC-SHA256
of the raw body with the app's secret), ``X-Shopify-Topic``, ``X-Shopify-Webhook-Id`` (the same
on every retry of one delivery: we dedupe on it), ``X-Shopify-Event-Id``,
``X-Shopify-Triggered-At``. Payloads are the REST Admin API's Order, Fulfillment,
FulfillmentEvent and Refund resources. Order by the resource's own time: ``updated_at``
(orders, fulfillments), ``happened_at`` (fulfillment events), ``created_at`` (refunds).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from services.contracts.orders import OrderStatus
from services.orders.connectors.common import (
    KnownOrder,
    Mapped,
    Outcome,
    Platform,
    Received,
    Skip,
    card_language,
    event_id,
    fields,
    full_name,
    http_url,
    items,
    money,
    order_event,
    parse_time,
    status_for,
    text,
)

SIGNATURE_HEADER = "x-shopify-hmac-sha256"
S = OrderStatus

STATUSES: dict[str, OrderStatus | None] = {
    # The order's financial_status, when nothing is fulfilled yet.
    "pending": S.placed,
    "authorized": S.placed,
    "partially_paid": S.placed,
    "paid": S.confirmed,
    "partially_refunded": S.confirmed,
    "refunded": S.refunded,
    "voided": None,
    "cancelled": S.cancelled,
    # A fulfillment's shipment_status (or its event's status); "fulfilled" when it has none.
    "fulfilled": S.shipped,
    "label_printed": S.processing,
    "label_purchased": S.processing,
    "confirmed": S.shipped,
    "in_transit": S.shipped,
    "carrier_picked_up": S.shipped,
    "out_for_delivery": S.out_for_delivery,
    "delivered": S.delivered,
    "ready_for_pickup": S.ready_for_pickup,
    "picked_up": S.picked_up,
    "attempted_delivery": S.delivery_issue,
    "failure": S.delivery_issue,
    "delayed": S.delivery_issue,
    "not_delivered": S.delivery_issue,
}
"""Shopify's statuses and ours; a merchant overrides any (``connectors map``)."""

ORDER_TOPICS = frozenset(
    {
        "orders/create",
        "orders/updated",
        "orders/paid",
        "orders/cancelled",
        "orders/fulfilled",
        "orders/partially_fulfilled",
    }
)
FULFILLMENT_TOPICS = frozenset({"fulfillments/create", "fulfillments/update"})


def receive(headers: Mapping[str, str], payload: Any) -> Received:
    topic = headers.get("x-shopify-topic", "")
    webhook = headers.get("x-shopify-webhook-id")
    body = payload if isinstance(payload, dict) else {}
    order_ref = body.get("id") if topic in ORDER_TOPICS else body.get("order_id")
    when = body.get("happened_at") or body.get("updated_at") or body.get("created_at")
    return Received(
        topic=topic,
        dedupe=webhook or f"{topic}|{headers.get('x-shopify-event-id')}|{when}|{order_ref}",
        delivery=webhook,
        order_ref=None if order_ref is None else str(order_ref),
        occurred_at=parse_time(when) or parse_time(headers.get("x-shopify-triggered-at")),
        payload=payload,
    )


def to_event(received: Received, overrides: Mapping[str, str], known: KnownOrder | None) -> Mapped:
    body = received.payload
    if not isinstance(body, dict) or received.order_ref is None:
        return Skip(Outcome.unmappable, "not a Shopify order, fulfillment or refund")
    if received.occurred_at is None:
        return Skip(Outcome.unmappable, "no updated_at, happened_at or created_at")
    if received.topic in ORDER_TOPICS:
        return _order(received, body, overrides)
    if received.topic in FULFILLMENT_TOPICS:
        key = body.get("shipment_status") or "fulfilled"
        return _on_known(received, known, key, overrides, _shipping(body))
    if received.topic == "fulfillment_events/create":
        eta = body.get("estimated_delivery_at")
        shipping = {"estimated_delivery": eta[:10]} if isinstance(eta, str) else {}
        return _on_known(received, known, str(body.get("status")), overrides, shipping)
    if received.topic == "refunds/create":
        return _refund(received, body, overrides, known)
    return Skip(Outcome.ignored, f"topic {received.topic!r} says nothing of an order's progress")


def _order(received: Received, body: dict[str, Any], overrides: Mapping[str, str]) -> Mapped:
    status = status_for(_order_status_key(body), STATUSES, overrides)
    if isinstance(status, Skip):
        return status
    customer = fields(body.get("customer"))
    customer_id = customer.get("id") or body.get("email")
    if customer_id is None:
        return Skip(Outcome.unmappable, "missing customer: no customer.id and no email")
    fulfillment = _latest_fulfillment(body)
    order: dict[str, Any] = {
        "id": received.order_ref,
        "number": text(body.get("name"), 50) or text(str(body.get("order_number") or ""), 50),
        "status": status,
        "customer": {
            "id": str(customer_id),
            "name": full_name(customer.get("first_name"), customer.get("last_name")),
            "locale": card_language(body.get("customer_locale")),
        },
        "total": money(body.get("total_price"), body.get("currency")),
        "shipping": _shipping(fulfillment) if fulfillment else None,
        "items": items(body.get("line_items")) or None,
        "links": {"order": http_url(body.get("order_status_url"))},
    }
    return order_event(_id(received), received.occurred_at, order)


def _order_status_key(body: dict[str, Any]) -> str:
    """What decides the order's status: cancelled or refunded, else how far its latest
    fulfillment got, else how far its payment got."""
    if body.get("cancelled_at"):
        return "cancelled"
    if body.get("financial_status") == "refunded":
        return "refunded"
    if fulfillment := _latest_fulfillment(body):
        return str(fulfillment.get("shipment_status") or "fulfilled")
    return str(body.get("financial_status"))


def _latest_fulfillment(body: dict[str, Any]) -> dict[str, Any] | None:
    fulfillments = [
        f
        for f in body.get("fulfillments") or []
        if isinstance(f, dict) and f.get("status") not in ("cancelled", "error", "failure")
    ]
    return max(fulfillments, key=lambda f: str(f.get("updated_at") or ""), default=None)


def _shipping(fulfillment: dict[str, Any]) -> dict[str, Any]:
    numbers = fulfillment.get("tracking_numbers") or [fulfillment.get("tracking_number")]
    urls = fulfillment.get("tracking_urls") or [fulfillment.get("tracking_url")]
    return {
        "carrier": text(fulfillment.get("tracking_company")),
        "tracking_number": text(numbers[0] if numbers else None, 100),
        "tracking_url": http_url(urls[0] if urls else None),
    }


def _on_known(
    received: Received,
    known: KnownOrder | None,
    key: str,
    overrides: Mapping[str, str],
    shipping: dict[str, Any],
) -> Mapped:
    """A fulfillment or its event: it names the order but not the customer, so the order must
    be known already (its orders/create makes it)."""
    if known is None:
        return Skip(Outcome.unmappable, "missing customer: the order is not known yet")
    status = status_for(key, STATUSES, overrides)
    if isinstance(status, Skip):
        return status
    order = {
        "id": received.order_ref,
        "status": status,
        "customer": {"id": known.customer_id},
        "shipping": shipping or None,
    }
    return order_event(_id(received), received.occurred_at, order)


def _refund(
    received: Received,
    body: dict[str, Any],
    overrides: Mapping[str, str],
    known: KnownOrder | None,
) -> Mapped:
    """Refunded when the refund's successful transactions cover the order's total; a partial
    refund keeps the order's status."""
    if known is None:
        return Skip(Outcome.unmappable, "missing customer: the order is not known yet")
    refunded = _refunded_amount(body.get("transactions"))
    if known.total is None or refunded < known.total:
        return Skip(Outcome.ignored, "a partial refund keeps the order's status")
    return _on_known(received, known, "refunded", overrides, {})


def _refunded_amount(transactions: object) -> Decimal:
    total = Decimal(0)
    for t in transactions if isinstance(transactions, list) else []:
        if isinstance(t, dict) and t.get("kind") == "refund" and t.get("status") == "success":
            try:
                total += Decimal(str(t.get("amount")))
            except InvalidOperation:
                continue
    return total


def _id(received: Received) -> str:
    return event_id(Platform.shopify, received.topic, received.dedupe)

"""WooCommerce: the order.created and order.updated webhooks (order.deleted is ignored).

Headers (woocommerce.github.io/woocommerce-rest-api-docs, "Webhooks"): ``X-WC-Webhook-Signature``
(base64 HMAC-SHA256 of the raw body with the webhook's secret), ``X-WC-Webhook-Topic``,
``X-WC-Webhook-Delivery-ID`` (new for every delivery, a retry included: not an event id, so we
dedupe on the order's id, ``date_modified_gmt`` and status). The body is the REST API's order.
The first request after set-up is a ping, ``webhook_id=N`` form-encoded and unsigned: the
router answers it 200 without reading further (``PING``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from services.contracts.orders import OrderStatus
from services.orders.connectors.common import (
    KnownOrder,
    Mapped,
    Outcome,
    Platform,
    Received,
    Skip,
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

SIGNATURE_HEADER = "x-wc-webhook-signature"
PING = re.compile(rb"^webhook_id=[0-9]{1,20}$")
S = OrderStatus

STATUSES: dict[str, OrderStatus | None] = {
    "pending": S.placed,
    "on-hold": S.placed,
    "processing": S.confirmed,
    "completed": S.shipped,  # core WooCommerce has no "delivered"
    "cancelled": S.cancelled,
    "failed": S.cancelled,
    "refunded": S.refunded,
    "checkout-draft": None,
    "trash": None,
}
"""WooCommerce's order statuses and ours; a merchant overrides any (``connectors map``), a
plugin's own status ("wc-shipped", say) included."""

TRACKING_META = "_wc_shipment_tracking_items"


def receive(headers: Mapping[str, str], payload: Any) -> Received:
    body = payload if isinstance(payload, dict) else {}
    order_ref = body.get("id")
    modified = body.get("date_modified_gmt") or body.get("date_modified")
    return Received(
        topic=headers.get("x-wc-webhook-topic", ""),
        dedupe=f"{order_ref}|{modified}|{body.get('status')}",
        delivery=headers.get("x-wc-webhook-delivery-id"),
        order_ref=None if order_ref is None else str(order_ref),
        occurred_at=parse_time(modified),
        payload=payload,
    )


def to_event(received: Received, overrides: Mapping[str, str], known: KnownOrder | None) -> Mapped:
    body = received.payload
    if received.topic == "order.deleted":
        return Skip(Outcome.ignored, "a deleted order leaves the card as it is")
    if not isinstance(body, dict) or received.order_ref is None:
        return Skip(Outcome.unmappable, "not a WooCommerce order")
    if received.occurred_at is None:
        return Skip(Outcome.unmappable, "no date_modified_gmt")
    status = status_for(str(body.get("status")), STATUSES, overrides)
    if isinstance(status, Skip):
        return status
    billing = fields(body.get("billing"))
    customer_id = body.get("customer_id") or billing.get("email")
    if not customer_id:
        return Skip(Outcome.unmappable, "missing customer: no customer_id and no billing email")
    order: dict[str, Any] = {
        "id": received.order_ref,
        "number": text(str(body.get("number") or ""), 50),
        "status": status,
        "customer": {
            "id": str(customer_id),
            "name": full_name(billing.get("first_name"), billing.get("last_name")),
        },
        "total": money(body.get("total"), body.get("currency")),
        "shipping": _tracking(body.get("meta_data")),
        "items": items(body.get("line_items")) or None,
    }
    event = event_id(Platform.woocommerce, received.order_ref, received.dedupe)
    return order_event(event, received.occurred_at, order)


def _tracking(meta: object) -> dict[str, Any] | None:
    """The Shipment Tracking extension's latest item, when the order carries one."""
    for entry in meta if isinstance(meta, list) else []:
        if not isinstance(entry, dict) or entry.get("key") != TRACKING_META:
            continue
        tracked = [t for t in entry.get("value") or [] if isinstance(t, dict)]
        if not tracked:
            return None
        latest = tracked[-1]
        carrier = latest.get("tracking_provider") or latest.get("custom_tracking_provider")
        return {
            "carrier": text(carrier),
            "tracking_number": text(latest.get("tracking_number"), 100),
            "tracking_url": http_url(latest.get("custom_tracking_link")),
        }
    return None

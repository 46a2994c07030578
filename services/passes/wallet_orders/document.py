"""What a Wallet order version shows: order.json and each language's order.strings (pure).

Our statuses map onto Apple's two levels: the order (``open``, ``completed``, ``cancelled``)
and its one fulfilment, shipping or pickup, with Apple's fulfilment statuses. Words the
customer reads are keys of ``passes.texts`` resolved per language in ``order.strings``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import urlsplit

from services.contracts.orders import OrderStatus
from services.passes.texts import LOCALES, Overrides, text

SCHEMA_VERSION = 1
PICKUP = frozenset({OrderStatus.ready_for_pickup, OrderStatus.picked_up})
RECEIVED = frozenset({OrderStatus.delivered, OrderStatus.picked_up, OrderStatus.returned})
"""The customer had the goods: a refund afterwards completes the order rather than cancels it."""
DESCRIBED = frozenset(
    {OrderStatus.delivery_issue, OrderStatus.returned, OrderStatus.refunded, OrderStatus.cancelled}
)
"""Statuses Apple's enumerations do not say by themselves: a ``statusDescription`` says them."""
LOGO = "logo.png"


def order_status(status: OrderStatus, history: frozenset[OrderStatus]) -> str:
    """The order's own status: closed when it arrived, cancelled when it never will."""
    if status == OrderStatus.cancelled:
        return "cancelled"
    if status == OrderStatus.refunded:
        return "completed" if history & RECEIVED else "cancelled"
    if status in (OrderStatus.delivered, OrderStatus.picked_up, OrderStatus.returned):
        return "completed"
    return "open"


def fulfillment_status(
    status: OrderStatus, history: frozenset[OrderStatus], *, carrier_scans: bool
) -> str:
    """Apple's fulfilment status: ``shipped`` until the carrier has reported the parcel on
    its way (Apple's HIG: ``onTheWay`` with carrier scans), a return or refund keeps what
    the goods last did."""
    if status in (OrderStatus.returned, OrderStatus.refunded):
        if history & RECEIVED:
            return "pickedUp" if OrderStatus.picked_up in history else "delivered"
        return "cancelled"
    mapped: dict[OrderStatus, str] = {
        OrderStatus.placed: "open",
        OrderStatus.confirmed: "open",
        OrderStatus.processing: "processing",
        OrderStatus.shipped: "onTheWay" if carrier_scans else "shipped",
        OrderStatus.out_for_delivery: "outForDelivery",
        OrderStatus.delivered: "delivered",
        OrderStatus.ready_for_pickup: "readyForPickup",
        OrderStatus.picked_up: "pickedUp",
        OrderStatus.delivery_issue: "issue",
        OrderStatus.cancelled: "cancelled",
    }
    return mapped[status]


def rfc3339(moment: datetime) -> str:
    """UTC with milliseconds: versions a millisecond apart still order (``updatedAt``)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _day(value: str) -> str:
    return rfc3339(datetime.combine(date.fromisoformat(value), time(12), tzinfo=UTC))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"


def order_document(
    content: Mapping[str, Any],
    *,
    order_type_identifier: str,
    order_identifier: str,
    authentication_token: str,
    web_service_url: str,
    management_url: str,
    merchant_name: str,
    merchant_identifier: str,
    merchant_url: str | None,
    created_at: datetime,
    updated_at: datetime,
    has_logo: bool,
) -> dict[str, Any]:
    """order.json of one version. ``content`` is the Wallet order's (``tracking``)."""
    status = OrderStatus(content["status"])
    history = frozenset(OrderStatus(s) for s in content.get("at", {}))
    merchant: dict[str, Any] = {
        "displayName": merchant_name,
        "merchantIdentifier": merchant_identifier,
        "url": merchant_url or _origin(management_url),
    }
    if has_logo:
        merchant["logo"] = LOGO
    document: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "orderTypeIdentifier": order_type_identifier,
        "orderIdentifier": order_identifier,
        "orderType": "ecommerce",
        "orderManagementURL": management_url,
        "status": order_status(status, history),
        "createdAt": rfc3339(created_at),
        "updatedAt": rfc3339(updated_at),
        "merchant": merchant,
        "webServiceURL": web_service_url,
        "authenticationToken": authentication_token,
        "fulfillments": [_fulfillment(content, status, history, merchant_name)],
    }
    if content.get("number"):
        document["orderNumber"] = str(content["number"])
    if status in DESCRIBED:
        document["statusDescription"] = f"status.{status.value}"
    items = [
        {"title": str(item["name"]), "quantity": int(item.get("quantity", 1))}
        for item in content.get("items") or []
    ]
    if items:
        document["lineItems"] = items
    return document


def _fulfillment(
    content: Mapping[str, Any],
    status: OrderStatus,
    history: frozenset[OrderStatus],
    merchant_name: str,
) -> dict[str, Any]:
    at: Mapping[str, str] = content.get("at", {})
    shipping: Mapping[str, Any] = content.get("shipping") or {}
    fulfilment_status = fulfillment_status(
        status, history, carrier_scans=bool(content.get("carrier_scans"))
    )
    fulfillment: dict[str, Any] = {"fulfillmentIdentifier": "1", "status": fulfilment_status}
    if status == OrderStatus.delivery_issue:
        fulfillment["statusDescription"] = "status.delivery_issue"
    if history & PICKUP:
        fulfillment |= {
            "fulfillmentType": "pickup",
            "displayName": shipping.get("carrier") or merchant_name,
        }
        if OrderStatus.picked_up in at:
            fulfillment["pickedUpAt"] = at[OrderStatus.picked_up]
        return fulfillment
    fulfillment["fulfillmentType"] = "shipping"
    for ours, apple in (
        ("carrier", "carrier"),
        ("tracking_number", "trackingNumber"),
        ("tracking_url", "trackingURL"),
    ):
        if shipping.get(ours):
            fulfillment[apple] = str(shipping[ours])
    if shipping.get("estimated_delivery"):
        fulfillment["estimatedDeliveryAt"] = _day(str(shipping["estimated_delivery"]))
    if OrderStatus.shipped in at:
        fulfillment["shippedAt"] = at[OrderStatus.shipped]
    if OrderStatus.delivered in at:
        fulfillment["deliveredAt"] = at[OrderStatus.delivered]
    return fulfillment


def _strings_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def order_strings(overrides: Overrides | None) -> dict[str, bytes]:
    """Each language's ``order.strings`` (UTF-16, as Apple advises for non-ASCII text), the
    same keys in every one: the status descriptions order.json names."""
    keys = sorted(f"status.{status.value}" for status in DESCRIBED)
    return {
        locale: "".join(
            f'"{key}" = "{_strings_escape(text(key, locale, overrides))}";\n' for key in keys
        ).encode("utf-16")
        for locale in LOCALES
    }

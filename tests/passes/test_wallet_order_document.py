"""order.json for every status we know, against Apple's rules (``tests.wallet_order_rules``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.contracts.orders import OrderStatus
from services.passes.texts import LOCALES
from services.passes.wallet_orders.document import order_document, order_strings
from tests.wallet_order_rules import check_document, read_strings

PLACED = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)
ROUTES = {
    OrderStatus.placed: ["placed"],
    OrderStatus.confirmed: ["placed", "confirmed"],
    OrderStatus.processing: ["confirmed", "processing"],
    OrderStatus.shipped: ["processing", "shipped"],
    OrderStatus.out_for_delivery: ["shipped", "out_for_delivery"],
    OrderStatus.delivered: ["shipped", "delivered"],
    OrderStatus.ready_for_pickup: ["processing", "ready_for_pickup"],
    OrderStatus.picked_up: ["ready_for_pickup", "picked_up"],
    OrderStatus.delivery_issue: ["shipped", "delivery_issue"],
    OrderStatus.cancelled: ["confirmed", "cancelled"],
    OrderStatus.returned: ["delivered", "returned"],
    OrderStatus.refunded: ["delivered", "returned", "refunded"],
}
EXPECTED = {
    OrderStatus.placed: ("open", "shipping", "open"),
    OrderStatus.confirmed: ("open", "shipping", "open"),
    OrderStatus.processing: ("open", "shipping", "processing"),
    OrderStatus.shipped: ("open", "shipping", "shipped"),
    OrderStatus.out_for_delivery: ("open", "shipping", "outForDelivery"),
    OrderStatus.delivered: ("completed", "shipping", "delivered"),
    OrderStatus.ready_for_pickup: ("open", "pickup", "readyForPickup"),
    OrderStatus.picked_up: ("completed", "pickup", "pickedUp"),
    OrderStatus.delivery_issue: ("open", "shipping", "issue"),
    OrderStatus.cancelled: ("cancelled", "shipping", "cancelled"),
    OrderStatus.returned: ("completed", "shipping", "delivered"),
    OrderStatus.refunded: ("completed", "shipping", "delivered"),
}


def _document(status: OrderStatus, route: list[str], **content: object) -> dict[str, object]:
    at = {s: (PLACED + timedelta(hours=i)).isoformat() for i, s in enumerate(route)}
    return order_document(
        {"id": "A-1", "number": "1001", "status": status.value, "at": at, **content},
        order_type_identifier="order.com.shop",
        order_identifier="0" * 32,
        authentication_token="t" * 40,
        web_service_url="https://passpost.example.com/wallet-orders",
        management_url="https://shop.example.com/orders/A-1",
        merchant_name="Shop",
        merchant_identifier="merchant.com.shop",
        merchant_url=None,
        created_at=PLACED,
        updated_at=PLACED + timedelta(milliseconds=1),
        has_logo=True,
    )


@pytest.mark.parametrize("status", list(OrderStatus))
def test_every_status_maps_to_apples_values(status: OrderStatus) -> None:
    document = _document(status, ROUTES[status])
    check_document(document)
    fulfillments = document["fulfillments"]
    assert isinstance(fulfillments, list)
    (fulfillment,) = fulfillments
    assert (document["status"], fulfillment["fulfillmentType"], fulfillment["status"]) == (
        EXPECTED[status]
    )
    described = status in {
        OrderStatus.delivery_issue,
        OrderStatus.returned,
        OrderStatus.refunded,
        OrderStatus.cancelled,
    }
    assert ("statusDescription" in document) == described


def test_a_refund_of_an_order_never_received_cancels_it() -> None:
    document = _document(OrderStatus.refunded, ["confirmed", "cancelled", "refunded"])
    assert document["status"] == "cancelled"


def test_a_carrier_report_turns_shipped_into_on_the_way() -> None:
    document = _document(OrderStatus.shipped, ["shipped"], carrier_scans=True)
    fulfillments = document["fulfillments"]
    assert isinstance(fulfillments, list)
    assert fulfillments[0]["status"] == "onTheWay"


def test_every_language_words_the_same_status_descriptions() -> None:
    strings = {locale: read_strings(data) for locale, data in order_strings(None).items()}
    assert set(strings) == set(LOCALES)
    assert len({frozenset(s) for s in strings.values()}) == 1
    assert strings["sk"]["status.cancelled"] != strings["en"]["status.cancelled"]

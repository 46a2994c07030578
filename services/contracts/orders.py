"""An order's statuses: what shops send, what ``order.changed`` carries, what a card shows."""

from __future__ import annotations

from enum import StrEnum

CARD_LANGUAGES = ("en", "sk", "cs", "pl", "ru", "de")
"""The languages a card speaks (``passes/texts.py``): a customer's locale is one of them, or the
merchant's default applies."""


class OrderStatus(StrEnum):
    placed = "placed"
    confirmed = "confirmed"
    processing = "processing"
    shipped = "shipped"
    out_for_delivery = "out_for_delivery"
    delivered = "delivered"
    ready_for_pickup = "ready_for_pickup"
    picked_up = "picked_up"
    delivery_issue = "delivery_issue"
    cancelled = "cancelled"
    returned = "returned"
    refunded = "refunded"


FINAL = frozenset(
    {
        OrderStatus.delivered,
        OrderStatus.picked_up,
        OrderStatus.cancelled,
        OrderStatus.returned,
        OrderStatus.refunded,
    }
)
"""Where an order ends (only the after-sales path leaves them)."""
OPEN = frozenset(OrderStatus) - FINAL
"""Still on its way to the customer: a card shows an open order before a finished one."""

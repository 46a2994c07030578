"""The orders a card keeps, as ``order.changed`` messages move them: which changes it takes,
which of them a customer sees, and when the status shown moved (Google then notifies)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import OrderChanged
from services.contracts.orders import OrderStatus
from services.core.clock import clock
from services.merchants.models import Merchant
from services.passes.card_view import PREPARING, Order, current_order
from services.passes.changes import announce, record_change
from services.passes.issuing import CardsOfBatch, find_or_issue, update_customer
from services.passes.journeys import after_orders, engine
from services.passes.marketing import slot
from services.passes.models import Card
from services.passes.schemas import CardIssue

MAX_ORDERS_KEPT = 10


DELIVERED = frozenset({OrderStatus.delivered, OrderStatus.picked_up})
"""The customer has the parcel: what the journeys after an order wait for."""
UNDONE = frozenset({OrderStatus.cancelled, OrderStatus.returned, OrderStatus.refunded})
"""The order did not stay with the customer: nothing to ask about or follow up."""
DELIVERED_ORDERS = "delivered_orders"
"""``Card.content[DELIVERED_ORDERS]``: how many of the customer's orders reached the customer
(delivered or picked up), counted once per order as the card hears of them."""


@dataclass(frozen=True, slots=True)
class OrdersTaken:
    """A card's content with a change applied, and what that did to what the card shows."""

    content: dict[str, Any]
    visible: bool
    """What the customer sees changed (an update of an order not shown changes nothing)."""
    status_moved: bool
    """The status shown is another one."""
    order: Order
    """The changed order as the card now keeps it."""
    first_seen: bool
    """The card had not heard of this order before (its products were bought again)."""
    delivered: bool
    """The order reached the customer with this change (the first time)."""
    undone: bool
    """The order was cancelled, returned or refunded with this change."""

    @property
    def delivered_count(self) -> int:
        """The customer's delivered orders, this change included."""
        return delivered_orders(self.content)


def delivered_orders(content: dict[str, Any]) -> int:
    return int(content.get(DELIVERED_ORDERS) or 0)


def take_order_change(content: dict[str, Any], change: OrderChanged) -> OrdersTaken | None:
    """``content`` with the order's latest state, or ``None`` when the card has that order at
    this revision or later already (a redelivered or reordered message)."""
    orders = dict(content.get("orders") or {})
    known = orders.get(change.order.id)
    if known is not None and known["revision"] >= change.revision:
        return None
    view = change.order.model_dump(mode="json", exclude_none=True)
    orders[change.order.id] = {
        "id": change.order.id,
        "revision": change.revision,
        "status": change.order.status.value,
        "placed_at": change.placed_at.isoformat(),
        **{k: view.get(k) for k in ("number", "total", "shipping", "items", "links")},
    }
    newest = sorted(orders.values(), key=lambda o: o["placed_at"])[-MAX_ORDERS_KEPT:]
    shown = current_order(content)
    kept = {key: value for key, value in content.items() if key != PREPARING}
    taken = {**kept, "orders": {o["id"]: o for o in newest}}
    was = None if known is None else OrderStatus(known["status"])
    delivered = change.order.status in DELIVERED and was not in DELIVERED | UNDONE
    if delivered:
        taken[DELIVERED_ORDERS] = delivered_orders(content) + 1
    now_shown = current_order(taken)
    return OrdersTaken(
        content=taken,
        visible=_visible(now_shown) != _visible(shown),
        status_moved=(shown or {}).get("status") != (now_shown or {}).get("status"),
        order=orders[change.order.id],
        first_seen=known is None,
        delivered=delivered,
        undone=change.order.status in UNDONE and was not in UNDONE,
    )


def _visible(order: Order | None) -> Order | None:
    return None if order is None else {k: v for k, v in order.items() if k != "revision"}


async def apply_order_change(
    session: AsyncSession,
    merchant: Merchant,
    change: OrderChanged,
    secret_key: bytes,
    *,
    cards: CardsOfBatch | None = None,
) -> Card:
    """Put an order's latest state on its customer's card (``order.changed``).

    A change older than what the card has (a redelivered or reordered message) is ignored.
    ``cards``: the batch's cards locked already (``lock_cards``), so the card is not looked up
    (nor its registrations, when they were read with it).
    """
    customer = change.order.customer
    card, created = await find_or_issue(session, merchant, customer.id, secret_key, known=cards)
    if created:
        engine.made_now(session, card)
    changed = update_customer(
        card,
        merchant,
        CardIssue(customer_id=customer.id, customer_name=customer.name, locale=customer.locale),
    )
    if customer.time_zone and customer.time_zone != card.time_zone:
        card.time_zone = customer.time_zone  # quiet hours and days: nothing the card shows
    status_moved = False
    if (taken := take_order_change(card.content, change)) is not None:
        card.content = taken.content
        changed = changed or taken.visible
        status_moved = taken.status_moved
        await after_orders.order_changed(
            session, merchant, card, taken, change.occurred_at, clock.now()
        )
    if created:
        await announce(session, card, notify=True, devices=[])
    elif changed:
        if status_moved:
            slot.status_notified(card, clock.now())
        devices = cards.devices_of(card) if cards is not None else None
        await record_change(session, card, notify=status_moved, devices=devices)
    return card

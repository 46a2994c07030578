"""The order state machine: which status changes an event may make.

Shops send what they know when they know it, so steps may be skipped (confirmed -> shipped).
What never happens: a late event (older ``occurred_at`` than the last applied) moving the status,
a newer event moving it back along the way to the customer, or anything leaving a final status
but the after-sales path (delivered or picked up -> returned -> refunded, cancelled -> refunded).
A paid order may be refunded at any point on its way: a shop refunds a lost parcel, or a
platform whose last status is "shipped" (WooCommerce's completed) refunds a return, and the card
must say so rather than keep "shipped".
"""

from __future__ import annotations

from enum import StrEnum

from services.contracts.orders import FINAL, OrderStatus

S = OrderStatus

_FORWARD_FROM_START = frozenset(OrderStatus) - {S.placed, S.returned, S.refunded}
_PAID = _FORWARD_FROM_START | {S.refunded}
ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.placed: _FORWARD_FROM_START,
    S.confirmed: _PAID - {S.confirmed},
    S.processing: _PAID - {S.confirmed, S.processing},
    S.shipped: frozenset(
        {
            S.out_for_delivery,
            S.delivered,
            S.ready_for_pickup,
            S.picked_up,
            S.delivery_issue,
            S.cancelled,
            S.returned,
            S.refunded,
        }
    ),
    S.out_for_delivery: frozenset(
        {
            S.delivered,
            S.ready_for_pickup,
            S.picked_up,
            S.delivery_issue,
            S.cancelled,
            S.returned,
            S.refunded,
        }
    ),
    S.ready_for_pickup: frozenset(
        {S.picked_up, S.delivery_issue, S.cancelled, S.returned, S.refunded}
    ),
    # A delivery problem can be solved (back on the way) or end the order.
    S.delivery_issue: frozenset(
        {
            S.shipped,
            S.out_for_delivery,
            S.delivered,
            S.ready_for_pickup,
            S.picked_up,
            S.cancelled,
            S.returned,
            S.refunded,
        }
    ),
    S.delivered: frozenset({S.returned, S.refunded}),
    S.picked_up: frozenset({S.returned, S.refunded}),
    S.returned: frozenset({S.refunded}),
    S.cancelled: frozenset({S.refunded}),
    S.refunded: frozenset(),
}


class Decision(StrEnum):
    apply = "apply"
    """The status changes."""
    same = "same"
    """The same status again: other details (tracking, estimate) may still change."""
    stale = "stale"
    """Kept in the history, status untouched: a late event, or a step back along the way."""
    refused = "refused"
    """Leaving a final status other than by the after-sales path: 409."""


def decide(current: OrderStatus, new: OrderStatus, *, late: bool) -> Decision:
    if new == current:
        return Decision.stale if late else Decision.same
    if late:
        return Decision.stale
    if new in ALLOWED[current]:
        return Decision.apply
    return Decision.refused if current in FINAL else Decision.stale

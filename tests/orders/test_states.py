"""The order state machine, as a table."""

from __future__ import annotations

import pytest

from services.contracts.orders import FINAL, OrderStatus
from services.orders.states import Decision, decide

S = OrderStatus

ALLOWED = [
    (S.placed, S.confirmed),
    (S.placed, S.shipped),
    (S.confirmed, S.processing),
    (S.processing, S.shipped),
    (S.shipped, S.out_for_delivery),
    (S.out_for_delivery, S.delivered),
    (S.shipped, S.delivery_issue),
    (S.delivery_issue, S.out_for_delivery),
    (S.out_for_delivery, S.ready_for_pickup),
    (S.ready_for_pickup, S.picked_up),
    (S.delivered, S.returned),
    (S.delivered, S.refunded),
    (S.picked_up, S.returned),
    (S.returned, S.refunded),
    (S.cancelled, S.refunded),
    (S.confirmed, S.cancelled),
    # A paid order refunded on its way (a lost parcel; WooCommerce's completed, then refunded).
    (S.confirmed, S.refunded),
    (S.processing, S.refunded),
    (S.shipped, S.refunded),
    (S.out_for_delivery, S.refunded),
    (S.ready_for_pickup, S.refunded),
    (S.delivery_issue, S.refunded),
]
REFUSED = [
    (S.delivered, S.shipped),
    (S.delivered, S.cancelled),
    (S.cancelled, S.shipped),
    (S.refunded, S.returned),
    (S.refunded, S.delivered),
    (S.returned, S.delivered),
    (S.picked_up, S.ready_for_pickup),
    (S.cancelled, S.placed),
]
BACKWARDS = [
    (S.shipped, S.confirmed),
    (S.out_for_delivery, S.processing),
    (S.shipped, S.placed),
    (S.ready_for_pickup, S.shipped),
    # An order never paid is cancelled, not refunded.
    (S.placed, S.refunded),
]


@pytest.mark.parametrize(("current", "new"), ALLOWED)
def test_allowed(current: OrderStatus, new: OrderStatus) -> None:
    assert decide(current, new, late=False) == Decision.apply


@pytest.mark.parametrize(("current", "new"), REFUSED)
def test_leaving_a_final_status_is_refused(current: OrderStatus, new: OrderStatus) -> None:
    assert current in FINAL
    assert decide(current, new, late=False) == Decision.refused


@pytest.mark.parametrize(("current", "new"), BACKWARDS)
def test_a_step_back_is_kept_but_not_applied(current: OrderStatus, new: OrderStatus) -> None:
    assert decide(current, new, late=False) == Decision.stale


@pytest.mark.parametrize("current", list(OrderStatus))
@pytest.mark.parametrize("new", list(OrderStatus))
def test_a_late_event_never_moves_the_status(current: OrderStatus, new: OrderStatus) -> None:
    assert decide(current, new, late=True) == Decision.stale


@pytest.mark.parametrize("status", list(OrderStatus))
def test_the_same_status_again_may_update_details(status: OrderStatus) -> None:
    assert decide(status, status, late=False) == Decision.same

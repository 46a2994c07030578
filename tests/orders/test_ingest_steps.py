"""The steps of ``ingest_events`` that need no database: the plan and one event applied."""

from __future__ import annotations

import uuid

import pytest

from services.contracts.cards import CardLinks
from services.contracts.shop_api import Answer, replay
from services.core.errors import Conflict, PasspostError
from services.merchants.models import Merchant
from services.orders import service
from services.orders.models import Order
from services.orders.schemas import EventAccepted, OrderEventIn
from tests.factories import FULL, order_event_in

CARD = CardLinks(
    serial_number="s-1",
    apple_pass_url="https://passpost.test/c/s-1/pass.pkpass",
    google_save_url=None,
    landing_url="https://passpost.test/c/s-1",
)


@pytest.fixture
def merchant() -> Merchant:
    return Merchant(id=uuid.uuid4())


def _made_by(merchant: Merchant, event: OrderEventIn) -> Order:
    """The order as its first event makes it (in memory)."""
    return Order(**service._new_order(merchant, event))


def _apply(
    merchant: Merchant, order: Order, event: OrderEventIn, *, creates: bool = False
) -> service._Applied | PasspostError:
    customers: list[str] = []

    def card(customer_id: str) -> CardLinks:
        customers.append(customer_id)
        return CARD

    applied = service._apply_event(
        merchant,
        order,
        event,
        service.body_hash(event),
        creates=creates,
        card=card,
        wallet_order=lambda order_id: None,  # Wallet Orders off: answered null
    )
    assert customers == ([] if isinstance(applied, Conflict) else [order.customer_id])
    return applied


def test_the_plan_names_one_creator_per_order_and_none_for_a_replayed_id() -> None:
    events = [
        order_event_in(order_id="A", event_id="a-1"),
        order_event_in("shipped", order_id="A", event_id="a-2"),
        order_event_in(order_id="B", event_id="a-1"),  # replayed inside the batch
        order_event_in(order_id="C", event_id="c-1"),  # answered by an earlier request
        order_event_in("shipped", order_id="C", event_id="c-2"),
    ]
    seen = Answer("c-1", "digest", {})
    plan = service._plan(events, {"c-1": seen})
    assert plan.creators == {"A": 0, "C": 4}
    assert plan.digests == tuple(service.body_hash(e) for e in events)
    assert plan.answered == {"c-1": seen}
    assert len(set(plan.digests)) == 5


def test_only_the_planned_creator_of_a_made_order_creates_it() -> None:
    first, second = order_event_in(order_id="A"), order_event_in("shipped", order_id="A")
    locked = service._Locked(orders={}, made={"A"}, answered={}, creators={"A": 0})
    assert locked.creates(first, 0)
    assert not locked.creates(second, 1)
    assert not service._Locked({}, set(), {}, {"A": 0}).creates(first, 0)  # made meanwhile


def test_a_replay_answers_the_same_unless_its_body_differs() -> None:
    accepted = EventAccepted.model_validate(
        {
            "event_id": "e-1",
            "duplicate": False,
            "order": service.order_read(_made_by(Merchant(id=uuid.uuid4()), order_event_in())),
            "card": CARD,
        }
    )
    seen = Answer("e-1", "abc", accepted.model_dump(mode="json"))
    again = replay(seen, "abc", EventAccepted)
    assert isinstance(again, EventAccepted)
    assert again == accepted.model_copy(update={"duplicate": True})
    refused = replay(seen, "other", EventAccepted)
    assert isinstance(refused, Conflict)
    assert refused.details == {"event_id": "e-1"}


def test_the_event_that_made_the_order_is_applied_as_made(merchant: Merchant) -> None:
    event = order_event_in(**FULL)
    order = _made_by(merchant, event)
    applied = _apply(merchant, order, event, creates=True)
    assert isinstance(applied, service._Applied)
    assert applied.accepted.order.status == "confirmed"
    assert applied.history["outcome"] == "applied"
    assert applied.history["order_id"] == order.id
    assert applied.answer == Answer(
        event.id, service.body_hash(event), applied.accepted.model_dump(mode="json")
    )
    assert applied.history["response"] == applied.answer.response
    assert applied.change is not None
    message, key = applied.change
    assert (message.previous_status, message.revision, key) == (None, 1, str(order.id))


def test_a_later_step_moves_the_order_and_is_answered_as_it_then_stood(
    merchant: Merchant,
) -> None:
    placed = order_event_in(**FULL)
    order = _made_by(merchant, placed)
    shipped = _apply(merchant, order, order_event_in("shipped", at="2026-11-23T12:00:00Z"))
    delivered = _apply(merchant, order, order_event_in("delivered", at="2026-11-24T09:00:00Z"))
    assert isinstance(shipped, service._Applied)
    assert isinstance(delivered, service._Applied)
    assert shipped.accepted.order.status == "shipped"  # not what the order became afterwards
    assert shipped.change is not None
    assert (shipped.change[0].previous_status, shipped.change[0].revision) == (
        "confirmed",
        2,
    )
    assert (order.status, order.revision) == ("delivered", 3)
    assert shipped.accepted.order.shipping == delivered.accepted.order.shipping  # kept


def test_a_late_event_is_history_only(merchant: Merchant) -> None:
    order = _made_by(merchant, order_event_in("shipped", at="2026-11-23T12:00:00Z"))
    applied = _apply(merchant, order, order_event_in("processing", at="2026-11-23T11:00:00Z"))
    assert isinstance(applied, service._Applied)
    assert applied.history["outcome"] == "stale"
    assert applied.change is None
    assert (order.status, order.revision) == ("shipped", 1)


def test_the_same_status_again_changes_something_only_with_new_details(
    merchant: Merchant,
) -> None:
    order = _made_by(merchant, order_event_in("shipped"))
    again = _apply(merchant, order, order_event_in("shipped"))
    assert isinstance(again, service._Applied)
    assert (again.history["outcome"], again.change, order.revision) == ("same", None, 1)
    tracked = _apply(merchant, order, order_event_in("shipped", **FULL))
    assert isinstance(tracked, service._Applied)
    assert tracked.history["outcome"] == "same"
    assert tracked.change is not None
    assert order.revision == 2


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            order_event_in("returned", customer={"id": "c-other"}),
            "order 'A-1001' belongs to another customer",
        ),
        (
            order_event_in("shipped", at="2026-11-24T10:00:00Z"),
            "order 'A-1001' is delivered: it cannot become shipped",
        ),
    ],
)
def test_a_refused_event_leaves_the_order_untouched(
    merchant: Merchant, event: OrderEventIn, message: str
) -> None:
    order = _made_by(merchant, order_event_in("delivered"))
    before = (order.status, order.revision, dict(order.snapshot), order.last_occurred_at)
    refused = _apply(merchant, order, event)
    assert isinstance(refused, Conflict)
    assert refused.message == message
    assert (order.status, order.revision, order.snapshot, order.last_occurred_at) == before

"""Order events: idempotent ingestion, the state machine, history, and ``order.changed``."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.cards import CardLinks
from services.contracts.messages import OrderChanged
from services.contracts.orders import OrderStatus
from services.contracts.shop_api import Answer, answers, body_hash, replay
from services.contracts.wallet_orders import WalletOrderLinks
from services.core.db import dialect_insert
from services.core.errors import Conflict, NotFound, PasspostError
from services.core.models import utcnow
from services.core.queue import publish_all
from services.core.settings import Settings
from services.merchants.api import links_for
from services.merchants.models import Merchant
from services.merchants.wallet_orders import wallet_order_of
from services.orders.models import Order, OrderEvent
from services.orders.schemas import (
    EventAccepted,
    HistoryEntry,
    OrderEventIn,
    OrderRead,
    OrderSnapshot,
)
from services.orders.states import Decision, decide

DELIVERED = frozenset({OrderStatus.delivered, OrderStatus.picked_up})
"""The statuses in which the customer has the parcel (``delivered_within_days``)."""
SNAPSHOT_FIELDS = ("number", "customer", "total", "shipping", "items", "links")


def merge_snapshot(current: dict[str, Any], snapshot: OrderSnapshot) -> dict[str, Any]:
    """What the event says replaces what was known; what it leaves out is kept."""
    merged = dict(current)
    given = snapshot.model_dump(mode="json", exclude_unset=True)
    for field in SNAPSHOT_FIELDS:
        if field not in given or given[field] is None:
            continue
        value = given[field]
        if isinstance(value, dict) and isinstance(merged.get(field), dict):
            merged[field] = {**merged[field], **{k: v for k, v in value.items() if v is not None}}
        else:
            merged[field] = value
    return merged


def order_read(order: Order, history: list[OrderEvent] | None = None) -> OrderRead:
    snapshot = order.snapshot
    return OrderRead(
        id=order.external_id,
        number=order.number,
        status=OrderStatus(order.status),
        customer=snapshot.get("customer", {"id": order.customer_id}),
        total=snapshot.get("total"),
        shipping=snapshot.get("shipping"),
        items=snapshot.get("items"),
        links=snapshot.get("links"),
        placed_at=order.placed_at,
        updated_at=order.updated_at or utcnow(),
        history=None
        if history is None
        else [
            HistoryEntry(
                event_id=e.event_id,
                status=OrderStatus(e.status),
                occurred_at=e.occurred_at,
                received_at=e.received_at,
                outcome=e.outcome,
                connector=e.connector,
                delivery=e.delivery,
            )
            for e in history
        ],
    )


@dataclass(frozen=True, slots=True)
class EventSource:
    """Where events came from when not from the orders API: a connector's delivery."""

    connector: str
    delivery: str


async def ingest_events(
    session: AsyncSession,
    merchant: Merchant,
    events: Sequence[OrderEventIn],
    settings: Settings,
    source: EventSource | None = None,
) -> list[EventAccepted | PasspostError]:
    """Apply events in their order, each once, with set-based SQL.

    A replayed id answers as before, a reused id with another body is refused (409), and every
    accepted event lands in its order's history, with its ``source`` when a connector's
    delivery made it (``orders/connectors``).

    A handful of statements whatever the number of events, in four steps: plan (the ids seen
    before, and which event would make each new order), lock (the orders ``FOR UPDATE``, in a
    fixed order; SQLite's ``BEGIN IMMEDIATE`` serialises anyway; new ones inserted ``ON CONFLICT
    DO NOTHING``), apply (the state machine, event by event, in memory) and persist (the history
    and the messages in bulk). Every refusal is decided before anything is written, so a refused
    event leaves no trace and needs no savepoint; it is returned (not raised) in its place.
    """
    if not events:
        return []
    plan = _plan(events, await _answers(session, merchant, {event.id for event in events}))
    locked = await _lock(session, merchant, events, plan)
    outcomes, writes = await _apply_all(session, merchant, events, plan, locked, settings)
    if source is not None:
        for row in writes.history:
            row.update(connector=source.connector, delivery=source.delivery)
    await _persist(session, writes)
    return outcomes


@dataclass(frozen=True, slots=True)
class _Plan:
    """What is known of a batch before any order is locked.

    ``digests`` are the events' body hashes, in their order; ``answered`` the ids seen before
    (in earlier requests); ``creators`` per order id, the index of the event that makes the
    order if it does not exist yet.
    """

    digests: tuple[str, ...]
    answered: Mapping[str, Answer]
    creators: Mapping[str, int]


def _plan(events: Sequence[OrderEventIn], answered: Mapping[str, Answer]) -> _Plan:
    """The plan of a batch from the answers its ids already have: no database needed."""
    return _Plan(
        digests=tuple(body_hash(event) for event in events),
        answered=dict(answered),
        creators=_creators(events, answered),
    )


@dataclass(slots=True)
class _Locked:
    """A batch's orders, locked until commit, and what is known of its ids while applying.

    Mutable on purpose: ``answered`` grows with each event accepted (so an id replayed later in
    the batch answers the same), and an order made late (``_create_late``) joins ``orders``.
    """

    orders: dict[str, Order]
    made: set[str]
    """The order ids inserted by this batch, each by the event at ``creators[id]``."""
    answered: dict[str, Answer]
    creators: dict[str, int]

    def creates(self, event: OrderEventIn, index: int) -> bool:
        """Whether the event at ``index`` made its order (so there is nothing to decide)."""
        return event.order.id in self.made and self.creators[event.order.id] == index


async def _lock(
    session: AsyncSession, merchant: Merchant, events: Sequence[OrderEventIn], plan: _Plan
) -> _Locked:
    """Lock (or make) the batch's orders, then look again for ids of events on orders that
    existed: another request holding their locks may have committed events with these ids
    between the plan and the lock."""
    orders, made = await _lock_or_create(session, merchant, events, dict(plan.creators))
    answered = dict(plan.answered)
    if found := {e.id for e in events if e.order.id in orders and e.order.id not in made}:
        answered.update(await _answers(session, merchant, found - answered.keys()))
    return _Locked(orders, made, answered, dict(plan.creators))


@dataclass(slots=True)
class _Writes:
    """What the accepted events of a batch leave: history rows and ``order.changed`` messages."""

    history: list[dict[str, Any]]
    changes: list[tuple[OrderChanged, str]]


@dataclass(frozen=True, slots=True)
class _Applied:
    """An accepted event: its answer, its history row, and its message if the order changed."""

    accepted: EventAccepted
    answer: Answer
    history: dict[str, Any]
    change: tuple[OrderChanged, str] | None


async def _apply_all(
    session: AsyncSession,
    merchant: Merchant,
    events: Sequence[OrderEventIn],
    plan: _Plan,
    locked: _Locked,
    settings: Settings,
) -> tuple[list[EventAccepted | PasspostError], _Writes]:
    """Each event in its order against the locked orders: an outcome each, and the rows to
    write. Nothing is written here but an order made late (rare: see ``_create_late``)."""
    outcomes: list[EventAccepted | PasspostError] = []
    writes = _Writes(history=[], changes=[])
    card = functools.cache(lambda customer_id: links_for(merchant, customer_id, settings))
    wallet_order = functools.partial(wallet_order_of, merchant, settings=settings)
    for index, (event, digest) in enumerate(zip(events, plan.digests, strict=True)):
        if (seen := locked.answered.get(event.id)) is not None:
            outcomes.append(replay(seen, digest, EventAccepted))
            continue
        if event.order.id not in locked.orders:
            await _create_late(session, merchant, event, index, locked)
        order = locked.orders[event.order.id]
        applied = _apply_event(
            merchant,
            order,
            event,
            digest,
            creates=locked.creates(event, index),
            card=card,
            wallet_order=wallet_order,
        )
        if isinstance(applied, PasspostError):
            outcomes.append(applied)
            continue
        locked.answered[event.id] = applied.answer
        outcomes.append(applied.accepted)
        writes.history.append(applied.history)
        if applied.change is not None:
            writes.changes.append(applied.change)
    return outcomes, writes


async def _create_late(
    session: AsyncSession, merchant: Merchant, event: OrderEventIn, index: int, locked: _Locked
) -> None:
    """Make the order of an event that was not planned as its creator: the planned creator
    reused an id refused earlier in this batch, so this event is the order's first."""
    locked.creators[event.order.id] = index
    orders, made = await _lock_or_create(session, merchant, [event], {event.order.id: 0})
    locked.orders.update(orders)
    locked.made |= made


def _apply_event(
    merchant: Merchant,
    order: Order,
    event: OrderEventIn,
    digest: str,
    *,
    creates: bool,
    card: Callable[[str], CardLinks],
    wallet_order: Callable[[str], WalletOrderLinks | None],
) -> _Applied | PasspostError:
    """One event on its locked order, in memory: refused, or accepted with what to write.

    The answer and the message are taken now, as the order stands after this event: later
    events of the batch change the same order.
    """
    occurred_at = event.occurred_at.astimezone(UTC)
    transition = _transition(order, event, occurred_at, creates=creates)
    if isinstance(transition, PasspostError):
        return transition
    decision, previous, changed = transition
    accepted = EventAccepted(
        event_id=event.id,
        duplicate=False,
        order=order_read(order),
        card=card(order.customer_id),
        wallet_order=wallet_order(order.external_id),
    )
    response = accepted.model_dump(mode="json")
    return _Applied(
        accepted=accepted,
        answer=Answer(event.id, digest, response),
        history={
            "id": uuid.uuid4(),
            "merchant_id": merchant.id,
            "event_id": event.id,
            "order_id": order.id,
            "status": event.order.status.value,
            "occurred_at": occurred_at,
            "received_at": utcnow(),
            "outcome": "applied" if decision == Decision.apply else decision.value,
            "body_hash": digest,
            "response": response,
        },
        change=(_changed(merchant, order, previous, event), str(order.id)) if changed else None,
    )


def _transition(
    order: Order, event: OrderEventIn, occurred_at: datetime, *, creates: bool
) -> tuple[Decision, OrderStatus | None, bool] | PasspostError:
    """The decision, the status before, and whether the customer could see a change.

    The event that made the order was applied by making it (no status before); any other is
    decided by the state machine and, unless refused, applied to the order.
    """
    if creates:
        return Decision.apply, None, True
    previous = OrderStatus(order.status)
    decision = _decide(order, event, previous, occurred_at)
    if isinstance(decision, PasspostError):
        return decision
    return decision, previous, _apply(order, event, occurred_at, decision)


async def _persist(session: AsyncSession, writes: _Writes) -> None:
    """Write the batch's history and publish its messages (in the same transaction)."""
    await session.flush()  # the orders' new state, before the history that names them
    if writes.history:
        await session.execute(insert(OrderEvent), writes.history)
    await publish_all(session, writes.changes)


def _decide(
    order: Order, event: OrderEventIn, previous: OrderStatus, occurred_at: datetime
) -> Decision | PasspostError:
    """The state machine's decision for an event on an existing order, or why it is refused."""
    if event.order.customer.id != order.customer_id:
        return Conflict(
            f"order {order.external_id!r} belongs to another customer",
            path="order.customer.id",
        )
    decision = decide(previous, event.order.status, late=occurred_at < order.last_occurred_at)
    if decision == Decision.refused:
        return Conflict(
            f"order {order.external_id!r} is {previous.value}: it cannot become "
            f"{event.order.status.value}",
            status=previous.value,
        )
    return decision


async def _answers(
    session: AsyncSession, merchant: Merchant, event_ids: set[str]
) -> dict[str, Answer]:
    return await answers(session, OrderEvent, merchant.id, event_ids)


def _creators(events: Sequence[OrderEventIn], answered: Mapping[str, Answer]) -> dict[str, int]:
    """Per order id, the first event that would make the order if it does not exist yet.

    A replayed id (seen before, or earlier in this batch) makes nothing: it is answered as
    before, or refused when its body differs.
    """
    creators: dict[str, int] = {}
    ids: set[str] = set(answered)
    for index, event in enumerate(events):
        if event.id not in ids:
            creators.setdefault(event.order.id, index)
            ids.add(event.id)
    return creators


async def _lock_or_create(
    session: AsyncSession,
    merchant: Merchant,
    events: Sequence[OrderEventIn],
    creators: dict[str, int],
) -> tuple[dict[str, Order], set[str]]:
    """The events' orders, locked until commit so their events apply one at a time, and the
    ids of those made here (by their first event)."""
    wanted = sorted({event.order.id for event in events})
    orders = await _locked(session, merchant, wanted)
    missing = [external_id for external_id in wanted if external_id not in orders]
    new = [events[creators[external_id]] for external_id in missing if external_id in creators]
    made: set[str] = set()
    if new:
        insert_orders = (
            dialect_insert(session)(Order)
            .on_conflict_do_nothing(index_elements=[Order.merchant_id, Order.external_id])
            .returning(Order)
        )
        created = await session.scalars(
            insert_orders, [_new_order(merchant, event) for event in new]
        )
        for order in created:
            orders[order.external_id] = order
            made.add(order.external_id)
        # Made meanwhile by another request (their first events arrived at once): lock those.
        if raced := [external_id for external_id in missing if external_id not in orders]:
            orders.update(await _locked(session, merchant, raced))
    return orders, made


async def _locked(
    session: AsyncSession, merchant: Merchant, external_ids: list[str]
) -> dict[str, Order]:
    query = (
        select(Order)
        .where(Order.merchant_id == merchant.id, Order.external_id.in_(external_ids))
        .order_by(Order.external_id)
        .with_for_update()
    )
    return {order.external_id: order for order in await session.scalars(query)}


def _new_order(merchant: Merchant, event: OrderEventIn) -> dict[str, Any]:
    occurred_at = event.occurred_at.astimezone(UTC)
    return {
        "id": uuid.uuid4(),
        "merchant_id": merchant.id,
        "external_id": event.order.id,
        "number": event.order.number,
        "status": event.order.status.value,
        "customer_id": event.order.customer.id,
        "snapshot": merge_snapshot({}, event.order),
        "revision": 1,
        "placed_at": occurred_at,
        "last_occurred_at": occurred_at,
        "updated_at": utcnow(),
        **_segment_columns(event.order.status, merge_snapshot({}, event.order), occurred_at, None),
    }


def order_total(order: Order) -> Decimal | None:
    """The order's total as the shop last gave it (in ``order.currency``)."""
    return None if order.total_minor is None else Decimal(order.total_minor) / 100


def _segment_columns(
    status: OrderStatus, snapshot: dict[str, Any], at: datetime, delivered_at: datetime | None
) -> dict[str, Any]:
    """What a campaign's segment asks of an order, kept in columns: the total (in hundredths,
    exact on every backend) and when it reached the customer."""
    total = snapshot.get("total") or {}
    amount = total.get("amount")
    return {
        "total_minor": None if amount is None else int(Decimal(amount) * 100),
        "currency": total.get("currency"),
        "delivered_at": at if status in DELIVERED else delivered_at,
    }


def _apply(order: Order, event: OrderEventIn, occurred_at: datetime, decision: Decision) -> bool:
    """Apply the event to the order; True when anything the customer could see changed."""
    if decision not in (Decision.apply, Decision.same):
        return False
    order.last_occurred_at = occurred_at
    order.updated_at = utcnow()
    snapshot = merge_snapshot(order.snapshot, event.order)
    if decision == Decision.same and snapshot == order.snapshot:
        return False
    order.snapshot = snapshot
    order.number = snapshot.get("number", order.number)
    order.status = event.order.status.value
    order.revision += 1
    for column, value in _segment_columns(
        event.order.status, snapshot, occurred_at, order.delivered_at
    ).items():
        setattr(order, column, value)
    return True


def _changed(
    merchant: Merchant, order: Order, previous: OrderStatus | None, event: OrderEventIn
) -> OrderChanged:
    return OrderChanged(
        merchant_id=merchant.id,
        order_id=order.id,
        revision=order.revision,
        event_id=event.id,
        status=OrderStatus(order.status),
        previous_status=previous,
        placed_at=order.placed_at,
        occurred_at=order.last_occurred_at,
        order={"id": order.external_id, "status": order.status, **order.snapshot},
    )


async def get_order(session: AsyncSession, merchant: Merchant, external_id: str) -> OrderRead:
    order = await session.scalar(
        select(Order).where(Order.merchant_id == merchant.id, Order.external_id == external_id)
    )
    if order is None:
        raise NotFound(f"no order {external_id!r}")
    history = (
        await session.scalars(
            select(OrderEvent)
            .where(OrderEvent.order_id == order.id)
            .order_by(OrderEvent.occurred_at, OrderEvent.received_at)
        )
    ).all()
    return order_read(order, list(history))

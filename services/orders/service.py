"""Order events: idempotent ingestion, the state machine, history, and ``order.changed``."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.cards import CardLinks, card_identity, card_links
from services.contracts.messages import OrderChanged
from services.contracts.orders import OrderStatus
from services.core.errors import Conflict, NotFound, PasspostError, Unauthorized
from services.core.models import utcnow
from services.core.queue import publish_all
from services.core.settings import Settings
from services.merchants import google_wallet
from services.merchants.models import Merchant
from services.orders.models import Order, OrderEvent
from services.orders.schemas import (
    EventAccepted,
    HistoryEntry,
    OrderEventIn,
    OrderRead,
    OrderSnapshot,
)
from services.orders.states import Decision, decide

SIGNATURE_TOLERANCE_SECONDS = 300
SNAPSHOT_FIELDS = ("number", "customer", "total", "shipping", "items", "links")


def verify_signature(
    secret: str, header: str | None, body: bytes, now: float | None = None
) -> None:
    """``Passpost-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``."""
    if not header:
        raise Unauthorized("missing Passpost-Signature")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        raise Unauthorized("malformed Passpost-Signature: no t=<unix seconds>") from None
    if abs((now if now is not None else time.time()) - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        raise Unauthorized("Passpost-Signature is older than 5 minutes (or from the future)")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, "sha256").hexdigest()
    if not any(hmac.compare_digest(expected, given) for given in parts.get("v1", [])):
        raise Unauthorized("Passpost-Signature does not match the body")


def body_hash(event: OrderEventIn) -> str:
    canonical = json.dumps(event.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


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
            )
            for e in history
        ],
    )


def links_for(merchant: Merchant, customer_id: str, settings: Settings) -> CardLinks:
    identity = card_identity(settings.resolved_secret_key(), merchant.id, customer_id)
    google_save_url = google_wallet.save_link(merchant, identity.serial_number)
    return card_links(identity, settings.base_url(), google_save_url=google_save_url)


@dataclass(frozen=True, slots=True)
class _Answer:
    """What an event id was answered: a replay with the same body gets it again."""

    event_id: str
    body_hash: str
    response: dict[str, Any]


async def ingest_events(
    session: AsyncSession,
    merchant: Merchant,
    events: Sequence[OrderEventIn],
    settings: Settings,
) -> list[EventAccepted | PasspostError]:
    """Apply events in their order, each once, with set-based SQL.

    A replayed id answers as before, a reused id with another body is refused (409), and every
    accepted event lands in its order's history.

    A handful of statements whatever the number of events: the ids seen before, the orders
    locked (``FOR UPDATE``, in a fixed order; SQLite's ``BEGIN IMMEDIATE`` serialises anyway),
    the new orders inserted (``ON CONFLICT DO NOTHING``: an order made meanwhile by another
    request is locked instead), then the history and the messages in bulk. Every refusal is
    decided before anything is written, so a refused event leaves no trace and needs no
    savepoint; it is returned (not raised) in its place.
    """
    if not events:
        return []
    digests = [body_hash(event) for event in events]
    answered = await _answers(session, merchant, {event.id for event in events})
    creators = _creators(events, answered)
    orders, made = await _lock_or_create(session, merchant, events, creators)
    if found := {e.id for e in events if e.order.id in orders and e.order.id not in made}:
        # Holding the orders' locks now: events with these ids may have committed meanwhile.
        answered.update(await _answers(session, merchant, found - answered.keys()))

    outcomes: list[EventAccepted | PasspostError] = []
    history: list[dict[str, Any]] = []
    changes: list[tuple[OrderChanged, str]] = []
    links: dict[str, CardLinks] = {}
    for index, (event, digest) in enumerate(zip(events, digests, strict=True)):
        if (seen := answered.get(event.id)) is not None:
            outcomes.append(_replay(seen, digest))
            continue
        if event.order.id not in orders:
            # Its would-be first event reused an id refused earlier in this batch: make it now.
            creators[event.order.id] = index
            more, made_now = await _lock_or_create(session, merchant, [event], {event.order.id: 0})
            orders.update(more)
            made |= made_now
        order = orders[event.order.id]
        occurred_at = event.occurred_at.astimezone(UTC)
        previous: OrderStatus | None = None
        decision, changed = Decision.apply, True
        if event.order.id not in made or creators[event.order.id] != index:
            previous = OrderStatus(order.status)
            verdict = _decide(order, event, previous, occurred_at)
            if isinstance(verdict, PasspostError):
                outcomes.append(verdict)
                continue
            decision = verdict
            changed = _apply(order, event, occurred_at, decision)
        if order.customer_id not in links:
            links[order.customer_id] = links_for(merchant, order.customer_id, settings)
        accepted = EventAccepted(
            event_id=event.id,
            duplicate=False,
            order=order_read(order),
            card=links[order.customer_id],
        )
        response = accepted.model_dump(mode="json")
        answered[event.id] = _Answer(event.id, digest, response)
        outcomes.append(accepted)
        history.append(
            {
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
            }
        )
        if changed:
            changes.append((_changed(merchant, order, previous, event), str(order.id)))

    await session.flush()  # the orders' new state, before the history that names them
    if history:
        await session.execute(insert(OrderEvent), history)
    await publish_all(session, changes)
    return outcomes


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
) -> dict[str, _Answer]:
    if not event_ids:
        return {}
    rows = await session.execute(
        select(OrderEvent.event_id, OrderEvent.body_hash, OrderEvent.response).where(
            OrderEvent.merchant_id == merchant.id, OrderEvent.event_id.in_(event_ids)
        )
    )
    return {row.event_id: _Answer(row.event_id, row.body_hash, row.response) for row in rows}


def _creators(events: Sequence[OrderEventIn], answered: dict[str, _Answer]) -> dict[str, int]:
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
            _dialect_insert(session)(Order)
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


def _dialect_insert(session: AsyncSession) -> Callable[..., Any]:
    """``INSERT`` with ``ON CONFLICT``: PostgreSQL's or SQLite's (the same clause in both)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _replay(seen: _Answer, digest: str) -> EventAccepted | PasspostError:
    if not hmac.compare_digest(seen.body_hash, digest):
        return Conflict(
            f"event {seen.event_id!r} was received before with a different body",
            event_id=seen.event_id,
        )
    replay = EventAccepted.model_validate(seen.response)
    return replay.model_copy(update={"duplicate": True})


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

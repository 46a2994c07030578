"""Order events: idempotent ingestion, the state machine, history, and ``order.changed``."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.errors import Conflict, NotFound, Unauthorized
from services.core.models import utcnow
from services.core.queue import publish
from services.core.queue.topics import ORDER_CHANGED
from services.core.settings import Settings
from services.merchants.models import Merchant
from services.orders.models import Order, OrderEvent
from services.orders.schemas import (
    CardLinks,
    EventAccepted,
    HistoryEntry,
    OrderEventIn,
    OrderRead,
    OrderSnapshot,
)
from services.orders.states import Decision, OrderStatus, decide
from services.passes.cards import card_identity, card_links
from services.passes.google import wallet

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
    links = card_links(identity, settings)
    return CardLinks(
        serial_number=links.serial_number,
        apple_pass_url=links.apple_pass_url,
        google_save_url=wallet.save_link(merchant, identity.serial_number),
        landing_url=links.landing_url,
    )


async def ingest_event(
    session: AsyncSession, merchant: Merchant, event: OrderEventIn, settings: Settings
) -> EventAccepted:
    """Apply one event, once: a replayed id answers as before, a reused id with another body
    is 409, and every event lands in the order's history."""
    digest = body_hash(event)
    if (seen := await _seen(session, merchant, event.id)) is not None:
        return _replay(seen, digest)

    occurred_at = event.occurred_at.astimezone(UTC)
    order, created = await _lock_or_create(session, merchant, event, occurred_at)
    previous: OrderStatus | None = None
    decision, changed = Decision.apply, True
    if not created:
        # Holding the order's lock now: an event with this id may have committed meanwhile.
        if (seen := await _seen(session, merchant, event.id)) is not None:
            return _replay(seen, digest)
        previous = OrderStatus(order.status)
        if event.order.customer.id != order.customer_id:
            raise Conflict(
                f"order {order.external_id!r} belongs to another customer",
                path="order.customer.id",
            )
        decision = decide(previous, event.order.status, late=occurred_at < order.last_occurred_at)
        if decision == Decision.refused:
            raise Conflict(
                f"order {order.external_id!r} is {previous.value}: it cannot become "
                f"{event.order.status.value}",
                status=previous.value,
            )
        changed = _apply(order, event, occurred_at, decision)

    await session.flush()
    accepted = EventAccepted(
        event_id=event.id,
        duplicate=False,
        order=order_read(order),
        card=links_for(merchant, order.customer_id, settings),
    )
    session.add(
        OrderEvent(
            merchant_id=merchant.id,
            event_id=event.id,
            order_id=order.id,
            status=event.order.status.value,
            occurred_at=occurred_at,
            outcome="applied" if decision == Decision.apply else decision.value,
            body_hash=digest,
            response=accepted.model_dump(mode="json"),
        )
    )
    if changed:
        publish(
            session, ORDER_CHANGED, _changed(merchant, order, previous, event), key=str(order.id)
        )
    return accepted


async def _seen(session: AsyncSession, merchant: Merchant, event_id: str) -> OrderEvent | None:
    return await session.scalar(
        select(OrderEvent).where(
            OrderEvent.merchant_id == merchant.id, OrderEvent.event_id == event_id
        )
    )


async def _lock_or_create(
    session: AsyncSession, merchant: Merchant, event: OrderEventIn, occurred_at: datetime
) -> tuple[Order, bool]:
    """The order, locked until commit so its events apply one at a time; made by its first."""
    query = (
        select(Order)
        .where(Order.merchant_id == merchant.id, Order.external_id == event.order.id)
        .with_for_update()
    )
    order = await session.scalar(query)
    if order is not None:
        return order, False
    try:
        async with session.begin_nested():
            order = _new_order(merchant, event, occurred_at)
            session.add(order)
        return order, True
    except IntegrityError:  # its first two events arrived at once: the other one made it
        existing = await session.scalar(query)
        assert existing is not None
        return existing, False


def _replay(seen: OrderEvent, digest: str) -> EventAccepted:
    if not hmac.compare_digest(seen.body_hash, digest):
        raise Conflict(
            f"event {seen.event_id!r} was received before with a different body",
            event_id=seen.event_id,
        )
    replay = EventAccepted.model_validate(seen.response)
    return replay.model_copy(update={"duplicate": True})


def _new_order(merchant: Merchant, event: OrderEventIn, occurred_at: datetime) -> Order:
    snapshot = merge_snapshot({}, event.order)
    return Order(
        merchant_id=merchant.id,
        external_id=event.order.id,
        number=event.order.number,
        status=event.order.status.value,
        customer_id=event.order.customer.id,
        snapshot=snapshot,
        revision=1,
        placed_at=occurred_at,
        last_occurred_at=occurred_at,
        updated_at=utcnow(),
    )


def _apply(order: Order, event: OrderEventIn, occurred_at: datetime, decision: Decision) -> bool:
    """Apply the event to the order; True when anything the customer could see changed."""
    if decision not in (Decision.apply, Decision.same):
        return False
    order.last_occurred_at = occurred_at
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
) -> dict[str, Any]:
    return {
        "merchant_id": str(merchant.id),
        "order_id": str(order.id),
        "revision": order.revision,
        "event_id": event.id,
        "status": order.status,
        "previous_status": previous.value if previous is not None else None,
        "placed_at": order.placed_at.isoformat(),
        "occurred_at": order.last_occurred_at.isoformat(),
        "order": {"id": order.external_id, "status": order.status, **order.snapshot},
    }


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

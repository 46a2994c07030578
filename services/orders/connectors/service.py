"""Connectors: configuration, and a delivery from its raw request to the order's history.

A delivery is verified (the platform's signature over the raw body, every secret held), then
recorded once per dedupe key (a platform's retry finds its row and changes nothing), mapped to
an ``OrderEventIn`` and fed to ``orders.service.ingest_events`` in the same transaction, with
the connector and the delivery as the event's source. What cannot be mapped is recorded with
its reason and answered 200 all the same. Shoptet's deliveries wait for the fetch job.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.clock import clock
from services.core.db import dialect_insert
from services.core.errors import BadRequest, InvalidInput, NotFound, PasspostError, Unauthorized
from services.core.jsonbody import parse_json_body
from services.core.metrics import CONNECTOR_DELIVERIES
from services.core.settings import Settings
from services.core.transaction import after_commit
from services.merchants.models import Merchant
from services.orders import service as orders
from services.orders.connectors import shopify, shoptet, signatures, woocommerce
from services.orders.connectors.common import (
    KnownOrder,
    Mapped,
    Outcome,
    Platform,
    Received,
    Skip,
    dedupe_digest,
)
from services.orders.connectors.models import Connector, ConnectorDelivery
from services.orders.connectors.schemas import (
    ConnectorConfigure,
    ConnectorRead,
    DeliveryPage,
    DeliveryRead,
    WebhookAnswer,
)
from services.orders.models import Order, OrderEvent

UNVERIFIED = "no such connector, or the signature does not match the body"


async def receive_webhook(
    session: AsyncSession,
    platform: Platform,
    slug: str,
    headers: Mapping[str, str],
    body: bytes,
    settings: Settings,
) -> WebhookAnswer:
    """Verify, record once, map and apply (or, for Shoptet, leave to fetch)."""
    if platform is Platform.woocommerce and woocommerce.PING.fullmatch(body):
        return WebhookAnswer(delivery_id=None, outcome="ping")
    found = await _connector_by_slug(session, platform, slug)
    if found is None or not _verified(platform, found[1], headers, body):
        raise Unauthorized(UNVERIFIED)
    merchant, connector = found
    received = _received(platform, headers, _json(body))
    delivery = await _record(session, merchant, platform, received)
    if delivery is None:
        _count(session, platform, Outcome.redelivered)
        return WebhookAnswer(delivery_id=None, outcome=Outcome.redelivered.value)
    if platform is Platform.shoptet:
        if (skip := shoptet.skip_early(received)) is not None:
            finish(session, delivery, skip.outcome, skip.reason)
        else:
            delivery.fetch_due_at = clock.now()
    else:
        mapped = await _map(session, merchant, platform, connector, received)
        await apply_mapped(session, merchant, delivery, mapped, settings)
    return WebhookAnswer(delivery_id=delivery.id, outcome=delivery.outcome, reason=delivery.reason)


async def _connector_by_slug(
    session: AsyncSession, platform: Platform, slug: str
) -> tuple[Merchant, Connector] | None:
    row = (
        await session.execute(
            select(Merchant, Connector)
            .join(Connector, Connector.merchant_id == Merchant.id)
            .where(Merchant.slug == slug, Connector.platform == platform.value)
        )
    ).first()
    return None if row is None else (row[0], row[1])


def _verified(
    platform: Platform, connector: Connector, headers: Mapping[str, str], body: bytes
) -> bool:
    held = [s for s in (connector.secret, connector.previous_secret) if s]
    if platform is Platform.shopify:
        return signatures.base64_sha256(held, body, headers.get(shopify.SIGNATURE_HEADER))
    if platform is Platform.woocommerce:
        return signatures.base64_sha256(held, body, headers.get(woocommerce.SIGNATURE_HEADER))
    return signatures.hex_sha1(held, body, headers.get(shoptet.SIGNATURE_HEADER))


def _json(body: bytes) -> Any:
    """The payload, or None when a signed body is not JSON (recorded as unmappable)."""
    try:
        return parse_json_body(body)
    except BadRequest:
        return None


def _received(platform: Platform, headers: Mapping[str, str], payload: Any) -> Received:
    if platform is Platform.shopify:
        return shopify.receive(headers, payload)
    if platform is Platform.woocommerce:
        return woocommerce.receive(headers, payload)
    return shoptet.receive(payload)


async def _record(
    session: AsyncSession, merchant: Merchant, platform: Platform, received: Received
) -> ConnectorDelivery | None:
    """The delivery's row, made now; None when its dedupe key was recorded before."""
    insert = (
        dialect_insert(session)(ConnectorDelivery)
        .values(
            id=uuid.uuid4(),
            merchant_id=merchant.id,
            platform=platform.value,
            dedupe_key=dedupe_digest(received.dedupe),
            delivery=(received.delivery or "")[:200] or None,
            topic=received.topic[:64],
            order_ref=(received.order_ref or "")[:200] or None,
            occurred_at=received.occurred_at,
            received_at=clock.now(),
            payload=received.payload,
            outcome=Outcome.pending.value,
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["merchant_id", "platform", "dedupe_key"])
        .returning(ConnectorDelivery.id)
    )
    made = await session.scalar(insert)
    return None if made is None else await session.get_one(ConnectorDelivery, made)


async def _map(
    session: AsyncSession,
    merchant: Merchant,
    platform: Platform,
    connector: Connector,
    received: Received,
) -> Mapped:
    known = await _known(session, merchant, received.order_ref)
    if platform is Platform.shopify:
        return shopify.to_event(received, connector.status_map, known)
    return woocommerce.to_event(received, connector.status_map, known)


async def _known(
    session: AsyncSession, merchant: Merchant, order_ref: str | None
) -> KnownOrder | None:
    if order_ref is None:
        return None
    order = await session.scalar(
        select(Order).where(Order.merchant_id == merchant.id, Order.external_id == order_ref)
    )
    if order is None:
        return None
    return KnownOrder(order.customer_id, orders.order_total(order))


async def apply_mapped(
    session: AsyncSession,
    merchant: Merchant,
    delivery: ConnectorDelivery,
    mapped: Mapped,
    settings: Settings,
) -> None:
    """The mapped event through the orders' own ingestion, its outcome on the delivery."""
    if isinstance(mapped, Skip):
        finish(session, delivery, mapped.outcome, mapped.reason)
        return
    source = orders.EventSource(delivery.platform, delivery.delivery or str(delivery.id))
    [result] = await orders.ingest_events(session, merchant, [mapped], settings, source)
    delivery.event_id = mapped.id
    if isinstance(result, PasspostError):
        finish(session, delivery, Outcome.refused, result.message)
    elif result.duplicate:
        finish(session, delivery, Outcome.duplicate, None)
    else:
        outcome = await session.scalar(
            select(OrderEvent.outcome).where(
                OrderEvent.merchant_id == merchant.id, OrderEvent.event_id == mapped.id
            )
        )
        finish(session, delivery, Outcome(outcome or Outcome.applied), None)


def finish(
    session: AsyncSession, delivery: ConnectorDelivery, outcome: Outcome, reason: str | None
) -> None:
    delivery.outcome = outcome.value
    delivery.reason = reason
    delivery.fetch_due_at = None
    _count(session, Platform(delivery.platform), outcome)


def _count(session: AsyncSession, platform: Platform, outcome: Outcome) -> None:
    """Counted once the delivery's transaction commits."""
    labels = {"platform": platform.value, "outcome": outcome.value}
    after_commit(session, lambda: CONNECTOR_DELIVERIES.labels(**labels).inc())


async def list_deliveries(
    session: AsyncSession,
    merchant: Merchant,
    *,
    platform: Platform | None,
    outcome: Outcome | None,
    limit: int,
) -> DeliveryPage:
    """The merchant's latest deliveries, newest first (through the received_at index)."""
    query = select(ConnectorDelivery).where(ConnectorDelivery.merchant_id == merchant.id)
    if platform is not None:
        query = query.where(ConnectorDelivery.platform == platform.value)
    if outcome is not None:
        query = query.where(ConnectorDelivery.outcome == outcome.value)
    rows = await session.scalars(
        query.order_by(ConnectorDelivery.received_at.desc(), ConnectorDelivery.id).limit(limit)
    )
    return DeliveryPage(deliveries=[DeliveryRead.model_validate(r) for r in rows])


# Configuration (CLI and admin API)


async def configure(
    session: AsyncSession, merchant: Merchant, platform: Platform, body: ConnectorConfigure
) -> Connector:
    """Set a connector's secrets (and token). One new secret while another is held starts a
    rotation: the old one is still accepted until ``revoke_old``. Two given are both held."""
    connector = await session.scalar(
        select(Connector).where(
            Connector.merchant_id == merchant.id, Connector.platform == platform.value
        )
    )
    if connector is None:
        if not body.secrets:
            raise NotFound(f"no {platform.value} connector yet: give its secret")
        connector = Connector(merchant_id=merchant.id, platform=platform.value, status_map={})
        connector.secret = body.secrets[-1]
        session.add(connector)
    elif body.secrets:
        kept = body.secrets[0] if len(body.secrets) == 2 else connector.secret
        connector.secret = body.secrets[-1]
        connector.previous_secret = kept if kept != connector.secret else None
    if body.revoke_old:
        connector.previous_secret = None
    if body.api_token is not None:
        connector.api_token = body.api_token
    if platform is Platform.shoptet and not connector.api_token:
        raise InvalidInput("Shoptet needs the shop's API access token", field="api_token")
    await session.flush()
    return connector


async def set_mapping(
    session: AsyncSession, merchant: Merchant, platform: Platform, source: str, to: str
) -> Connector:
    """The merchant's own mapping of one platform status (``connectors map``)."""
    connector = await get_connector(session, merchant, platform)
    connector.status_map = {**connector.status_map, source: to}
    await session.flush()
    return connector


async def get_connector(session: AsyncSession, merchant: Merchant, platform: Platform) -> Connector:
    connector = await session.scalar(
        select(Connector).where(
            Connector.merchant_id == merchant.id, Connector.platform == platform.value
        )
    )
    if connector is None:
        raise NotFound(f"no {platform.value} connector for {merchant.slug!r}")
    return connector


async def list_connectors(session: AsyncSession, merchant: Merchant) -> list[Connector]:
    rows = await session.scalars(
        select(Connector).where(Connector.merchant_id == merchant.id).order_by(Connector.platform)
    )
    return list(rows)


def connector_read(connector: Connector, merchant: Merchant, settings: Settings) -> ConnectorRead:
    statuses = connector.shop_statuses
    return ConnectorRead(
        platform=Platform(connector.platform),
        webhook_url=webhook_url(settings, Platform(connector.platform), merchant.slug),
        previous_secret_accepted=connector.previous_secret is not None,
        api_token_set=connector.api_token is not None,
        mapping=dict(connector.status_map),
        shop_statuses=None
        if statuses is None
        else {k: str(v.get("name")) for k, v in statuses.items()},
    )


def webhook_url(settings: Settings, platform: Platform, slug: str) -> str:
    return f"{settings.base_url()}/v1/connectors/{platform.value}/{slug}"

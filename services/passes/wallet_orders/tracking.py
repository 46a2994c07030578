"""Each order's Wallet order, kept as ``order.changed`` moves the order: a new version when
what Wallet shows changed, announced to push (``wallet_order.updated``) with its devices.

Every change of an order comes through its customer's card, locked by the consumer, so the
Wallet order's row needs no lock of its own (a consumer's batch locks them anyway, to read
their devices once: ``lock_wallet_orders``). A copy older than the version's revision (a
redelivered or reordered message) changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import ApnsCertificate, Device, OrderChanged, WalletOrderUpdated
from services.contracts.orders import OrderStatus
from services.contracts.wallet_orders import order_identifier
from services.core.models import utcnow
from services.core.queue import publish
from services.merchants import wallet_orders as merchant_wallet_orders
from services.merchants.models import Merchant
from services.passes.changes import update_tag, whole_second
from services.passes.designs import get_design
from services.passes.models import Card, WalletOrder, WalletOrderRegistration
from services.passes.wallet_orders.document import rfc3339

SHOWN = ("number", "total", "shipping", "items", "links")
STEP = timedelta(milliseconds=1)
"""``updatedAt`` has milliseconds (``document.rfc3339``): each version moves it at least so."""


def order_content(previous: dict[str, Any] | None, change: OrderChanged) -> dict[str, Any]:
    """What the version shows: the order as the shop last described it, when it first reached
    each status, and whether the carrier has reported a shipped parcel since."""
    view = change.order.model_dump(mode="json", exclude_none=True)
    at = dict((previous or {}).get("at", {}))
    at.setdefault(change.status.value, rfc3339(change.occurred_at))
    shipping = view.get("shipping")
    carrier_scans = bool((previous or {}).get("carrier_scans")) or (
        previous is not None
        and previous["status"] == OrderStatus.shipped
        and change.status == OrderStatus.shipped
        and shipping != previous.get("shipping")
    )
    return {
        "id": change.order.id,
        "status": change.status.value,
        **{key: view[key] for key in SHOWN if key in view},
        "at": at,
        "carrier_scans": carrier_scans,
    }


OrderKey = tuple[uuid.UUID, str]
"""(merchant id, the shop's order id): whose Wallet order."""


class WalletOrdersOfBatch:
    """The Wallet orders of a consumer batch's orders (``None``: none yet) and their devices,
    read with two queries instead of two per change. The orders are locked until commit: a
    device registering locks its order first, so the devices read stay its devices."""

    def __init__(
        self,
        orders: dict[OrderKey, WalletOrder | None],
        devices: dict[uuid.UUID, list[WalletOrderRegistration]],
    ) -> None:
        self._orders = orders
        self._devices = devices

    def knows(self, key: OrderKey) -> bool:
        return key in self._orders

    def order_of(self, key: OrderKey) -> WalletOrder | None:
        return self._orders[key]

    def devices_of(self, order: WalletOrder) -> list[WalletOrderRegistration] | None:
        return self._devices.get(order.id)

    def made(self, order: WalletOrder) -> None:
        """A Wallet order made after the batch's query: on no device yet."""
        self._orders[order.merchant_id, order.order_id] = order
        self._devices[order.id] = []


async def lock_wallet_orders(
    session: AsyncSession, keys: Iterable[OrderKey]
) -> WalletOrdersOfBatch:
    """The Wallet orders of ``keys`` and their devices (see ``WalletOrdersOfBatch``)."""
    wanted = sorted(set(keys))
    if not wanted:
        return WalletOrdersOfBatch({}, {})
    found = (
        await session.scalars(
            select(WalletOrder)
            .where(tuple_(WalletOrder.merchant_id, WalletOrder.order_id).in_(wanted))
            .order_by(WalletOrder.merchant_id, WalletOrder.order_id)
            .with_for_update()
        )
    ).all()
    orders: dict[OrderKey, WalletOrder | None] = dict.fromkeys(wanted)
    orders.update({(order.merchant_id, order.order_id): order for order in found})
    return WalletOrdersOfBatch(orders, await _devices_by_order(session, [o.id for o in found]))


async def _devices_by_order(
    session: AsyncSession, order_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[WalletOrderRegistration]]:
    """The registrations of each Wallet order, oldest first, with one query."""
    devices: dict[uuid.UUID, list[WalletOrderRegistration]] = {i: [] for i in order_ids}
    if order_ids:
        registered = await session.scalars(
            select(WalletOrderRegistration)
            .where(WalletOrderRegistration.wallet_order_id.in_(list(devices)))
            .order_by(WalletOrderRegistration.created_at)
        )
        for registration in registered.all():
            devices[registration.wallet_order_id].append(registration)
    return devices


def _ms(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=moment.microsecond // 1000 * 1000)


async def track_order_change(
    session: AsyncSession,
    merchant: Merchant,
    card: Card,
    change: OrderChanged,
    secret_key: bytes,
    *,
    known: WalletOrdersOfBatch | None = None,
) -> WalletOrder | None:
    """The order's Wallet order after ``change`` (None while the merchant has them off).
    ``known``: the batch's Wallet orders read already (``lock_wallet_orders``)."""
    order_type = merchant.order_type_identifier
    if not merchant_wallet_orders.enabled(merchant) or order_type is None:
        return None
    key = (merchant.id, change.order.id)
    if known is not None and known.knows(key):
        order = known.order_of(key)
    else:
        order = await session.scalar(
            select(WalletOrder).where(
                WalletOrder.merchant_id == merchant.id, WalletOrder.order_id == change.order.id
            )
        )
    if order is not None and order.revision >= change.revision:
        return order
    now = utcnow()
    if order is None:
        tag = await update_tag(session, order_type)
        order = _first_version(merchant, order_type, card, change, secret_key, now, tag)
        session.add(order)
        if known is not None:
            known.made(order)
        return order  # a device registers for a version it fetched: none has the first
    content = order_content(order.content, change)
    order.revision = change.revision
    if content == order.content:
        return order
    order.content = content
    order.version += 1
    order.updated_at = max(_ms(now), order.updated_at + STEP)
    order.changed_at = max(whole_second(now), order.changed_at + timedelta(seconds=1))
    # One tag per order type and transaction, as for cards: a consumer's batch bumps it once.
    order.update_tag = await update_tag(session, order.order_type_identifier)
    devices = known.devices_of(order) if known is not None else None
    await announce(session, merchant, order, devices=devices)
    return order


def _first_version(
    merchant: Merchant,
    order_type: str,
    card: Card,
    change: OrderChanged,
    secret_key: bytes,
    now: datetime,
    tag: int,
) -> WalletOrder:
    created = _ms(change.placed_at)
    return WalletOrder(
        id=uuid.uuid4(),  # now, not at the flush: the batch knows it by its id
        merchant_id=merchant.id,
        order_id=change.order.id,
        card_id=card.id,
        order_type_identifier=order_type,
        order_identifier=order_identifier(secret_key, merchant.id, change.order.id),
        revision=change.revision,
        version=1,
        content=order_content(None, change),
        created_at=created,
        updated_at=created,
        changed_at=whole_second(now),
        update_tag=tag,
    )


async def announce(
    session: AsyncSession,
    merchant: Merchant,
    order: WalletOrder,
    *,
    devices: Sequence[WalletOrderRegistration] | None = None,
) -> None:
    """``wallet_order.updated``: push tells each registered device, once per version.

    Nothing while no device has the order: push would have nobody to tell, and a device that
    registers later fetches the order as it then is. (Announced anyway, every order event cost
    a message through push: event -> push p50 at 200 events/s was 1.0-1.4 s with it, 0.7-0.8 s
    without, by benchmark.)
    """
    if devices is None:
        devices = (await _devices_by_order(session, [order.id]))[order.id]
    if not devices:
        return
    design = await get_design(session, merchant)
    publish(
        session,
        WalletOrderUpdated(
            wallet_order_id=order.id,
            merchant_id=order.merchant_id,
            order_type_identifier=order.order_type_identifier,
            order_identifier=order.order_identifier,
            version=order.version,
            apns=ApnsCertificate(
                certificate_path=str(design.order_certificate_path),
                key_path=str(design.order_key_path),
            ),
            devices=[
                Device(device_library_identifier=d.device_identifier, push_token=d.push_token)
                for d in devices
            ],
        ),
        key=str(order.id),
    )


async def drop_order_push_token(session: AsyncSession, device: str, push_token: str) -> int:
    """Forget a token APNs rejected for good (``push_token.rejected``); a token re-registered
    since then is kept."""
    result = await session.execute(
        delete(WalletOrderRegistration).where(
            WalletOrderRegistration.device_identifier == device,
            WalletOrderRegistration.push_token == push_token,
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]

"""Device registrations: the PassKit web service's state, and the change order devices follow."""

from __future__ import annotations

import hmac
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.core.errors import BadRequest, NotFound, TooManyRequests, Unauthorized
from services.passes.channel import count
from services.passes.models import Card, PassTypeCounter, Registration

DEVICE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
PASS_TYPE_ID = re.compile(r"pass(?:\.[A-Za-z0-9-]+)+")
SERIAL_NUMBER = re.compile(r"[A-Za-z0-9._-]{1,64}")
PUSH_TOKEN = re.compile(r"[0-9A-Fa-f]{16,200}")
MAX_PASS_TYPE_LENGTH = 255
AUTH_SCHEME = "ApplePass "


def check_path(
    *, device: str | None = None, pass_type: str | None = None, serial: str | None = None
) -> None:
    """Path parameters from a device: anything out of shape is 400, never a query."""
    if device is not None and not DEVICE_ID.fullmatch(device):
        raise BadRequest("malformed deviceLibraryIdentifier")
    if pass_type is not None and (
        len(pass_type) > MAX_PASS_TYPE_LENGTH or not PASS_TYPE_ID.fullmatch(pass_type)
    ):
        raise BadRequest("malformed passTypeIdentifier")
    if serial is not None and not SERIAL_NUMBER.fullmatch(serial):
        raise BadRequest("malformed serialNumber")


class PassState(NamedTuple):
    """What answering a device's pass request needs of a card, without its content."""

    id: uuid.UUID
    authentication_token: str
    version: int
    changed_at: datetime


_PASS_STATE = select(Card.id, Card.authentication_token, Card.version, Card.changed_at).where(
    Card.serial_number == bindparam("serial"), Card.pass_type_identifier == bindparam("pass_type")
)


async def find_pass_state(connection: AsyncConnection, pass_type: str, serial: str) -> PassState:
    """The columns of a card a 304 needs (the statement is built once: this path is hot)."""
    result = await connection.execute(_PASS_STATE, {"serial": serial, "pass_type": pass_type})
    row = result.first()
    if row is None:
        raise NotFound("no such pass")
    return PassState(*row)


async def find_card(session: AsyncSession, pass_type: str, serial: str) -> Card:
    card = await session.scalar(
        select(Card).where(Card.serial_number == serial, Card.pass_type_identifier == pass_type)
    )
    if card is None:
        raise NotFound("no such pass")
    return card


def authenticate(card: Card | PassState, authorization: str | None) -> None:
    """``Authorization: ApplePass <token>``, compared in constant time."""
    check_token(card.authentication_token.encode(), authorization)


def check_token(expected: bytes, authorization: str | None) -> None:
    """``authenticate`` with the card's token already encoded (the web service's cache)."""
    scheme, _, given = (authorization or "").partition(" ")
    if f"{scheme} " != AUTH_SCHEME or not hmac.compare_digest(given.encode(), expected):
        raise Unauthorized("missing or wrong ApplePass token")


FULL_RETRY_AFTER_SECONDS = 3600
"""What a device told "this card (or this device) has all the registrations it may" waits:
Wallet tries again later, and succeeds once a registration was dropped meanwhile."""


@dataclass(frozen=True)
class RegistrationLimits:
    """How many registrations one card, and one device, may have (``PASSPOST_MAX_*``).

    Each registration is a push per change: without a bound, one card's token registering
    2,000 made-up devices made one order event send 2,003 pushes.
    """

    devices_per_card: int
    passes_per_device: int


async def register(
    session: AsyncSession, card: Card, device: str, push_token: str, limits: RegistrationLimits
) -> bool:
    """Register ``device`` for ``card``; True when new. A new push token replaces the old one.

    A new registration beyond either limit is refused with 429: the card's row is locked
    first, so registrations of one card counted at once cannot pass its limit together.
    """
    if not PUSH_TOKEN.fullmatch(push_token):
        raise BadRequest("pushToken must be a hexadecimal APNs device token")
    existing = await session.scalar(
        select(Registration).where(
            Registration.device_library_identifier == device, Registration.card_id == card.id
        )
    )
    if existing is not None:
        existing.push_token = push_token
        return False
    await session.execute(select(Card.id).where(Card.id == card.id).with_for_update())
    await _refuse_past_limits(session, card, device, limits)
    try:
        async with session.begin_nested():
            session.add(
                Registration(
                    device_library_identifier=device, card_id=card.id, push_token=push_token
                )
            )
    except IntegrityError:  # the same device registering twice at once
        return False
    count(session, card.merchant_id, "apple.registered")
    return True


async def _refuse_past_limits(
    session: AsyncSession, card: Card, device: str, limits: RegistrationLimits
) -> None:
    counted = select(func.count()).select_from(Registration)
    devices = await session.scalar(counted.where(Registration.card_id == card.id))
    if (devices or 0) >= limits.devices_per_card:
        raise TooManyRequests(
            f"this pass is registered on {limits.devices_per_card} devices, as many as it may be",
            retry_after=FULL_RETRY_AFTER_SECONDS,
        )
    passes = await session.scalar(counted.where(Registration.device_library_identifier == device))
    if (passes or 0) >= limits.passes_per_device:
        raise TooManyRequests(
            f"this device is registered for {limits.passes_per_device} passes, as many as it may",
            retry_after=FULL_RETRY_AFTER_SECONDS,
        )


async def unregister(session: AsyncSession, card: Card, device: str) -> None:
    result = await session.execute(
        delete(Registration).where(
            Registration.device_library_identifier == device, Registration.card_id == card.id
        )
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound("this device has no registration for the pass")
    count(session, card.merchant_id, "apple.unregistered")


_UPDATED_SERIALS = (
    select(Card.serial_number, Card.update_tag)
    .join(Registration, Registration.card_id == Card.id)
    .where(
        Registration.device_library_identifier == bindparam("device"),
        Card.pass_type_identifier == bindparam("pass_type"),
        Card.update_tag > bindparam("since"),
    )
    .order_by(Card.update_tag)
)


async def updated_serials(
    connection: AsyncConnection | AsyncSession, device: str, pass_type: str, since: int | None
) -> tuple[list[str], int]:
    """Serial numbers of the device's cards changed after tag ``since``, and the newest tag.

    Without a tag, every card (tags are never negative). The statement is built once: devices
    call this after every push.
    """
    parameters = {"device": device, "pass_type": pass_type, "since": -1 if since is None else since}
    rows = (await connection.execute(_UPDATED_SERIALS, parameters)).all()
    return [row.serial_number for row in rows], max((row.update_tag for row in rows), default=0)


def parse_tag(value: str | None) -> int | None:
    """``passesUpdatedSince`` as we handed it out; anything else means 'everything'."""
    if value is None or not value.isdigit() or len(value) > 18:
        return None
    return int(value)


async def next_update_tag(session: AsyncSession, pass_type: str) -> int:
    """The next tag of ``pass_type``; its row stays locked until the caller's transaction ends.

    The bump does not flush the session: the change the tag is for is written with the rest
    of its batch, not in a statement of its own and then again for the tag."""
    bump = (
        update(PassTypeCounter)
        .where(PassTypeCounter.pass_type_identifier == pass_type)
        .values(value=PassTypeCounter.value + 1)
        .returning(PassTypeCounter.value)
    )
    with session.no_autoflush:
        value = (await session.execute(bump)).scalar_one_or_none()
    if value is not None:
        return int(value)
    try:
        async with session.begin_nested():
            session.add(PassTypeCounter(pass_type_identifier=pass_type, value=1))
        return 1
    except IntegrityError:  # another transaction made the row first
        return int((await session.execute(bump)).scalar_one())


async def registrations_of(session: AsyncSession, card: Card) -> list[Registration]:
    return list(
        (
            await session.scalars(
                select(Registration)
                .where(Registration.card_id == card.id)
                .order_by(Registration.created_at)
            )
        ).all()
    )


async def registrations_by_card(
    session: AsyncSession, cards: Sequence[Card]
) -> dict[uuid.UUID, list[Registration]]:
    """The registrations of many cards with one query (a campaign's part, a job's batch): a
    query per card would also flush the session's pending changes each time."""
    found: dict[uuid.UUID, list[Registration]] = {card.id: [] for card in cards}
    if cards:
        rows = await session.scalars(
            select(Registration)
            .where(Registration.card_id.in_(list(found)))
            .order_by(Registration.created_at)
        )
        for registration in rows.all():
            found[registration.card_id].append(registration)
    return found


async def drop_push_token(session: AsyncSession, device: str, push_token: str) -> int:
    """Forget a token APNs rejected for good; a token re-registered since then is kept."""
    result = await session.execute(
        delete(Registration).where(
            Registration.device_library_identifier == device, Registration.push_token == push_token
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]

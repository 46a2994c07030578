"""A change of what a card shows, announced: its new version and update tag, and the
``card.updated`` message that carries what push needs (the devices, the APNs credentials'
shape, the Google object) so that push reads no passes table."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import (
    ApnsCertificate,
    ApnsToken,
    CardUpdated,
    Device,
    GoogleMessage,
    GoogleObject,
)
from services.core.db import public_base_url
from services.core.models import utcnow
from services.core.queue import publish
from services.core.transaction import Slot
from services.merchants import google_wallet as merchant_google
from services.merchants.models import Merchant
from services.passes import google_wallet
from services.passes.apple import pass_cache
from services.passes.channel import count
from services.passes.designs import get_design
from services.passes.models import Card, PassDesign, Registration
from services.passes.registrations import next_update_tag, registrations_of

_UPDATE_TAGS = Slot[dict[str, int]](
    "update tag of each pass type", dict, forget_at_savepoint_rollback=True
)
"""Taken in this transaction. A rolled-back savepoint may have undone the counter's bump, so
the tag is then taken again."""
_MERCHANTS = Slot[dict[uuid.UUID, Merchant]]("merchant of each card announced", dict)
"""Held for the transaction: the session's identity map holds objects weakly, so a merchant no
caller keeps would be read again (and the session flushed) for every card announced."""


Notification = Literal["status", "marketing"]


@dataclass(frozen=True, slots=True)
class MarketingChange:
    """What a change of the card's marketing slot tells push: the offer's Google message (if
    one arrives), whether the version notifies, and the messages to take off the object."""

    message: GoogleMessage | None = None
    notifies: bool = False
    withdrawn: tuple[str, ...] = ()


def whole_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


async def record_change(
    session: AsyncSession,
    card: Card,
    *,
    notify: bool = False,
    marketing: MarketingChange | None = None,
    devices: list[Registration] | None = None,
) -> None:
    """Every change of what a card shows: a new version, Last-Modified and update tag, and a
    ``card.updated`` message for the push service, all in the caller's transaction.

    ``notify``: the status shown moved (the lock screen says so); ``marketing``: the offers
    shown changed. The version's notification is counted for the channel's stats when the
    card is on a device (an Apple registration, a saved Google object).
    ``devices``: the card's registrations, when the caller read them for many cards at once.

    Last-Modified has whole-second precision in HTTP, so it moves at least one second per
    change: a device holding the previous version never gets a 304 for the new one.
    """
    card.version += 1
    card.changed_at = max(whole_second(utcnow()), card.changed_at + timedelta(seconds=1))
    pass_cache.forget_at_commit(session, card.pass_type_identifier, card.serial_number)
    notification: Notification | None = "status" if notify else None
    if marketing is not None and marketing.notifies:
        notification = "marketing"
    await announce(
        session,
        card,
        notify=notify,
        marketing=marketing,
        notification=notification,
        devices=devices,
    )
    # The tag last: it locks the pass type's counter until commit, so keep that short.
    card.update_tag = await update_tag(session, card.pass_type_identifier)


async def update_tag(session: AsyncSession, pass_type: str) -> int:
    """One update tag per pass type and transaction: the counter is bumped (and locked until
    commit) by the first card changed, and every card changed with it shares the value. They
    commit together, so a device listing changes since a tag sees all of them or none."""
    tags = _UPDATE_TAGS.get(session)
    if pass_type not in tags:
        tags[pass_type] = await next_update_tag(session, pass_type)
    return tags[pass_type]


async def announce(
    session: AsyncSession,
    card: Card,
    *,
    notify: bool = False,
    marketing: MarketingChange | None = None,
    notification: Notification | None = None,
    devices: list[Registration] | None = None,
) -> None:
    """Publish ``card.updated``: what push needs for the devices and the Google object.

    ``notify``: the status shown changed, so Google gets a message too (Apple's lock screen
    comes from the pass's ``changeMessage``). ``marketing``: an offer's message instead, and
    messages to withdraw. ``notification``: what the version announces, for the stats.
    """
    merchants = _MERCHANTS.get(session)
    if card.merchant_id not in merchants:
        merchants[card.merchant_id] = await session.get_one(Merchant, card.merchant_id)
    merchant = merchants[card.merchant_id]
    design = await get_design(session, merchant)
    if devices is None:
        devices = await registrations_of(session, card)
    if notification is not None and (devices or card.google_saved):
        count(session, card.merchant_id, f"notifications.{notification}")
    google = google_object(
        merchant, design, card, public_base_url(session), notify=notify, marketing=marketing
    )
    update = card_updated(card, design, devices, google, notification=notification)
    publish(session, update, key=str(card.id))


async def announce_all(session: AsyncSession, merchant: Merchant) -> int:
    """Announce every card of a merchant again (after Google Wallet was switched on)."""
    found = (await session.scalars(select(Card).where(Card.merchant_id == merchant.id))).all()
    for card in found:
        await announce(session, card)
    return len(found)


def google_object(
    merchant: Merchant,
    design: PassDesign,
    card: Card,
    base_url: str,
    *,
    notify: bool,
    marketing: MarketingChange | None = None,
) -> GoogleObject | None:
    """The card's Google object as it should be now (None without Google Wallet)."""
    if not merchant_google.enabled(merchant):
        return None
    message = google_wallet.status_message(design, card) if notify else None
    if marketing is not None and marketing.message is not None:
        message = marketing.message
    return GoogleObject(
        issuer_id=str(merchant.google_issuer_id),
        object_id=merchant_google.card_object_id(merchant, card.serial_number),
        service_account_path=str(merchant.google_service_account_path),
        object=google_wallet.object_body(merchant, design, card, base_url),
        message=message,
        withdrawn_messages=marketing.withdrawn if marketing is not None else (),
    )


def card_updated(
    card: Card,
    design: PassDesign,
    devices: list[Registration],
    google: GoogleObject | None = None,
    *,
    notification: Notification | None = None,
) -> CardUpdated:
    """What the push service needs to deliver a change, so that it reads no passes table."""
    apns: ApnsCertificate | ApnsToken = ApnsCertificate(
        certificate_path=design.certificate_path, key_path=design.key_path
    )
    if design.apns_token_key_path and design.apns_token_key_id:
        apns = ApnsToken(
            key_path=design.apns_token_key_path,
            key_id=design.apns_token_key_id,
            team_id=design.team_identifier,
        )
    return CardUpdated(
        card_id=card.id,
        merchant_id=card.merchant_id,
        serial_number=card.serial_number,
        pass_type_identifier=card.pass_type_identifier,
        version=card.version,
        apns=apns,
        devices=[
            Device(device_library_identifier=d.device_library_identifier, push_token=d.push_token)
            for d in devices
        ],
        google=google,
        notification=notification,
    )

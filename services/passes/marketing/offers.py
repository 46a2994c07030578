"""Offers on cards: a campaign's audience part applied, offers taken off (withdrawn, expired,
opted out), and held notifications sent once the quiet hours end.

Every card is locked before its offer rows are read or written (the order every writer here
keeps, so two of them never wait for each other in a circle); a (card, offer) row exists at
most once, so a redelivered or republished audience part shows and notifies nothing twice.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import CampaignAudience, CampaignProgress, CardCriteria
from services.core.queue import publish
from services.merchants.marketing import MarketingSettings, marketing_settings
from services.passes.changes import MarketingChange, record_change
from services.passes.channel import count
from services.passes.issuing import lock_cards
from services.passes.marketing import slot
from services.passes.marketing.models import (
    DEFERRED,
    DUE_STATES,
    SHOWN,
    SKIPPED,
    CardOffer,
    MarketingConsent,
)
from services.passes.marketing.policy import (
    Decision,
    Defer,
    MarketingMessage,
    Notify,
    Silent,
    Skip,
    decide,
    recent,
    zone_of,
)
from services.passes.models import Card, Registration
from services.passes.registrations import registrations_by_card

log = logging.getLogger(__name__)

PAGE = 500
"""Cards per transaction when passes pages through a merchant's cards itself."""

SUPPRESSED = {"capped": "suppressed.capped", "opted_out": "suppressed.opted_out"}
NOT_ON_A_DEVICE = "not_on_a_device"
"""Skipped: the card was on no device (no Apple registration, its Google object not saved)."""
LATER_ON_A_DEVICE = "later_on_a_device"
"""Silent: skipped as on no device, shown once the card landed on one (old news by then)."""


@dataclass
class Tally:
    """What one step did for one campaign: the deltas of its ``CampaignProgress``."""

    targeted: int = 0
    updated: int = 0
    notified: int = 0
    deferred: int = 0
    silent: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def progress(
        self, campaign_id: uuid.UUID, merchant_id: uuid.UUID, part: int | None, parts: int | None
    ) -> CampaignProgress:
        return CampaignProgress(
            campaign_id=campaign_id,
            merchant_id=merchant_id,
            part=part,
            parts=parts,
            targeted=self.targeted,
            updated=self.updated,
            notified=self.notified,
            deferred=self.deferred,
            silent=dict(self.silent),
            skipped=dict(self.skipped),
        )


@dataclass(frozen=True)
class Audience:
    """What deciding for a part's cards needs, read with one query each."""

    consent: dict[str, bool]
    devices: dict[uuid.UUID, list[Registration]]
    """Each card's Apple registrations (a card with none is on no Apple device)."""
    settings: MarketingSettings


async def apply_audience(session: AsyncSession, audience: CampaignAudience, now: datetime) -> None:
    """Put the offer on the part's cards (those the card criteria hold for), each as the
    policy decides, and publish the part's progress once."""
    by_customer, parts = await _cards_of_part(session, audience)
    found = [card for card in by_customer.values() if card is not None]
    done = await _cards_with_offer(session, found, audience.offer.id)
    context = await audience_context(session, audience.merchant_id, found)
    offer = audience.offer.model_dump(mode="json")
    tally, added = Tally(), 0
    for card in by_customer.values():
        if card is None:
            tally.targeted += 1
            tally.skipped["no_card"] += 1
            continue
        if card.id in done or not _matches(card, audience.cards, context):
            continue
        tally.targeted += 1
        row = CardOffer(
            card_id=card.id,
            merchant_id=audience.merchant_id,
            offer_id=audience.offer.id,
            campaign_id=audience.campaign_id,
            offer=offer,
            valid_until=audience.offer.valid_until,
        )
        session.add(row)
        added += 1
        if _on_no_device(card, context):
            _skip(row, NOT_ON_A_DEVICE, tally)
            continue
        consent = context.consent.get(card.customer_id, True)
        decision = _decide(card, row, consent, context, now)
        await _apply_decision(session, card, row, decision, now, tally, context.devices)
    if done and not added:
        # Applied in one transaction before (redelivered, or republished after a crash).
        log.info("audience part applied before", extra={"campaign": str(audience.campaign_id)})
        return
    progress = tally.progress(audience.campaign_id, audience.merchant_id, audience.part, parts)
    publish(session, progress, key=str(audience.campaign_id))


async def _cards_of_part(
    session: AsyncSession, audience: CampaignAudience
) -> tuple[dict[str, Card | None], int | None]:
    """The part's customers and their cards (``None``: no card), locked, and the number of
    parts if this one is the last. Without customer ids the part is the merchant's next page
    of cards, and the rest is published as the next part."""
    merchant_id = audience.merchant_id
    if audience.customer_ids is not None:
        locked = await lock_cards(session, [(merchant_id, c) for c in audience.customer_ids])
        cards = {c: locked.card_of((merchant_id, c)) for c in audience.customer_ids}
        return cards, audience.parts
    page = await page_of_cards(session, merchant_id, audience.after)
    if len(page) < PAGE:
        return {c.customer_id: c for c in page}, audience.part
    rest = audience.model_copy(update={"after": page[-1].customer_id, "part": audience.part + 1})
    publish(session, rest, key=str(audience.campaign_id))
    return {c.customer_id: c for c in page}, None


def _decide(
    card: Card,
    row: CardOffer,
    consent: bool,
    context: Audience,
    now: datetime,
    *,
    notified: list[datetime] | None = None,
) -> Decision:
    """The policy's decision for the row's offer on the card (``notified``: the card's
    marketing notifications, when the caller counts some not recorded yet)."""
    if notified is None:
        notified = [datetime.fromisoformat(at) for at in card.marketing_notified]
    return decide(
        MarketingMessage(notify=bool(row.offer.get("notify", True)), expires_at=row.valid_until),
        now=now,
        consent=consent,
        notified=notified,
        settings=context.settings,
        zone=zone_of(card.time_zone, context.settings.time_zone),
        status_notified_at=slot.status_notified_at(card),
    )


async def _apply_decision(
    session: AsyncSession,
    card: Card,
    row: CardOffer,
    decision: Decision,
    now: datetime,
    tally: Tally,
    devices: dict[uuid.UUID, list[Registration]],
) -> None:
    """Show, hold or skip the row's offer on its card as ``decision`` says, and count it."""
    if isinstance(decision, Skip):
        _skip(row, decision.reason, tally)
        if decision.reason in SUPPRESSED:
            count(session, card.merchant_id, SUPPRESSED[decision.reason])
        return
    if isinstance(decision, Defer):
        row.state, row.due_at = DEFERRED, decision.until
        tally.deferred += 1
        if decision.reason == "quiet_hours":
            count(session, card.merchant_id, "suppressed.quiet_hours")
        return
    notifies = isinstance(decision, Notify)
    await _show_row(session, card, row, notifies=notifies, now=now, devices=devices.get(card.id))
    tally.updated += 1
    if notifies:
        row.notified_at = now
        tally.notified += 1
    elif isinstance(decision, Silent):
        tally.silent[decision.reason] += 1
        if decision.reason in SUPPRESSED:
            count(session, card.merchant_id, SUPPRESSED[decision.reason])


async def _show_row(
    session: AsyncSession,
    card: Card,
    row: CardOffer,
    *,
    notifies: bool,
    now: datetime,
    devices: list[Registration] | None,
) -> None:
    """The row's offer on the card, first, as a new version (its Google message with it)."""
    row.state, row.reason, row.due_at = SHOWN, None, None
    await show(session, card, row.offer, notifies=notifies, now=now, devices=devices)


async def show(
    session: AsyncSession,
    card: Card,
    message: slot.Offer,
    *,
    notifies: bool,
    now: datetime,
    devices: list[Registration] | None,
    replacing: Set[str] = frozenset(),
) -> None:
    """Put a marketing message (an offer, a journey's) in the card's slot, newest first, in a
    new version; one that notifies counts against the card's caps and its version announces
    it (the one field with a ``changeMessage``).

    ``replacing``: messages that leave the card in the same version (expired in the same
    round), so that the phone is woken once for both and Google gets one update."""
    card.content = slot.with_offer(slot.without_offers(card.content, replacing), message)
    change = MarketingChange(
        slot.google_message(message, card.locale, notifies=notifies),
        notifies=notifies,
        withdrawn=_withdrawn(replacing),
    )
    await record_change(session, card, marketing=change, devices=devices)
    if notifies:
        notified = [datetime.fromisoformat(at) for at in card.marketing_notified]
        card.marketing_notified = [at.isoformat() for at in recent([*notified, now], now)]
        slot.announced(card, message["id"])


async def take_off_messages(
    session: AsyncSession, card: Card, ids: set[str], devices: list[Registration] | None
) -> None:
    """Take marketing messages off the card quietly: a new version whose changed fields carry
    no ``changeMessage``, their Google messages withdrawn."""
    card.content = slot.without_offers(card.content, ids)
    await record_change(
        session, card, marketing=MarketingChange(withdrawn=_withdrawn(ids)), devices=devices
    )


def _withdrawn(ids: Set[str]) -> tuple[str, ...]:
    """The Google messages of the card's messages ``ids``."""
    return tuple(slot.message_id(message_id) for message_id in sorted(ids))


def _skip(row: CardOffer, reason: str, tally: Tally) -> None:
    row.state, row.reason, row.due_at = SKIPPED, reason, None
    tally.skipped[reason] += 1


async def page_of_cards(
    session: AsyncSession, merchant_id: uuid.UUID, after: str | None
) -> list[Card]:
    """The merchant's next page of cards by customer id, locked (in that order)."""
    query = select(Card).where(Card.merchant_id == merchant_id)
    if after is not None:
        query = query.where(Card.customer_id > after)
    query = query.order_by(Card.customer_id).limit(PAGE).with_for_update()
    return list((await session.scalars(query)).all())


async def _cards_with_offer(
    session: AsyncSession, cards: Sequence[Card], offer_id: str
) -> set[uuid.UUID]:
    """The cards that have a row for this offer already: each shows and notifies it at most
    once, and a part whose cards all have one was applied before and is not counted again."""
    if not cards:
        return set()
    rows = await session.scalars(
        select(CardOffer.card_id).where(
            CardOffer.card_id.in_([c.id for c in cards]), CardOffer.offer_id == offer_id
        )
    )
    return set(rows.all())


async def audience_context(
    session: AsyncSession, merchant_id: uuid.UUID, cards: Sequence[Card]
) -> Audience:
    """Consent, Apple registrations and the merchant's rules for these cards, a query each."""
    customers = [c.customer_id for c in cards]
    consent = await consents_of(session, merchant_id, customers)
    devices = await registrations_by_card(session, cards)
    return Audience(consent, devices, await marketing_settings(session, merchant_id))


async def consents_of(
    session: AsyncSession, merchant_id: uuid.UUID, customers: Iterable[str]
) -> dict[str, bool]:
    """Recorded consent per customer; a customer with no record has not said no."""
    wanted = list(customers)
    if not wanted:
        return {}
    rows = await session.execute(
        select(MarketingConsent.customer_id, MarketingConsent.consent).where(
            MarketingConsent.merchant_id == merchant_id,
            MarketingConsent.customer_id.in_(wanted),
        )
    )
    return {customer: consent for customer, consent in rows}


def _on_a_device(card: Card, context: Audience) -> bool:
    return bool(context.devices.get(card.id)) or card.google_saved


def _on_no_device(card: Card, context: Audience) -> bool:
    """Skipped as on no device (an opted-out card is skipped as opted out, by the policy)."""
    return context.consent.get(card.customer_id, True) and not _on_a_device(card, context)


def _matches(card: Card, criteria: CardCriteria, context: Audience) -> bool:
    """The segment's card criteria: the card's language, and the wallet it is in."""
    if criteria.locales is not None and card.locale not in criteria.locales:
        return False
    wallet = criteria.has_wallet
    if wallet == "apple":
        return bool(context.devices.get(card.id))
    if wallet == "google":
        return card.google_saved
    if wallet == "any":
        return _on_a_device(card, context)
    return True


# Taking offers off ------------------------------------------------------------------------


async def take_off(
    session: AsyncSession,
    card: Card,
    rows: Sequence[CardOffer],
    state: str,
    reason: str,
    devices: list[Registration] | None = None,
) -> None:
    """Take offers off ``card`` quietly (a new version whose changed fields carry no
    ``changeMessage``; their Google messages withdrawn); held ones are dropped and their
    campaigns told (deferred -1, skipped ``reason``)."""
    shown = [row for row in rows if row.state == SHOWN]
    held = [row for row in rows if row.state == DEFERRED]
    for row in rows:
        row.state, row.reason, row.due_at = state, reason, None
    if shown:
        await take_off_messages(session, card, {row.offer_id for row in shown}, devices)
    tallies: dict[uuid.UUID, Tally] = defaultdict(Tally)
    for row in held:
        tallies[row.campaign_id].deferred -= 1
        tallies[row.campaign_id].skipped[reason] += 1
    publish_tallies(session, card.merchant_id, tallies)


def publish_tallies(
    session: AsyncSession, merchant_id: uuid.UUID, tallies: dict[uuid.UUID, Tally]
) -> None:
    """One ``CampaignProgress`` per campaign for a later step (no part)."""
    for campaign_id, tally in tallies.items():
        publish(session, tally.progress(campaign_id, merchant_id, None, None), key=str(campaign_id))


def withdrawable() -> ColumnElement[bool]:
    """The rows an offer's withdrawal ends: shown, held, or skipped while the card was on no
    device (it would show once the card lands on one)."""
    waiting = and_(CardOffer.state == SKIPPED, CardOffer.reason == NOT_ON_A_DEVICE)
    return or_(CardOffer.state.in_(DUE_STATES), waiting)


async def due_rows(
    session: AsyncSession, cards: Sequence[Card], offer_id: str | None = None
) -> dict[uuid.UUID, list[CardOffer]]:
    """The offers still shown or held on these (locked) cards, per card, oldest first; with
    ``offer_id``, that offer's rows its withdrawal ends."""
    if not cards:
        return {}
    query = select(CardOffer).where(CardOffer.card_id.in_([c.id for c in cards]))
    if offer_id is None:
        query = query.where(CardOffer.state.in_(DUE_STATES))
    else:
        query = query.where(CardOffer.offer_id == offer_id, withdrawable())
    rows: dict[uuid.UUID, list[CardOffer]] = defaultdict(list)
    for row in (await session.scalars(query.order_by(CardOffer.created_at))).all():
        rows[row.card_id].append(row)
    return rows


async def lock_cards_by_id(
    session: AsyncSession, card_ids: Iterable[uuid.UUID], *, skip_locked: bool = False
) -> list[Card]:
    """These cards, locked in the order every card lock takes (merchant, customer: as
    ``lock_cards``), so two writers never wait for each other in a circle
    (``skip_locked``: a job leaves busy ones for later)."""
    ids = sorted(set(card_ids))
    if not ids:
        return []
    query = (
        select(Card)
        .where(Card.id.in_(ids))
        .order_by(Card.merchant_id, Card.customer_id)
        .with_for_update(skip_locked=skip_locked)
    )
    return list((await session.scalars(query)).all())


# Held notifications --------------------------------------------------------------------


async def release_held(
    session: AsyncSession,
    cards: Sequence[Card],
    rows: dict[uuid.UUID, list[CardOffer]],
    now: datetime,
) -> None:
    """The quiet hours of held offers ended: ask the policy again (caps, consent, expiry) and
    show them now, silently if capped, or drop them if they expired meanwhile or the card left
    every device overnight (skipped ``not_on_a_device``). A withdrawn offer (redeemed,
    cancelled) is no longer held. ``cards`` are locked; their consent, registrations and
    merchants' rules are read once per merchant."""
    by_merchant: dict[uuid.UUID, list[Card]] = defaultdict(list)
    for card in cards:
        by_merchant[card.merchant_id].append(card)
    for merchant_id, merchant_cards in by_merchant.items():
        context = await audience_context(session, merchant_id, merchant_cards)
        tallies: dict[uuid.UUID, Tally] = defaultdict(Tally)
        for card in merchant_cards:
            if _on_no_device(card, context):
                for row in rows[card.id]:
                    tallies[row.campaign_id].deferred -= 1
                    _skip(row, NOT_ON_A_DEVICE, tallies[row.campaign_id])
                continue
            for row, decision in _decide_held(card, rows[card.id], context, now):
                tally = tallies[row.campaign_id]
                tally.deferred -= 1
                await _apply_decision(session, card, row, decision, now, tally, context.devices)
        publish_tallies(session, merchant_id, tallies)


def _decide_held(
    card: Card, rows: Sequence[CardOffer], context: Audience, now: datetime
) -> list[tuple[CardOffer, Decision]]:
    """Decisions for offers released together on one card, oldest first (so the caps go to
    the first), applied with the one that notifies last: it then arrives last, on the front,
    the field whose message announces it."""
    consent = context.consent.get(card.customer_id, True)
    notified = [datetime.fromisoformat(at) for at in card.marketing_notified]
    decided: list[tuple[CardOffer, Decision]] = []
    for row in rows:
        decision = _decide(card, row, consent, context, now, notified=notified)
        if isinstance(decision, Notify):
            notified = [*notified, now]
        decided.append((row, decision))
    return sorted(decided, key=lambda pair: isinstance(pair[1], Notify))


# A card landing on a device -------------------------------------------------------------


async def landed_on_a_device(
    session: AsyncSession, card: Card, now: datetime, devices: list[Registration] | None = None
) -> None:
    """The card is on a device now (a new Apple registration, its Google object saved): the
    offers its campaigns skipped while it was on none and still valid show now, silently (old
    news by then; a lock-screen line for each would be spam, and the caps stay for new ones),
    counted for their campaigns (skipped ``not_on_a_device`` -1, updated +1, silent
    ``later_on_a_device`` +1). ``card``'s row is locked."""
    query = (
        select(CardOffer)
        .where(
            CardOffer.card_id == card.id,
            CardOffer.state == SKIPPED,
            CardOffer.reason == NOT_ON_A_DEVICE,
            CardOffer.valid_until > now,
        )
        .order_by(CardOffer.created_at)
    )
    rows = (await session.scalars(query)).all()
    if not rows:
        return
    consent = await consents_of(session, card.merchant_id, [card.customer_id])
    if not consent.get(card.customer_id, True):
        return  # opted out since: the rows stay skipped, as the policy would have them
    await session.refresh(card)  # as it is under the lock (read before it, on registration)
    tallies: dict[uuid.UUID, Tally] = defaultdict(Tally)
    for row in rows:
        await _show_row(session, card, row, notifies=False, now=now, devices=devices)
        tally = tallies[row.campaign_id]
        tally.updated += 1
        tally.skipped[NOT_ON_A_DEVICE] -= 1
        tally.silent[LATER_ON_A_DEVICE] += 1
    publish_tallies(session, card.merchant_id, tallies)

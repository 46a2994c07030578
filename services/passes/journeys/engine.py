"""The engine every journey runs on: steps scheduled on a card, due at a time, composed into a
message when due, decided by the one notification policy, shown in the card's marketing slot,
and taken off again when they expire or a later event cancels them.

A journey is a ``Journey``: its name (one of ``merchants.journeys.JOURNEYS``) and ``compose``,
which says, when a step is due, what the message says (placeholders, link, validity) or why it
is dropped. What triggers a journey (a handler of ``shop.event``, ``order.changed``, ...) calls
``schedule``; what ends one calls ``cancel``. Everything else is here:

- a step is one row of ``journey_steps``, unique per (card, journey, key): a redelivered
  message, a restart or a second replica finds it and schedules nothing twice;
- ``due_job`` finds due rows through ``ix_journey_steps_due_at``, locks their cards with
  ``SKIP LOCKED`` and reads the rows again under the lock (as ``marketing/jobs.py``), so a step
  is handled once, in the transaction that changes its card;
- a due step is composed (with the journey's settings as they are then: switched off meanwhile
  is ``skipped journey_off``), then ``policy.decide``: opted out or expired is skipped, capped
  goes on the card silently, quiet hours (or a status notification just before) hold it until
  ``Defer.until``, otherwise it notifies; a card on no device is skipped ``not_on_a_device``;
- a shown message stays until its ``valid_until`` and then leaves the card quietly;
- every notifying message is counted for the stats as ``journeys.<name>`` (besides the
  channel's ``notifications.marketing``), suppressions as ``suppressed.<reason>``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.db import dialect_insert
from services.core.schedule import Job
from services.core.transaction import Slot
from services.merchants.journeys import JourneyName, JourneySettings, journey_settings
from services.merchants.models import Merchant
from services.passes.channel import count
from services.passes.journeys.models import (
    DEFERRED,
    DUE_STATES,
    OPEN_STATES,
    PENDING,
    SHOWN,
    WAITING,
    JourneyStep,
)
from services.passes.journeys.texts import words
from services.passes.marketing.offers import (
    Audience,
    audience_context,
    lock_cards_by_id,
    show,
    take_off_messages,
)
from services.passes.marketing.policy import (
    Decision,
    Defer,
    MarketingMessage,
    Notify,
    Skip,
    decide,
    zone_of,
)
from services.passes.marketing.slot import status_notified_at
from services.passes.models import Card

BATCH = 100
"""Cards per round and transaction."""
EVERY_SECONDS = 15.0
"""How often the job looks for due steps when nothing is due (a clock move wakes it)."""


@dataclass(frozen=True, slots=True)
class Composed:
    """What a due step says: the values of its words' placeholders, its link, and until when
    it stays on the card (None: the journey's ``valid_days``, or its offer's validity)."""

    values: Mapping[str, str] = field(default_factory=dict)
    url: str | None = None
    valid_until: datetime | None = None


Compose = Callable[
    [AsyncSession, Card, JourneyStep, JourneySettings, datetime], Awaitable[Composed | str]
]
"""``compose(session, card, step, settings, now)``: the message, or why the step is dropped
(a short reason, recorded on the step: ``ordered``, ``reminded_recently``, ...)."""


@dataclass(frozen=True, slots=True)
class Journey:
    name: JourneyName
    compose: Compose


# Scheduling and cancelling ---------------------------------------------------------------

_OPEN_JOURNEYS = Slot[dict[uuid.UUID, set[str]]](
    "journeys with steps not ended on each card", dict, forget_at_savepoint_rollback=True
)
"""Read for a consumer's batch of locked cards (``read_open_journeys``), so that the changes
of a card with nothing open do not each ask again. Steps scheduled since are added; a
rolled-back savepoint may have undone some, so it is then forgotten."""


async def read_open_journeys(session: AsyncSession, cards: Sequence[Card]) -> None:
    """Which journeys have steps not ended on ``cards``, with one query. The cards must stay
    locked until commit: every step is scheduled with its card locked, so none is added
    meanwhile but by this transaction, which ``schedule`` records."""
    if not cards:
        return
    rows = await session.execute(
        select(JourneyStep.card_id, JourneyStep.journey)
        .where(
            JourneyStep.card_id.in_([card.id for card in cards]),
            JourneyStep.state.in_((*OPEN_STATES, SHOWN)),
        )
        .distinct()
    )
    known = _OPEN_JOURNEYS.get(session)
    known.update({card.id: set() for card in cards})
    for card_id, journey in rows:
        known[card_id].add(journey)


def made_now(session: AsyncSession, card: Card) -> None:
    """``card`` was made in this transaction: it has no steps but those ``schedule`` adds."""
    _OPEN_JOURNEYS.get(session).setdefault(card.id, set())


def may_have_steps(session: AsyncSession, card: Card, journey: JourneyName) -> bool:
    """False only when the card is known to have no step of ``journey`` not ended."""
    known = _OPEN_JOURNEYS.get(session).get(card.id)
    return known is None or journey in known


async def schedule(
    session: AsyncSession,
    card: Card,
    journey: JourneyName,
    key: str,
    *,
    due_at: datetime | None,
    data: Mapping[str, Any],
    settings: JourneySettings,
) -> bool:
    """Schedule a step of ``journey`` on ``card`` (``due_at`` None: ``WAITING`` until
    ``release`` makes it due); True when new. The same (card, journey, key) again changes
    nothing, whatever its state; a switched-off journey schedules nothing."""
    if not settings.enabled:
        return False
    insert = (
        dialect_insert(session)(JourneyStep)
        .values(
            id=uuid.uuid4(),
            card_id=card.id,
            merchant_id=card.merchant_id,
            journey=journey,
            key=key,
            state=PENDING if due_at is not None else WAITING,
            data=dict(data),
            due_at=due_at,
        )
        .on_conflict_do_nothing(
            index_elements=[JourneyStep.card_id, JourneyStep.journey, JourneyStep.key]
        )
        .returning(JourneyStep.id)
    )
    if (known := _OPEN_JOURNEYS.get(session).get(card.id)) is not None:
        known.add(journey)
    return await session.scalar(insert) is not None


async def release(session: AsyncSession, card: Card, journey: JourneyName, now: datetime) -> int:
    """The waiting steps of ``journey`` on the card are due now (the welcome, once the card is
    on a device)."""
    result = await session.execute(
        update(JourneyStep)
        .where(
            JourneyStep.card_id == card.id,
            JourneyStep.journey == journey,
            JourneyStep.state == WAITING,
        )
        .values(state=PENDING, due_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def cancel(
    session: AsyncSession,
    card: Card,
    journey: JourneyName,
    reason: str,
    *,
    key: str | None = None,
    except_key: str | None = None,
    shown_too: bool = False,
) -> int:
    """Cancel the card's steps of ``journey`` not sent yet (``key``: only that one;
    ``except_key``: all but that one); ``shown_too``: take those on the card off it too,
    quietly. ``card`` must be locked (the caller changes it). How many were ended."""
    if not may_have_steps(session, card, journey):
        return 0
    which = [JourneyStep.card_id == card.id, JourneyStep.journey == journey]
    if key is not None:
        which.append(JourneyStep.key == key)
    if except_key is not None:
        which.append(JourneyStep.key != except_key)
    if not shown_too:  # one statement: every order event of a customer comes here
        result = await session.execute(
            update(JourneyStep)
            .where(*which, JourneyStep.state.in_(OPEN_STATES))
            .values(state="cancelled", reason=reason, due_at=None)
        )
        return int(getattr(result, "rowcount", 0) or 0)
    query = select(JourneyStep).where(*which, JourneyStep.state.in_((*OPEN_STATES, SHOWN)))
    steps = (await session.scalars(query)).all()
    shown = {message_id(step) for step in steps if step.state == SHOWN}
    for step in steps:
        _end(step, "withdrawn" if step.state == SHOWN else "cancelled", reason)
    if shown:
        await take_off_messages(session, card, shown, devices=None)
    return len(steps)


def message_id(step: JourneyStep) -> str:
    """The message's id in the card's marketing slot: never a shop's offer id (those have no
    spaces), short whatever the key."""
    key = hashlib.sha256(step.key.encode()).hexdigest()[:16]
    return f"journey {step.journey} {key}"


def _end(step: JourneyStep, state: str, reason: str | None) -> None:
    step.state, step.reason, step.due_at = state, reason, None


# The job ---------------------------------------------------------------------------------


def due_job(journeys: Sequence[Journey]) -> Job:
    """The scheduled job that runs ``journeys``' due steps."""
    by_name: dict[str, Journey] = {journey.name: journey for journey in journeys}

    async def run(sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> int:
        async with sessionmaker() as session, session.begin():
            cards, steps = await _due(session, now)
            await _handle(session, cards, steps, by_name, now)
            return len(cards)

    return Job("journeys", EVERY_SECONDS, run)


async def _due(
    session: AsyncSession, now: datetime
) -> tuple[list[Card], dict[uuid.UUID, list[JourneyStep]]]:
    """Up to a batch of cards with due steps, locked, and their due steps read under the lock,
    oldest first."""
    due = (JourneyStep.state.in_(DUE_STATES), JourneyStep.due_at <= now)
    card_ids = (
        await session.scalars(select(JourneyStep.card_id).where(*due).distinct().limit(BATCH))
    ).all()
    cards = await lock_cards_by_id(session, card_ids, skip_locked=True)
    steps: dict[uuid.UUID, list[JourneyStep]] = defaultdict(list)
    if cards:
        found = await session.scalars(
            select(JourneyStep)
            .where(JourneyStep.card_id.in_([c.id for c in cards]), *due)
            .order_by(JourneyStep.created_at, JourneyStep.id)
        )
        for step in found.all():
            steps[step.card_id].append(step)
    return [c for c in cards if steps.get(c.id)], steps


async def _handle(
    session: AsyncSession,
    cards: Sequence[Card],
    steps: Mapping[uuid.UUID, list[JourneyStep]],
    journeys: Mapping[str, Journey],
    now: datetime,
) -> None:
    by_merchant: dict[uuid.UUID, list[Card]] = defaultdict(list)
    for card in cards:
        by_merchant[card.merchant_id].append(card)
    for merchant_id, merchant_cards in by_merchant.items():
        context = await audience_context(session, merchant_id, merchant_cards)
        merchant = await session.get_one(Merchant, merchant_id)
        for card in merchant_cards:
            await _handle_card(session, card, steps[card.id], journeys, context, merchant, now)


async def _handle_card(
    session: AsyncSession,
    card: Card,
    steps: Sequence[JourneyStep],
    journeys: Mapping[str, Journey],
    context: Audience,
    merchant: Merchant,
    now: datetime,
) -> None:
    """One card's due steps, in the order its versions must come: the expired messages off
    (in the first new message's version, or one of their own), then the silent ones on, the
    notifying one last. Push sends a card's latest version only, and Apple shows a line only
    for a field with a ``changeMessage`` that changed, so a quiet version after the notifying
    one in the same round would swallow its line."""
    expired = [step for step in steps if step.state == SHOWN]
    for step in expired:
        _end(step, "expired", None)
    replacing = {message_id(step) for step in expired}
    notified = [datetime.fromisoformat(at) for at in card.marketing_notified]
    shown: list[tuple[JourneyStep, dict[str, Any], bool]] = []
    for step in steps:
        if step not in expired:
            decided = await _decide_step(
                session, card, step, journeys, context, merchant, now, notified
            )
            if decided is not None:
                shown.append(decided)
                if decided[2]:
                    notified.append(now)
    for step, message, notifies in sorted(shown, key=lambda decided: decided[2]):
        await _show_step(session, card, step, message, notifies, context, now, replacing)
        replacing = set()
    if replacing:
        await take_off_messages(session, card, replacing, context.devices.get(card.id))


async def _decide_step(
    session: AsyncSession,
    card: Card,
    step: JourneyStep,
    journeys: Mapping[str, Journey],
    context: Audience,
    merchant: Merchant,
    now: datetime,
    notified: list[datetime],
) -> tuple[JourneyStep, dict[str, Any], bool] | None:
    """A due step composed and decided by the policy (``notified``: the card's notifications,
    this round's included): dropped or held here, or its message and whether it notifies."""
    journey = journeys.get(step.journey)
    if journey is None:
        _end(step, "skipped", "journey_off")
        return None
    settings = await journey_settings(session, card.merchant_id, journey.name)
    if not settings.enabled:
        _end(step, "skipped", "journey_off")
        return None
    composed = await journey.compose(session, card, step, settings, now)
    if isinstance(composed, str):
        _end(step, "skipped", composed)
        return None
    consent = context.consent.get(card.customer_id, True)
    if consent and not (context.devices.get(card.id) or card.google_saved):
        _end(step, "skipped", "not_on_a_device")
        return None
    message = _message(step, card, merchant, settings, composed, now)
    decision = _decide(card, message, consent, context, now, notified)
    if isinstance(decision, Skip):
        _end(step, "skipped", decision.reason)
        if decision.reason == "opted_out":
            count(session, card.merchant_id, "suppressed.opted_out")
        return None
    if isinstance(decision, Defer):
        step.state, step.due_at = DEFERRED, decision.until
        if decision.reason == "quiet_hours":
            count(session, card.merchant_id, "suppressed.quiet_hours")
        return None
    return step, message, isinstance(decision, Notify)


async def _show_step(
    session: AsyncSession,
    card: Card,
    step: JourneyStep,
    message: dict[str, Any],
    notifies: bool,
    context: Audience,
    now: datetime,
    replacing: set[str],
) -> None:
    devices = context.devices.get(card.id)
    await show(
        session, card, message, notifies=notifies, now=now, devices=devices, replacing=replacing
    )
    step.state, step.message, step.shown_at = SHOWN, message, now
    step.due_at = datetime.fromisoformat(message["valid_until"])
    if notifies:
        step.notified_at = now
        count(session, card.merchant_id, f"journeys.{step.journey}")
    else:
        count(session, card.merchant_id, "suppressed.capped")


def _decide(
    card: Card,
    message: dict[str, Any],
    consent: bool,
    context: Audience,
    now: datetime,
    notified: list[datetime],
) -> Decision:
    return decide(
        MarketingMessage(notify=True, expires_at=datetime.fromisoformat(message["valid_until"])),
        now=now,
        consent=consent,
        notified=notified,
        settings=context.settings,
        zone=zone_of(card.time_zone, context.settings.time_zone),
        status_notified_at=status_notified_at(card),
    )


def _message(
    step: JourneyStep,
    card: Card,
    merchant: Merchant,
    settings: JourneySettings,
    composed: Composed,
    now: datetime,
) -> dict[str, Any]:
    """The step's message as the marketing slot keeps an offer (``OfferView`` as JSON), in
    the card's language, with the journey's offer template's coupon when it names one."""
    offer = settings.offer
    days = offer.valid_days if offer is not None else settings.valid_days
    valid_until = composed.valid_until or now + timedelta(days=days)
    values = {"shop": merchant.name, "name": card.customer_name or "", **composed.values}
    title, text = words(step.journey, card.locale, settings, values)
    url = composed.url or (str(settings.url) if settings.url is not None else None)
    return {
        "id": message_id(step),
        "title": title,
        "text": text,
        "coupon_code": offer.code if offer is not None else None,
        "url": url,
        "valid_until": valid_until.isoformat(),
        "texts": {},
        "notify": True,
        "created_at": now.isoformat(),
        "journey": step.journey,
    }

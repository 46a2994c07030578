"""Offers and their campaigns: made idempotently, started now or when due, withdrawn, counted.

Every function takes ``now`` (the clock, read at the edge) so expiry and schedules follow a
clock the tests move. A campaign's delivery is messages, published in the transaction that
starts it: its audience in parts of at most 500 customers (``campaign.audience`` straight to
passes for given customer ids; ``campaign.started`` to orders, which pages through its
customers, for a segment with order criteria), and what passes did comes back as
``campaign.progress``.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from sqlalchemy import Select, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import (
    CampaignAudience,
    CampaignProgress,
    CampaignStarted,
    CardCriteria,
    ChannelCounted,
    MarketingConsentSet,
    OfferView,
    OfferWithdrawn,
    OrderCriteria,
)
from services.contracts.shop_api import body_hash
from services.core import metrics
from services.core.db import dialect_insert
from services.core.errors import Conflict, NotFound
from services.core.queue import publish, publish_all
from services.core.queue.contract import Contract
from services.core.transaction import after_commit
from services.merchants.models import Merchant
from services.offers.feedback.service import nps
from services.offers.models import Campaign, ChannelCount, Offer, Redemption
from services.offers.schemas import (
    CampaignPage,
    CampaignRead,
    ConsentRead,
    OfferAccepted,
    OfferIn,
    OfferPage,
    OfferRead,
    RedemptionIn,
    RedemptionRead,
    Stats,
    TargetRead,
    decode_cursor,
    encode_cursor,
)

PageQuery = TypeVar("PageQuery", bound=Select[*tuple[Any, ...]])
log = logging.getLogger(__name__)
AUDIENCE_PART = 500
"""Customers per ``campaign.audience`` part: passes applies a part in one transaction."""
CARD_CRITERIA = frozenset(CardCriteria.model_fields)
STATS_GROUPS = {
    "cards": ("issued",),
    "apple": ("registered", "unregistered"),
    "google": ("saved", "removed"),
    "notifications": ("status", "marketing"),
    "suppressed": (),
    "journeys": (),
    "events": (),
}
"""The channel's counters by group (``channel.counted`` keys are ``<group>.<name>``), with the
names every answer shows even at 0."""


def invalid(path: tuple[str, ...], message: str) -> RequestValidationError:
    """A 422 with the field path, in the shape of every other 422."""
    return RequestValidationError([{"loc": path, "msg": message, "type": "value_error"}])


# offers --------------------------------------------------------------------------------


async def create_offer(
    session: AsyncSession, merchant: Merchant, given: OfferIn, now: datetime
) -> OfferAccepted:
    """Store the offer and its campaign, and start the campaign unless it is due later.

    The same id with the same body answers as the first time (``duplicate`` true), with
    another body 409. Two requests with a new id at once: the second waits for the first's
    unique row, then answers as a replay.
    """
    digest = body_hash(given)
    if (existing := await _offer_row(session, merchant, given.id)) is not None:
        return _replay(existing, digest)
    offer, campaign = _new_offer(merchant, given, digest, now)
    accepted = OfferAccepted(**_offer_read(offer, campaign.id, now).model_dump(), duplicate=False)
    offer.response = accepted.model_dump(mode="json")
    try:
        async with session.begin_nested():
            session.add(offer)
            await session.flush()
            session.add(campaign)
            await session.flush()
    except IntegrityError:
        if (raced := await _offer_row(session, merchant, given.id)) is None:
            raise
        return _replay(raced, digest)
    if campaign.starts_at <= now:
        await start_campaign(session, offer, campaign, now)
    return accepted


def _new_offer(
    merchant: Merchant, given: OfferIn, digest: str, now: datetime
) -> tuple[Offer, Campaign]:
    target = given.target.model_dump(mode="json", exclude_none=True)
    if "segment" in target:
        target = {"segment": given.target.model_dump(mode="json", exclude_unset=True)["segment"]}
    offer = Offer(
        id=uuid.uuid4(),
        merchant_id=merchant.id,
        external_id=given.id,
        title=given.title,
        text=given.text,
        coupon_code=given.coupon_code,
        url=None if given.url is None else str(given.url),
        valid_from=given.valid_from,
        valid_until=given.valid_until,
        texts={locale: text.model_dump() for locale, text in given.texts.items()},
        notify=given.notify,
        target=target,
        redemptions=0,
        created_at=now,
        body_hash=digest,
    )
    starts_at = max(given.valid_from or now, now)
    campaign = Campaign(
        id=uuid.uuid4(),
        merchant_id=merchant.id,
        offer_id=offer.id,
        state="scheduled",
        starts_at=starts_at,
        created_at=now,
        parts_done=[],
        targeted=0,
        updated=0,
        notified=0,
        deferred=0,
        failed=0,
        silent={},
        skipped={},
    )
    return offer, campaign


def _replay(offer: Offer, digest: str) -> OfferAccepted:
    if not hmac.compare_digest(offer.body_hash, digest):
        raise Conflict(
            f"offer {offer.external_id!r} was created before with a different body",
            offer_id=offer.external_id,
        )
    return OfferAccepted.model_validate({**offer.response, "duplicate": True})


def offer_state(offer: Offer, now: datetime) -> str:
    if offer.cancelled_at is not None:
        return "cancelled"
    if now >= offer.valid_until:
        return "expired"
    if offer.valid_from is not None and now < offer.valid_from:
        return "scheduled"
    return "active"


def _offer_read(offer: Offer, campaign_id: uuid.UUID, now: datetime) -> OfferRead:
    ids = offer.target.get("customer_ids")
    return OfferRead(
        **offer_view(offer).model_dump(),
        target=TargetRead(
            customers=None if ids is None else len(ids), segment=offer.target.get("segment")
        ),
        state=offer_state(offer, now),
        redemptions=offer.redemptions,
        campaign_id=campaign_id,
        cancelled_at=offer.cancelled_at,
    )


def offer_view(offer: Offer) -> OfferView:
    """The offer as the cards show it (the message's part)."""
    return OfferView(
        id=offer.external_id,
        title=offer.title,
        text=offer.text,
        coupon_code=offer.coupon_code,
        url=offer.url,
        valid_from=offer.valid_from,
        valid_until=offer.valid_until,
        texts=offer.texts,
        notify=offer.notify,
        created_at=offer.created_at,
    )


async def _offer_row(
    session: AsyncSession, merchant: Merchant, external_id: str, *, lock: bool = False
) -> Offer | None:
    query = select(Offer).where(Offer.merchant_id == merchant.id, Offer.external_id == external_id)
    return await session.scalar(query.with_for_update() if lock else query)


async def _offer_and_campaign(
    session: AsyncSession, merchant: Merchant, external_id: str, *, lock: bool = False
) -> tuple[Offer, Campaign]:
    """The merchant's offer and its campaign (404 for anyone else's)."""
    offer = await _offer_row(session, merchant, external_id, lock=lock)
    if offer is None:
        raise NotFound(f"no offer {external_id!r}")
    query = select(Campaign).where(Campaign.offer_id == offer.id)
    campaign = await session.scalar(query.with_for_update() if lock else query)
    assert campaign is not None  # made with the offer, in its transaction
    return offer, campaign


async def get_offer(
    session: AsyncSession, merchant: Merchant, external_id: str, now: datetime
) -> OfferRead:
    offer, campaign = await _offer_and_campaign(session, merchant, external_id)
    return _offer_read(offer, campaign.id, now)


async def list_offers(
    session: AsyncSession, merchant: Merchant, now: datetime, limit: int, cursor: str | None
) -> OfferPage:
    """The merchant's offers, newest first, a page at a time (keyset: created_at, id)."""
    query = (
        select(Offer, Campaign.id)
        .join(Campaign, Campaign.offer_id == Offer.id)
        .where(Offer.merchant_id == merchant.id)
    )
    rows = (await session.execute(_page(query, Offer, limit, cursor))).all()
    items = [_offer_read(offer, campaign_id, now) for offer, campaign_id in rows[:limit]]
    last = rows[limit - 1][0] if len(rows) > limit else None
    return OfferPage(
        items=items, next_cursor=None if last is None else encode_cursor(last.created_at, last.id)
    )


def _page(
    query: PageQuery, model: type[Offer] | type[Campaign], limit: int, cursor: str | None
) -> PageQuery:
    """``query`` newest first, after ``cursor``, one row more than a page (is there more?)."""
    if cursor is not None:
        created_at, row_id = decode_cursor(cursor)
        query = query.where(
            or_(
                model.created_at < created_at,
                (model.created_at == created_at) & (model.id < row_id),
            )
        )
    return query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)


async def cancel_offer(
    session: AsyncSession, merchant: Merchant, external_id: str, now: datetime
) -> OfferRead:
    """The offer leaves every card, quietly; its campaign is cancelled. Cancelling again
    answers the same and sends nothing more."""
    offer, campaign = await _offer_and_campaign(session, merchant, external_id, lock=True)
    if offer.cancelled_at is None:
        offer.cancelled_at = now
        campaign.state = "cancelled"
        campaign.finished_at = campaign.finished_at or now
        if campaign.started_at is not None:
            withdrawn = OfferWithdrawn(
                merchant_id=merchant.id, offer_id=offer.external_id, reason="cancelled"
            )
            publish(session, withdrawn, key=str(campaign.id))
    return _offer_read(offer, campaign.id, now)


async def redeem(
    session: AsyncSession,
    merchant: Merchant,
    external_id: str,
    given: RedemptionIn,
    now: datetime,
) -> RedemptionRead:
    """The customer used the coupon: counted once, and the offer leaves their card quietly.

    The offer's row is locked, so two redemptions at once are one redemption and a 409.
    """
    offer, campaign = await _offer_and_campaign(session, merchant, external_id, lock=True)
    if (state := offer_state(offer, now)) != "active":
        raise Conflict(f"offer {external_id!r} is {state}: its coupon cannot be used", state=state)
    if offer.coupon_code is None or not hmac.compare_digest(
        offer.coupon_code.encode(), given.code.encode()
    ):
        raise invalid(("body", "code"), "not this offer's coupon code")
    seen = select(Redemption.id).where(
        Redemption.offer_id == offer.id, Redemption.customer_id == given.customer_id
    )
    if await session.scalar(seen) is not None:
        raise Conflict(
            f"customer {given.customer_id!r} has redeemed offer {external_id!r} already",
            customer_id=given.customer_id,
        )
    session.add(
        Redemption(
            merchant_id=merchant.id,
            offer_id=offer.id,
            customer_id=given.customer_id,
            code=given.code,
            redeemed_at=now,
        )
    )
    offer.redemptions += 1
    withdrawn = OfferWithdrawn(
        merchant_id=merchant.id,
        offer_id=offer.external_id,
        reason="redeemed",
        customer_id=given.customer_id,
    )
    publish(session, withdrawn, key=str(campaign.id))
    return RedemptionRead(
        offer_id=offer.external_id,
        customer_id=given.customer_id,
        code=given.code,
        redeemed_at=now,
        redemptions=offer.redemptions,
    )


# campaigns ------------------------------------------------------------------------------


async def start_campaign(
    session: AsyncSession, offer: Offer, campaign: Campaign, now: datetime
) -> None:
    """Publish the campaign's audience (see the module's docstring); an offer that expired
    before its campaign could start is done at once, with nobody targeted."""
    campaign.started_at = now
    if now >= offer.valid_until:
        campaign.state, campaign.finished_at, campaign.parts = "done", now, 0
        return
    campaign.state = "running"
    view, key = offer_view(offer), str(campaign.id)
    if (ids := offer.target.get("customer_ids")) is not None:
        campaign.parts = 0
        await _publish_parts(session, offer, campaign, view, ids)
        return
    segment: dict[str, Any] = offer.target["segment"]
    cards = CardCriteria.model_validate({k: v for k, v in segment.items() if k in CARD_CRITERIA})
    orders = OrderCriteria.model_validate(
        {k: v for k, v in segment.items() if k not in CARD_CRITERIA}
    )
    ids_of = {"campaign_id": campaign.id, "merchant_id": offer.merchant_id, "offer": view}
    if orders.any():
        publish(session, CampaignStarted(**ids_of, orders=orders, cards=cards, as_of=now), key=key)
    else:
        publish(
            session, CampaignAudience(**ids_of, cards=cards, customer_ids=None, part=1), key=key
        )


async def _publish_parts(
    session: AsyncSession,
    offer: Offer,
    campaign: Campaign,
    view: OfferView,
    customer_ids: Sequence[str],
) -> None:
    """Customer ids as audience parts after the campaign's current ones (the last says how
    many there are now)."""
    chunks = [
        list(customer_ids[i : i + AUDIENCE_PART])
        for i in range(0, len(customer_ids), AUDIENCE_PART)
    ]
    first, total = (campaign.parts or 0) + 1, (campaign.parts or 0) + len(chunks)
    messages: list[tuple[Contract, str | None]] = [
        (
            CampaignAudience(
                campaign_id=campaign.id,
                merchant_id=offer.merchant_id,
                offer=view,
                customer_ids=chunk,
                part=part,
                parts=total if part == total else None,
            ),
            str(campaign.id),
        )
        for part, chunk in enumerate(chunks, start=first)
    ]
    campaign.parts = total
    await publish_all(session, messages)


async def add_audience(
    session: AsyncSession,
    merchant: Merchant,
    campaign_id: uuid.UUID,
    customer_ids: list[str],
    now: datetime,
) -> CampaignRead:
    """More customers for a campaign that targets customer ids (past the 10,000 of one call).

    Safe to repeat: a card shows an offer once, whatever its campaign sends it again.
    """
    campaign = await _campaign_row(session, merchant, campaign_id, lock=True)
    offer = await session.get_one(Offer, campaign.offer_id)
    if "customer_ids" not in offer.target:
        raise Conflict("this campaign targets a segment: its audience is the segment's")
    if (state := offer_state(offer, now)) in ("cancelled", "expired"):
        raise Conflict(f"the campaign's offer is {state}", state=state)
    if campaign.state == "scheduled":
        known = offer.target["customer_ids"]
        offer.target = {"customer_ids": list(dict.fromkeys([*known, *customer_ids]))}
    else:
        await _publish_parts(session, offer, campaign, offer_view(offer), customer_ids)
        campaign.state, campaign.finished_at = "running", None
    return campaign_read(campaign, offer.external_id)


async def _campaign_row(
    session: AsyncSession, merchant: Merchant, campaign_id: uuid.UUID, *, lock: bool = False
) -> Campaign:
    query = select(Campaign).where(Campaign.id == campaign_id, Campaign.merchant_id == merchant.id)
    campaign = await session.scalar(query.with_for_update() if lock else query)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}")
    return campaign


def campaign_read(campaign: Campaign, offer_id: str) -> CampaignRead:
    return CampaignRead(
        id=campaign.id,
        offer_id=offer_id,
        state=campaign.state,
        starts_at=campaign.starts_at,
        started_at=campaign.started_at,
        finished_at=campaign.finished_at,
        parts=campaign.parts,
        parts_done=len(campaign.parts_done),
        targeted=campaign.targeted,
        updated=campaign.updated,
        notified=campaign.notified,
        silent=campaign.silent,
        deferred=campaign.deferred,
        skipped=campaign.skipped,
        failed=campaign.failed,
    )


async def get_campaign(
    session: AsyncSession, merchant: Merchant, campaign_id: uuid.UUID
) -> CampaignRead:
    campaign = await _campaign_row(session, merchant, campaign_id)
    offer_id = await session.scalar(select(Offer.external_id).where(Offer.id == campaign.offer_id))
    return campaign_read(campaign, str(offer_id))


async def list_campaigns(
    session: AsyncSession,
    merchant: Merchant,
    limit: int,
    cursor: str | None,
    state: str | None = None,
) -> CampaignPage:
    query = (
        select(Campaign, Offer.external_id)
        .join(Offer, Offer.id == Campaign.offer_id)
        .where(Campaign.merchant_id == merchant.id)
    )
    if state is not None:
        query = query.where(Campaign.state == state)
    rows = (await session.execute(_page(query, Campaign, limit, cursor))).all()
    items = [campaign_read(campaign, offer_id) for campaign, offer_id in rows[:limit]]
    last = rows[limit - 1][0] if len(rows) > limit else None
    return CampaignPage(
        items=items, next_cursor=None if last is None else encode_cursor(last.created_at, last.id)
    )


async def start_due(session: AsyncSession, now: datetime, batch: int = 20) -> int:
    """Start the campaigns whose offer's ``valid_from`` has come (found through their partial
    index, claimed with ``FOR UPDATE SKIP LOCKED`` so replicas never start one twice)."""
    due = (
        select(Campaign, Offer)
        .join(Offer, Offer.id == Campaign.offer_id)
        .where(Campaign.state == "scheduled", Campaign.starts_at <= now)
        .order_by(Campaign.starts_at)
        .limit(batch)
        .with_for_update(skip_locked=True, of=Campaign)
    )
    rows = (await session.execute(due)).all()
    for campaign, offer in rows:
        await start_campaign(session, offer, campaign, now)
    return len(rows)


async def add_progress(session: AsyncSession, progress: CampaignProgress, now: datetime) -> None:
    """Add what passes did for a part (or later, for deferred sends) to the campaign.

    A part reported again is ignored. The campaign is done once every part is reported and
    nothing is held for quiet hours any more.
    """
    query = select(Campaign).where(
        Campaign.id == progress.campaign_id, Campaign.merchant_id == progress.merchant_id
    )
    campaign = await session.scalar(query.with_for_update())
    if campaign is None:  # its merchant was deleted meanwhile: nothing to add it to
        log.warning(
            "progress of an unknown campaign", extra={"campaign": str(progress.campaign_id)}
        )
        return
    if progress.part is not None:
        if progress.part in campaign.parts_done:
            return
        campaign.parts_done = [*campaign.parts_done, progress.part]
    if progress.parts is not None:
        campaign.parts = max(campaign.parts or 0, progress.parts)
    campaign.targeted += progress.targeted
    campaign.updated += progress.updated
    campaign.notified += progress.notified
    campaign.deferred += progress.deferred
    campaign.failed += progress.failed
    campaign.silent = _added(campaign.silent, progress.silent)
    campaign.skipped = _added(campaign.skipped, progress.skipped)
    after_commit(session, lambda: _count(progress))
    complete = campaign.parts is not None and len(campaign.parts_done) >= campaign.parts
    if campaign.state == "running" and complete and campaign.deferred <= 0:
        campaign.state, campaign.finished_at = "done", now


def _count(progress: CampaignProgress) -> None:
    """The progress in ``passpost_campaign_cards_total`` (what on-call watches of campaigns;
    per campaign it is ``GET /v1/campaigns/{id}``)."""
    counts = {
        "targeted": progress.targeted,
        "updated": progress.updated,
        "notified": progress.notified,
        "silent": sum(progress.silent.values()),
        "skipped": sum(progress.skipped.values()),
        "failed": progress.failed,
    }
    for outcome, count in counts.items():
        if count > 0:
            metrics.CAMPAIGN_CARDS.labels(outcome).inc(count)
    if progress.deferred > 0:  # held; their later sends count as notified or skipped
        metrics.CAMPAIGN_CARDS.labels("deferred").inc(progress.deferred)


def _added(counts: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    """Counts by reason added up; a reason back at zero (a card skipped while on no device
    whose offer showed once it landed on one) is left out."""
    added = {key: counts.get(key, 0) + more.get(key, 0) for key in counts.keys() | more.keys()}
    return {key: value for key, value in added.items() if value}


# consent and stats ----------------------------------------------------------------------


def set_consent(
    session: AsyncSession, merchant: Merchant, customer_id: str, consent: bool, now: datetime
) -> ConsentRead:
    """The shop's record of the customer's consent, for passes (which owns consent)."""
    message = MarketingConsentSet(
        merchant_id=merchant.id, customer_id=customer_id, consent=consent, at=now
    )
    publish(session, message, key=customer_id)
    return ConsentRead(customer_id=customer_id, consent=consent, at=now)


async def add_counts(session: AsyncSession, counted: ChannelCounted) -> None:
    """Add a ``channel.counted`` message's deltas to the day's counters (one upsert)."""
    if not counted.counts:
        return
    insert = dialect_insert(session)(ChannelCount)
    upsert = insert.on_conflict_do_update(
        index_elements=[ChannelCount.merchant_id, ChannelCount.day, ChannelCount.key],
        set_={"count": ChannelCount.count + insert.excluded["count"]},
    )
    rows = [
        {"merchant_id": counted.merchant_id, "day": counted.day, "key": key, "count": count}
        for key, count in counted.counts.items()
    ]
    await session.execute(upsert, rows)


async def stats(session: AsyncSession, merchant: Merchant, first: date, last: date) -> Stats:
    """The channel's counters from ``first`` to ``last`` (UTC days, both included)."""
    query = (
        select(ChannelCount.day, ChannelCount.key, func.sum(ChannelCount.count))
        .where(
            ChannelCount.merchant_id == merchant.id,
            ChannelCount.day >= first,
            ChannelCount.day <= last,
        )
        .group_by(ChannelCount.day, ChannelCount.key)
        .order_by(ChannelCount.day, ChannelCount.key)
    )
    groups: dict[str, dict[str, int]] = {
        group: dict.fromkeys(names, 0) for group, names in STATS_GROUPS.items()
    }
    days: dict[date, dict[str, int]] = {}
    for day, key, count in await session.execute(query):
        group, _, name = key.partition(".")
        into = groups.setdefault(group, {})
        into[name] = into.get(name, 0) + int(count)
        days.setdefault(day, {})[key] = int(count)
    return Stats.model_validate(
        {
            "from": first,
            "to": last,
            **{group: groups.get(group, {}) for group in STATS_GROUPS},
            "nps": await nps(session, merchant, first, last),
            "days": [{"day": day, "counts": counts} for day, counts in days.items()],
        }
    )

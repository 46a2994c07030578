"""The offers API for e-shop backends: offers, their campaigns, redemptions, consent, stats.

Authenticated like the orders API (``merchants.api``: the API key and, when the merchant
asked for it, the body's signature); another merchant's offer or campaign is a 404. Every
route reads the clock once, here, and hands ``now`` on.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from services.core.clock import clock
from services.core.db import Session
from services.core.errors import Conflict, InvalidInput, NotFound, Unauthorized
from services.core.text import IDENTIFIER_PATTERN
from services.merchants.api import CurrentMerchant
from services.offers import service
from services.offers.schemas import (
    AudienceIn,
    CampaignPage,
    CampaignRead,
    ConsentIn,
    ConsentRead,
    Cursor,
    Day,
    OfferAccepted,
    OfferIn,
    OfferPage,
    OfferRead,
    RedemptionIn,
    RedemptionRead,
    Stats,
)

router = APIRouter(prefix="/v1", tags=["offers"])

OfferId = Annotated[str, Path(min_length=1, max_length=200, pattern=IDENTIFIER_PATTERN)]
CustomerId = Annotated[str, Path(min_length=1, max_length=200, pattern=IDENTIFIER_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=100, description="Items per page.")]
PageCursor = Annotated[Cursor | None, Query(description="next_cursor of the previous page.")]
LONGEST_STATS_PERIOD = timedelta(days=366)
DEFAULT_STATS_PERIOD = timedelta(days=29)

_found = {**Unauthorized.openapi(), **NotFound.openapi()}
_changes = {**_found, **Conflict.openapi(), **InvalidInput.openapi()}


@router.post("/offers", status_code=202, response_model=OfferAccepted, responses=_changes)
async def create_offer(
    offer: OfferIn, merchant: CurrentMerchant, session: Session
) -> OfferAccepted:
    """Create an offer and the campaign that delivers it, in the background.

    The same ``id`` with the same body answers the same (``duplicate`` true); another body is
    409. A ``valid_from`` in the future schedules the campaign until then.
    """
    return await service.create_offer(session, merchant, offer, clock.now())


@router.get("/offers", response_model=OfferPage, responses=Unauthorized.openapi())
async def list_offers(
    merchant: CurrentMerchant, session: Session, limit: Limit = 50, cursor: PageCursor = None
) -> OfferPage:
    """The merchant's offers, newest first; follow ``next_cursor`` for more."""
    return await service.list_offers(session, merchant, clock.now(), limit, cursor)


@router.get("/offers/{offer_id}", response_model=OfferRead, responses=_found)
async def read_offer(offer_id: OfferId, merchant: CurrentMerchant, session: Session) -> OfferRead:
    return await service.get_offer(session, merchant, offer_id, clock.now())


@router.post("/offers/{offer_id}:cancel", response_model=OfferRead, responses=_found)
async def cancel_offer(offer_id: OfferId, merchant: CurrentMerchant, session: Session) -> OfferRead:
    """The offer leaves every card, without a notification; its campaign is cancelled."""
    return await service.cancel_offer(session, merchant, offer_id, clock.now())


@router.post(
    "/offers/{offer_id}/redemptions",
    status_code=201,
    response_model=RedemptionRead,
    responses=_changes,
)
async def redeem_offer(
    offer_id: OfferId, redemption: RedemptionIn, merchant: CurrentMerchant, session: Session
) -> RedemptionRead:
    """The customer used the coupon: it leaves their card (quietly); a second time is 409."""
    return await service.redeem(session, merchant, offer_id, redemption, clock.now())


@router.get("/campaigns", response_model=CampaignPage, responses=Unauthorized.openapi())
async def list_campaigns(
    merchant: CurrentMerchant,
    session: Session,
    limit: Limit = 50,
    cursor: PageCursor = None,
    state: Literal["scheduled", "running", "done", "cancelled"] | None = None,
) -> CampaignPage:
    """The merchant's campaigns, newest first (of one state, if asked)."""
    return await service.list_campaigns(session, merchant, limit, cursor, state)


@router.get("/campaigns/{campaign_id}", response_model=CampaignRead, responses=_found)
async def read_campaign(
    campaign_id: uuid.UUID, merchant: CurrentMerchant, session: Session
) -> CampaignRead:
    """How far the campaign got: targeted, updated, notified, silent, deferred, skipped."""
    return await service.get_campaign(session, merchant, campaign_id)


@router.post(
    "/campaigns/{campaign_id}/audience",
    status_code=202,
    response_model=CampaignRead,
    responses=_changes,
)
async def add_audience(
    campaign_id: uuid.UUID, audience: AudienceIn, merchant: CurrentMerchant, session: Session
) -> CampaignRead:
    """Up to 10,000 more customers for a campaign that targets customer ids (safe to repeat:
    a card shows an offer once)."""
    return await service.add_audience(
        session, merchant, campaign_id, audience.customer_ids, clock.now()
    )


@router.post(
    "/customers/{customer_id}/marketing",
    status_code=202,
    response_model=ConsentRead,
    responses=_changes,
)
async def set_marketing_consent(
    customer_id: CustomerId, consent: ConsentIn, merchant: CurrentMerchant, session: Session
) -> ConsentRead:
    """The shop's record of the customer's consent to offers on the card (the latest wins,
    over the customer's own choice on the card's page too)."""
    return service.set_consent(session, merchant, customer_id, consent.consent, clock.now())


@router.get("/stats", response_model=Stats, responses=_changes)
async def read_stats(
    merchant: CurrentMerchant,
    session: Session,
    first: Annotated[Day | None, Query(alias="from", description="First UTC day.")] = None,
    last: Annotated[Day | None, Query(alias="to", description="Last UTC day (included).")] = None,
) -> Stats:
    """The channel over a period (default: the last 30 days): cards issued, on Apple devices,
    saved on Google, removed, notifications by kind and suppressed by reason, and the NPS of
    the ratings given in it."""
    last = last or clock.now().date()
    first = first or last - DEFAULT_STATS_PERIOD
    if first > last:
        raise service.invalid(("query", "from"), "must not come after to")
    if last - first > LONGEST_STATS_PERIOD:
        raise service.invalid(("query", "from"), "at most 366 days from to")
    return await service.stats(session, merchant, first, last)

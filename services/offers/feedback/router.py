"""The shop's feedback API: a customer's rating of an order, and the ratings listed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from services.core.clock import clock
from services.core.db import Session
from services.core.errors import InvalidInput, Unauthorized
from services.merchants.api import CurrentMerchant
from services.offers import service as offers
from services.offers.feedback import service
from services.offers.feedback.schemas import FeedbackIn, FeedbackPage, FeedbackRecorded, ScoreQuery
from services.offers.router import CustomerId, Limit, PageCursor
from services.offers.schemas import Day

router = APIRouter(prefix="/v1", tags=["feedback"])


@router.post(
    "/customers/{customer_id}/feedback",
    status_code=201,
    response_model=FeedbackRecorded,
    responses={
        200: {"model": FeedbackRecorded, "description": "The order's earlier rating, replaced"},
        **Unauthorized.openapi(),
        **InvalidInput.openapi(),
    },
)
async def rate_order(
    customer_id: CustomerId,
    rating: FeedbackIn,
    merchant: CurrentMerchant,
    session: Session,
    response: Response,
) -> FeedbackRecorded:
    """The customer's rating of an order (0-10, with their words if any). A later rating of
    the same order replaces it (200, ``replaced`` true): the NPS counts each order once. The
    card's back then shows the follow-up: the review invitation for 9-10, "talk to us" for 0-6.
    """
    recorded = await service.record(session, merchant, customer_id, rating, clock.now())
    if recorded.replaced:
        response.status_code = 200
    return recorded


@router.get(
    "/feedback",
    response_model=FeedbackPage,
    responses={**Unauthorized.openapi(), **InvalidInput.openapi()},
)
async def list_feedback(
    merchant: CurrentMerchant,
    session: Session,
    limit: Limit = 50,
    cursor: PageCursor = None,
    first: Annotated[Day | None, Query(alias="from", description="First UTC day.")] = None,
    last: Annotated[Day | None, Query(alias="to", description="Last UTC day (included).")] = None,
    min_score: Annotated[ScoreQuery | None, Query()] = None,
    max_score: Annotated[ScoreQuery | None, Query()] = None,
) -> FeedbackPage:
    """The ratings, newest first (by when each was given), of a period and a range of scores
    if asked (``max_score=6``: the detractors); follow ``next_cursor`` for more."""
    if first is not None and last is not None and first > last:
        raise offers.invalid(("query", "from"), "must not come after to")
    if min_score is not None and max_score is not None and min_score > max_score:
        raise offers.invalid(("query", "min_score"), "must not be above max_score")
    return await service.list_feedback(
        session,
        merchant,
        limit=limit,
        cursor=cursor,
        first=first,
        last=last,
        min_score=min_score,
        max_score=max_score,
    )

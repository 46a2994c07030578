"""Ratings kept one per (merchant, customer, order), whichever path they came by.

A second rating of the same order replaces the first (a shop resends, a customer changes their
mind): the latest ``rated_at`` holds, so a late message of an older rating changes nothing, and
the NPS counts each order once. The shop's API answers 201 for a first rating and 200 with
``replaced`` for a later one, never 409: resending is what a shop's retry does.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from sqlalchemy import ColumnElement, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import (
    DETRACTORS_UP_TO,
    PROMOTERS_FROM,
    FeedbackGiven,
    FeedbackRecorded,
)
from services.core.db import dialect_insert
from services.core.queue import publish
from services.merchants.models import Merchant
from services.offers.feedback.models import Feedback
from services.offers.feedback.schemas import (
    FeedbackIn,
    FeedbackPage,
    FeedbackRead,
    Nps,
)
from services.offers.feedback.schemas import FeedbackRecorded as FeedbackAnswer
from services.offers.schemas import decode_cursor, encode_cursor

Source = Literal["api", "card"]


async def _keep(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    customer_id: str,
    given: FeedbackIn,
    at: datetime,
    source: Source,
) -> bool | None:
    """Store the rating unless a later one holds: True a first one, False one replaced,
    None when the stored one is later (one statement, so concurrent ratings cannot race)."""
    new_id = uuid.uuid4()
    insert = dialect_insert(session)(Feedback).values(
        id=new_id,
        merchant_id=merchant_id,
        customer_id=customer_id,
        order_id=given.order_id,
        score=given.score,
        text=given.text,
        source=source,
        rated_at=at,
        created_at=at,
    )
    excluded = insert.excluded
    upsert = insert.on_conflict_do_update(
        index_elements=[Feedback.merchant_id, Feedback.customer_id, Feedback.order_id],
        set_={
            "score": excluded.score,
            "text": excluded.text,
            "source": excluded.source,
            "rated_at": excluded.rated_at,
        },
        where=Feedback.rated_at <= excluded.rated_at,
    ).returning(Feedback.id)
    kept = await session.scalar(upsert)
    return None if kept is None else kept == new_id


async def record(
    session: AsyncSession, merchant: Merchant, customer_id: str, given: FeedbackIn, now: datetime
) -> FeedbackAnswer:
    """The shop's rating (``POST /v1/customers/{id}/feedback``); passes hears of it, so the
    card's back shows the follow-up the score calls for."""
    first = await _keep(session, merchant.id, customer_id, given, now, "api")
    if first is not None:
        message = FeedbackRecorded(
            merchant_id=merchant.id,
            customer_id=customer_id,
            order_id=given.order_id,
            score=given.score,
            at=now,
        )
        publish(session, message, key=customer_id)
    row = await session.scalar(
        select(Feedback).where(
            Feedback.merchant_id == merchant.id,
            Feedback.customer_id == customer_id,
            Feedback.order_id == given.order_id,
        )
    )
    assert row is not None, "kept above, in this transaction"
    return FeedbackAnswer(**_read(row).model_dump(), replaced=first is not True)


async def feedback_given(session: AsyncSession, given: FeedbackGiven) -> None:
    """A rating from the card's page (``feedback.given``), kept like the shop's."""
    rating = FeedbackIn(order_id=given.order_id, score=given.score, text=given.text)
    await _keep(session, given.merchant_id, given.customer_id, rating, given.at, "card")


def _read(row: Feedback) -> FeedbackRead:
    return FeedbackRead(
        customer_id=row.customer_id,
        order_id=row.order_id,
        score=row.score,
        text=row.text,
        source="card" if row.source == "card" else "api",
        rated_at=row.rated_at,
        created_at=row.created_at,
    )


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


async def list_feedback(
    session: AsyncSession,
    merchant: Merchant,
    *,
    limit: int,
    cursor: str | None,
    first: date | None,
    last: date | None,
    min_score: int | None,
    max_score: int | None,
) -> FeedbackPage:
    """The merchant's ratings, newest first (keyset: rated_at, id), of a period (UTC days,
    both included) and a range of scores, when asked."""
    query = select(Feedback).where(Feedback.merchant_id == merchant.id)
    if first is not None:
        query = query.where(Feedback.rated_at >= _start_of(first))
    if last is not None:
        query = query.where(Feedback.rated_at < _start_of(last + timedelta(days=1)))
    if min_score is not None:
        query = query.where(Feedback.score >= min_score)
    if max_score is not None:
        query = query.where(Feedback.score <= max_score)
    if cursor is not None:
        rated_at, row_id = decode_cursor(cursor)
        query = query.where(
            or_(
                Feedback.rated_at < rated_at,
                (Feedback.rated_at == rated_at) & (Feedback.id < row_id),
            )
        )
    query = query.order_by(Feedback.rated_at.desc(), Feedback.id.desc()).limit(limit + 1)
    rows = list((await session.scalars(query)).all())
    last_row = rows[limit - 1] if len(rows) > limit else None
    return FeedbackPage(
        items=[_read(row) for row in rows[:limit]],
        next_cursor=None if last_row is None else encode_cursor(last_row.rated_at, last_row.id),
    )


async def nps(session: AsyncSession, merchant: Merchant, first: date, last: date) -> Nps:
    """NPS over the ratings given from ``first`` to ``last`` (UTC days, both included)."""

    def counted(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    query = select(
        func.count(Feedback.id),
        counted(Feedback.score >= PROMOTERS_FROM),
        counted(Feedback.score <= DETRACTORS_UP_TO),
    ).where(
        Feedback.merchant_id == merchant.id,
        Feedback.rated_at >= _start_of(first),
        Feedback.rated_at < _start_of(last + timedelta(days=1)),
    )
    responses, promoters, detractors = (await session.execute(query)).one()
    responses, promoters, detractors = int(responses), int(promoters), int(detractors)
    return Nps(
        responses=responses,
        promoters=promoters,
        passives=responses - promoters - detractors,
        detractors=detractors,
        score=round((promoters - detractors) * 100 / responses, 1) if responses else None,
    )

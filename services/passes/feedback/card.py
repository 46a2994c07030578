"""A rating on the card: which order can be rated, and the rating the card's back follows up.

The card keeps its latest rating (``card_view.RATED``); the latest ``at`` wins, whichever path
it came by, as in the offers service. A rating gives the card a new version without a
notification: the follow-up link (``card_view.feedback_link``) is on the back, and no field
with a ``changeMessage`` changes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import FeedbackRecorded
from services.passes.card_view import RATED, Order
from services.passes.changes import record_change
from services.passes.issuing import lock_cards
from services.passes.journeys.engine import cancel
from services.passes.models import Card

RATEABLE = frozenset({"delivered", "picked_up"})
"""Statuses of an order the customer has in hand (never a cancelled, returned or refunded one)."""


def rateable_order(card: Card) -> Order | None:
    """The card's most recently placed order the customer has received."""
    orders = [o for o in (card.content.get("orders") or {}).values() if o["status"] in RATEABLE]
    if not orders:
        return None
    latest: Order = max(orders, key=lambda o: (o.get("placed_at", ""), o.get("id", "")))
    return latest


def current_score(card: Card, order_id: str) -> int | None:
    """The score the card holds for ``order_id``, if that is its latest rating."""
    rated = card.content.get(RATED) or {}
    return int(rated["score"]) if rated.get("order_id") == order_id else None


async def rate(session: AsyncSession, card: Card, order_id: str, score: int, at: datetime) -> None:
    """The card (locked) follows up this rating, unless it holds a later one; a feedback
    request for the order not asked yet is not asked (the customer has answered)."""
    await cancel(session, card, "feedback", "rated", key=order_id)
    rated = card.content.get(RATED)
    if rated is not None and datetime.fromisoformat(rated["at"]) > at:
        return
    wanted = {"order_id": order_id, "score": score, "at": at.isoformat()}
    if rated == wanted:
        return  # the same rating again (a redelivered message)
    card.content = {**card.content, RATED: wanted}
    await record_change(session, card)


async def feedback_recorded(session: AsyncSession, recorded: FeedbackRecorded) -> None:
    """The shop's rating through the API: the card shows its follow-up too (no card yet:
    nothing to show it on)."""
    customer = (recorded.merchant_id, recorded.customer_id)
    card = (await lock_cards(session, [customer])).card_of(customer)
    if card is not None:
        await rate(session, card, recorded.order_id, recorded.score, recorded.at)

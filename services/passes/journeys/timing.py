"""When a journey's step after an order is due."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.merchants.journeys import JourneySettings


def due_after(
    at: datetime, delay_minutes: int, settings: JourneySettings, now: datetime
) -> datetime | None:
    """``delay_minutes`` after ``at``, or now if that has passed; None when it passed so long
    ago that the message would have left the card again (an old order sent late, a shop's
    history loaded at once): asking then would only surprise."""
    due = at + timedelta(minutes=delay_minutes)
    if due + timedelta(days=settings.valid_days) < now:
        return None
    return max(due, now)

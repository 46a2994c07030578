"""``trial_ending``: a reminder the merchant's delay (default 3 days) before a trial's
``ends_at``, on the card until the trial ends. A later ``trial.ending`` with another end
replaces a reminder not sent yet; the same end again changes nothing."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.shop_events import TrialEndingEvent
from services.merchants.journeys import JourneySettings, journey_settings
from services.merchants.marketing import marketing_settings
from services.passes.journeys.engine import Composed, Journey, cancel, schedule
from services.passes.journeys.models import JourneyStep
from services.passes.marketing.policy import zone_of
from services.passes.models import Card

DATE_FORMATS = {"en": "%Y-%m-%d"}
"""How a day is written in a message; every other language we ship writes 31.12.2026."""


async def ending(session: AsyncSession, card: Card, event: TrialEndingEvent, now: datetime) -> bool:
    ends_at = event.data.ends_at
    if ends_at <= now:
        return False
    settings = await journey_settings(session, card.merchant_id, "trial_ending")
    key = f"trial {ends_at.isoformat()}"
    await cancel(session, card, "trial_ending", "replaced", except_key=key)
    due = max(ends_at - timedelta(minutes=settings.delay_minutes), now)
    data = {"ends_at": ends_at.isoformat(), "url": str(event.data.url) if event.data.url else None}
    await schedule(session, card, "trial_ending", key, due_at=due, data=data, settings=settings)
    return True


async def compose(
    session: AsyncSession, card: Card, step: JourneyStep, settings: JourneySettings, now: datetime
) -> Composed | str:
    del settings
    ends_at = datetime.fromisoformat(step.data["ends_at"])
    if ends_at <= now:
        return "ended"
    zone = zone_of(card.time_zone, (await marketing_settings(session, card.merchant_id)).time_zone)
    day = ends_at.astimezone(zone).strftime(DATE_FORMATS.get(card.locale, "%d.%m.%Y"))
    return Composed(values={"ends": day}, url=step.data.get("url"), valid_until=ends_at)


JOURNEY = Journey("trial_ending", compose)

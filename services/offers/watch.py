"""``passpost campaigns watch ID``: a campaign's progress as a live bar, read from the database.

The bar counts audience parts reported of all there are (unknown while a segment is still
being paged: the bar pulses); the line beside it says what happened to the cards so far.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from services.core.db import create_engine, create_sessionmaker
from services.core.errors import NotFound
from services.core.settings import Settings
from services.offers.models import Campaign, Offer
from services.offers.schemas import CampaignRead
from services.offers.service import campaign_read

FINISHED = ("done", "cancelled")


def summary(campaign: CampaignRead) -> str:
    """One line of what the campaign did to the cards so far."""
    silent = sum(campaign.silent.values())
    skipped = sum(campaign.skipped.values())
    return (
        f"{campaign.state}: {campaign.targeted} targeted, {campaign.updated} updated, "
        f"{campaign.notified} notified, {silent} silent, {campaign.deferred} deferred, "
        f"{skipped} skipped, {campaign.failed} failed"
    )


async def watch(
    settings: Settings, campaign_id: uuid.UUID, interval: float, console: Console | None = None
) -> dict[str, Any]:
    """Show the bar until the campaign is done or cancelled; its last state, as the API has it."""
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine, settings)
    columns = (
        TextColumn("campaign"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total} parts"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    try:
        with Progress(*columns, console=console or Console(stderr=True)) as progress:
            task = progress.add_task("", total=None)
            while True:
                async with sessionmaker() as session:
                    campaign = await session.get(Campaign, campaign_id)
                    if campaign is None:
                        raise NotFound(f"no campaign {campaign_id}")
                    offer = await session.get_one(Offer, campaign.offer_id)
                    read = campaign_read(campaign, offer.external_id)
                progress.update(
                    task, total=read.parts, completed=read.parts_done, description=summary(read)
                )
                if read.state in FINISHED:
                    return read.model_dump(mode="json")
                await asyncio.sleep(interval)
    finally:
        await engine.dispose()

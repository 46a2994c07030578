"""The shop staff's commands: offers create and list, campaigns list and watch, stats."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from services.contracts.messages import CampaignProgress
from services.core.clock import clock
from services.core.db import create_engine, create_sessionmaker
from services.core.settings import Settings
from services.offers.models import Campaign
from services.offers.service import add_progress
from services.offers.watch import watch
from tests.offers.conftest import NOW


@pytest.fixture
def shop_cli(cli: Any) -> Any:
    """The command, with the merchant ``shop`` made."""
    assert cli("merchants", "create", "--slug", "shop", "--name", "Shop").exit_code == 0
    return cli


OFFER = (
    "--merchant", "shop", "--title", "10 % off tea", "--text", "All teas this week.",
    "--valid-until", "2026-12-31T23:00:00Z", "--coupon-code", "TEA10",
)  # fmt: skip


def output(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_offers_are_created_and_listed_from_the_command_line(shop_cli: Any, tmp_path: Path) -> None:
    ids = tmp_path / "customers.txt"
    ids.write_text("c-1\nc-2\n\nc-3\n")
    made = output(shop_cli("offers", "create", *OFFER, "--id", "tea", "--customers-file", str(ids)))
    assert (made["id"], made["duplicate"], made["target"]["customers"]) == ("tea", False, 3)
    again = output(
        shop_cli("offers", "create", *OFFER, "--id", "tea", "--customers-file", str(ids))
    )
    assert again["duplicate"] is True

    clock.advance(timedelta(minutes=1))
    segment = '{"min_orders": 2, "locales": ["sk"]}'
    texts = '{"sk": {"title": "10 % na čaj", "text": "Všetky čaje."}}'
    by_segment = output(
        shop_cli("offers", "create", *OFFER, "--id", "vip", "--segment", segment, "--texts", texts)
    )
    assert by_segment["target"]["segment"] == {"min_orders": 2, "locales": ["sk"]}
    assert by_segment["texts"] == {"sk": {"title": "10 % na čaj", "text": "Všetky čaje."}}

    assert [o["id"] for o in output(shop_cli("offers", "list", "--merchant", "shop"))] == [
        "vip",
        "tea",
    ]
    campaigns = output(shop_cli("campaigns", "list", "--merchant", "shop", "--state", "running"))
    assert [c["offer_id"] for c in campaigns] == ["vip", "tea"]
    stats = output(shop_cli("stats", "--merchant", "shop", "--from", "2026-11-01"))
    assert (stats["from"], stats["to"], stats["cards"]) == (
        "2026-11-01",
        "2026-12-01",
        {"issued": 0},
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--id", "x"), "give --customer/--customers-file or --segment"),
        (("--id", "x", "--customer", "c-1", "--segment", "{}"), "one of them"),
        (("--id", "x", "--segment", "[1]"), "a JSON object"),
        (("--id", "x", "--customer", "c-1", "--texts", "{"), "--texts is not JSON"),
        (("--id", "x", "--segment", '{"vip": true}'), "target.segment.vip"),
        (("--id", "x", "--customer", "c-1", "--coupon-code", "X" * 65), "coupon_code"),
    ],
)
def test_bad_offers_are_clean_errors(shop_cli: Any, args: tuple[str, ...], says: str) -> None:
    result = shop_cli("offers", "create", *OFFER, *args)
    assert result.exit_code == 2
    assert says in result.output
    assert "Traceback" not in result.output


async def report_done(settings: Settings, campaign_id: uuid.UUID) -> None:
    """What passes reports of the campaign's one part (applied as the offers consumer does)."""
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine, settings)() as session, session.begin():
            campaign = await session.get_one(Campaign, campaign_id)
            reported = CampaignProgress(
                campaign_id=campaign_id,
                merchant_id=campaign.merchant_id,
                part=1,
                parts=1,
                targeted=1,
                updated=1,
                notified=1,
            )
            await add_progress(session, reported, NOW)
    finally:
        await engine.dispose()


def test_watch_shows_the_bar_until_the_campaign_is_done(shop_cli: Any, settings: Settings) -> None:
    made = output(shop_cli("offers", "create", *OFFER, "--id", "tea", "--customer", "c-1"))
    campaign_id = uuid.UUID(made["campaign_id"])
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=160)

    async def watched() -> dict[str, Any]:
        watching = asyncio.create_task(watch(settings, campaign_id, 0.05, console))
        await asyncio.sleep(0.2)  # the bar is drawn while the campaign runs (nothing waits)
        assert not watching.done()
        await report_done(settings, campaign_id)
        return await asyncio.wait_for(watching, 10)

    final = asyncio.run(watched())
    assert (final["state"], final["notified"]) == ("done", 1)
    assert "1/1 parts" in screen.getvalue()
    assert "done: 1 targeted, 1 updated, 1 notified" in screen.getvalue()
    finished = shop_cli("campaigns", "watch", made["campaign_id"], "--interval", "0.1")
    assert output(finished)["state"] == "done"
    assert shop_cli("campaigns", "watch", "nope").exit_code == 2
    assert "no campaign" in shop_cli("campaigns", "watch", str(uuid.uuid4())).output

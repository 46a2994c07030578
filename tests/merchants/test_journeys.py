"""A merchant's journeys as data: defaults, changes through the admin API and the CLI, only
differences stored, bad values named."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.settings import Settings
from services.merchants import journeys
from services.merchants.models import Merchant
from tests.factories import create_merchant

ADMIN = "/admin/v1/merchants"


def admin(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.ensure_admin_token()}"}


async def test_every_journey_has_defaults_and_a_patch_changes_one(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    shop = await create_merchant(session, settings)
    listed = await client.get(f"{ADMIN}/shop/journeys", headers=admin(settings))
    assert listed.status_code == 200, listed.text
    assert [j["journey"] for j in listed.json()] == list(journeys.JOURNEYS)
    cart = {j["journey"]: j["settings"] for j in listed.json()}["cart_abandoned"]
    assert (cart["enabled"], cart["delay_minutes"], cart["offer"]) == (True, 60, None)

    url = f"{ADMIN}/shop/journeys/cart_abandoned"
    change = {
        "delay_minutes": 30,
        "offer": {"code": "FREESHIP"},
        "texts": {"sk-SK": {"title": "Košík", "text": "Čaká na vás."}},
    }
    patched = await client.patch(url, json=change, headers=admin(settings))
    assert patched.status_code == 200, patched.text
    assert patched.json()["settings"]["offer"] == {"code": "FREESHIP", "valid_days": 7}
    assert patched.json()["settings"]["texts"] == {"sk": {"title": "Košík", "text": "Čaká na vás."}}
    reset = await client.patch(url, json={"delay_minutes": None}, headers=admin(settings))
    assert reset.json()["settings"]["delay_minutes"] == 60
    stored = await session.scalar(select(Merchant.journeys).where(Merchant.id == shop.merchant.id))
    await session.commit()  # a session of the app's kind holds SQLite's write lock till then
    assert set(stored or {}) == {"cart_abandoned"}, "only what differs is stored"
    assert "delay_minutes" not in (stored or {})["cart_abandoned"]

    bad = await client.patch(url, json={"delay_minutes": -1}, headers=admin(settings))
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["path"] == "body.delay_minutes"
    unknown = await client.get(f"{ADMIN}/shop/journeys/spam", headers=admin(settings))
    assert unknown.status_code == 422
    assert (
        await client.get(f"{ADMIN}/nobody/journeys", headers=admin(settings))
    ).status_code == 404
    assert (await client.get(f"{ADMIN}/shop/journeys")).status_code == 401


def test_journeys_are_set_and_listed_from_the_command_line(cli: Any) -> None:
    assert cli("merchants", "create", "--slug", "shop", "--name", "Shop").exit_code == 0
    changed = cli(
        "journeys", "set", "--merchant", "shop", "--journey", "feedback", "--delay-days", "5",
        "--text", "de=Wie war es?|Sagen Sie es uns.", "--url", "https://shop.example.com/survey",
    )  # fmt: skip
    assert changed.exit_code == 0, changed.output
    shown = json.loads(changed.stdout)
    assert (shown["delay_minutes"], shown["url"]) == (
        5 * 24 * 60,
        "https://shop.example.com/survey",
    )
    off = cli("journeys", "set", "--merchant", "shop", "--journey", "welcome", "--off")
    assert off.exit_code == 0, off.output
    listed = json.loads(cli("journeys", "list", "--merchant", "shop").stdout)["journeys"]
    assert listed["welcome"]["enabled"] is False
    assert listed["feedback"]["texts"] == {
        "de": {"title": "Wie war es?", "text": "Sagen Sie es uns."}
    }
    assert listed["cart_abandoned"]["delay_minutes"] == 60

    for bad, named in (
        (["--journey", "spam"], "--journey"),
        (["--journey", "refill", "--delay-days", "1", "--delay-hours", "2"], "delay"),
        (["--journey", "refill", "--text", "de=no bar"], "--text"),
        (["--journey", "refill", "--valid-days", "0"], "valid_days"),
    ):
        refused = cli("journeys", "set", "--merchant", "shop", *bad)
        assert refused.exit_code == 2, refused.output
        assert named in refused.stderr
        assert "Traceback" not in refused.output

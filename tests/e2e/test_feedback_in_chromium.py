"""The feedback form in a real browser: headless Chromium opens the card's landing page after
delivery, picks a score, writes a comment and sends the form (a POST, no JavaScript of ours),
and the thank-you page invites a 9 to review the order. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import base64

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.settings import Settings
from services.offers.feedback.models import Feedback
from services.passes import designs
from services.passes.schemas import Branding
from tests.e2e.test_landing_in_chromium import _fresh_artifact, chromium, served
from tests.e2e.test_marketing_page_in_chromium import devtools
from tests.factories import create_merchant, order_event
from tests.waiting import eventually, queue_drained

__all__ = ["chromium", "served"]


@pytest.mark.parametrize("settings", ["db"], indirect=True)
async def test_rating_a_delivered_order_in_chromium(
    chromium: str,
    served: Settings,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    shop = await create_merchant(session, served)
    design = await designs.get_design(session, shop.merchant)
    review = Branding(review_url_template="https://reviews.example.com/r/{order_id}")
    await designs.update_branding(session, design, review)
    await session.commit()
    async with httpx.AsyncClient(base_url=served.base_url()) as client:
        for status, at in (("confirmed", "2026-11-23T10:00:00Z"), ("delivered", None)):
            answer = await client.post(
                "/v1/orders/events",
                json=order_event(status, at=at or "2026-11-24T10:00:00Z"),
                headers={"Authorization": f"Bearer {shop.api_key}"},
            )
            assert answer.status_code == 202, answer.text
    landing = answer.json()["card"]["landing_url"]
    await eventually(lambda: queue_drained(sessionmaker))

    async with devtools(chromium) as page:
        await page.call("Page.navigate", url=landing)
        await page.until("document.getElementById('feedback') !== null")
        await page.evaluate("document.getElementById('score-9').click()")
        await page.evaluate("document.getElementById('feedback-text').value = 'Rýchle, vďaka'")
        shot = await page.call("Page.captureScreenshot", format="png")
        _fresh_artifact("feedback-form.png").write_bytes(base64.b64decode(shot["data"]))
        await page.evaluate("document.getElementById('send-feedback').click()")
        await page.until("document.getElementById('done') !== null")
        assert await page.evaluate("document.getElementById('done').textContent") == (
            "Ďakujeme za vaše hodnotenie."
        )
        assert await page.evaluate("document.getElementById('review').href") == (
            "https://reviews.example.com/r/A-1001"
        )
        shot = await page.call("Page.captureScreenshot", format="png")
        artifact = _fresh_artifact("feedback-thanks.png")
        artifact.write_bytes(base64.b64decode(shot["data"]))
        assert artifact.read_bytes().startswith(b"\x89PNG")

    async def kept() -> bool:
        async with sessionmaker() as check:
            return (await check.scalars(select(Feedback))).first() is not None

    await eventually(kept)
    async with sessionmaker() as check:
        [rating] = (await check.scalars(select(Feedback))).all()
    assert (rating.order_id, rating.score, rating.text, rating.source) == (
        "A-1001",
        9,
        "Rýchle, vďaka",
        "card",
    )

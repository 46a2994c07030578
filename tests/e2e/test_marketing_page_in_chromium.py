""" "No offers, thanks" in a real browser: headless Chromium opens the card's page, which
changes nothing, then presses the confirm button (a POST), driven over the DevTools protocol.
The screenshots are kept in ``test-artifacts/`` like the landing page's."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.asyncio.client import ClientConnection, connect

from services.contracts.cards import card_links
from services.core.settings import Settings
from services.passes.marketing.models import MarketingConsent
from tests.e2e.test_landing_in_chromium import (
    ARTIFACTS,
    CHROMIUM_FLAGS,
    _free_port,
    _fresh_artifact,
    chromium,
    served,
)
from tests.factories import create_card, create_merchant

__all__ = ["chromium", "served"]


class DevTools:
    """One page of a Chromium driven over the DevTools protocol (commands, one at a time)."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        await self._socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            answer = json.loads(await self._socket.recv())
            if answer.get("id") == number:
                result: dict[str, Any] = answer.get("result", {})
                return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def until(self, expression: str) -> None:
        """Poll the page until ``expression`` is true (a navigation finished)."""
        async with asyncio.timeout(20):
            while not await self.evaluate(expression):  # noqa: ASYNC110  (the page's state)
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def devtools(chromium: str) -> AsyncIterator[DevTools]:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        chromium,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={ARTIFACTS / '.chromium-devtools'}",
        f"--remote-debugging-port={port}",
        "--window-size=390,844",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient() as client:
            async with asyncio.timeout(30):
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        pages = (await client.get(f"http://127.0.0.1:{port}/json/list")).json()
                        if any(p["type"] == "page" for p in pages):
                            break
                    await asyncio.sleep(0.1)
        page = next(p for p in pages if p["type"] == "page")
        async with connect(page["webSocketDebuggerUrl"], max_size=None) as socket:
            yield DevTools(socket)
    finally:
        process.terminate()
        await process.wait()


@pytest.mark.parametrize("settings", ["db"], indirect=True)  # the page uses no queue
async def test_no_offers_thanks_in_chromium(
    chromium: str,
    served: Settings,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    shop = await create_merchant(session, served)
    card = await create_card(session, shop, locale="de")
    landing = card_links(card, served.base_url()).landing_url
    async with devtools(chromium) as page:
        await page.call("Page.navigate", url=landing)
        await page.until("document.getElementById('no-offers') !== null")
        href = await page.evaluate("document.getElementById('no-offers').href")
        assert href == f"{landing}/marketing", "the landing page carries the opt-out link"
        await page.evaluate("document.getElementById('no-offers').click()")
        await page.until("document.getElementById('opt-out') !== null")
        assert await page.evaluate("document.getElementById('opt-out').textContent") == (
            "Keine Angebote, danke"
        )
        async with sessionmaker() as check:
            assert (await check.scalars(select(MarketingConsent))).all() == [], "a GET did nothing"

        await page.evaluate("document.getElementById('opt-out').click()")
        await page.until("document.getElementById('done') !== null")
        done = await page.evaluate("document.getElementById('done').textContent")
        assert done == "Erledigt: keine Angebote mehr auf dieser Karte."
        shot = await page.call("Page.captureScreenshot", format="png")
        artifact = _fresh_artifact("marketing-opted-out.png")
        artifact.write_bytes(base64.b64decode(shot["data"]))
        assert artifact.read_bytes().startswith(b"\x89PNG")
        assert await page.evaluate("document.getElementById('opt-in') !== null")
    async with sessionmaker() as check:
        [record] = (await check.scalars(select(MarketingConsent))).all()
    assert (record.customer_id, record.consent, record.source) == (
        card.customer_id,
        False,
        "customer",
    )

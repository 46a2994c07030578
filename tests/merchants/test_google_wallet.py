"""A merchant's Google setup going bad must not stop its orders or its customers' pages."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.settings import Settings
from services.merchants import google_wallet
from tests.factories import create_merchant, order_event, post_order_event


@pytest.mark.parametrize("breakage", ["removed", "not a key"])
async def test_an_unusable_key_file_leaves_the_google_link_out_and_says_so_once(
    client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    tmp_path: Path,
    service_account_info: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    breakage: str,
) -> None:
    shop = await create_merchant(session, settings)
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(service_account_info))
    await google_wallet.configure(
        session,
        shop.merchant,
        issuer_id="3388000000012345678",
        service_account_file=key_file,
        origins=[],
    )
    await session.commit()
    working = await post_order_event(client, shop.api_key, order_event("confirmed"))
    assert working["card"]["google_save_url"] == working["card"]["landing_url"] + "/google"

    if breakage == "removed":
        key_file.unlink()
    else:
        key_file.write_text("{}")
    with caplog.at_level(logging.WARNING, logger="services.merchants.google_wallet"):
        for n, customer in enumerate(("c-new", "c-other")):
            event = order_event("confirmed", order_id=f"B-{n}", customer={"id": customer})
            answer = await post_order_event(client, shop.api_key, event)
            assert answer["card"]["google_save_url"] is None
            assert answer["card"]["apple_pass_url"]

        page = await client.get(answer["card"]["landing_url"])  # made on demand if need be
        google = await client.get(working["card"]["google_save_url"])
    assert 'class="wallet apple"' in page.text
    assert 'class="wallet google"' not in page.text
    assert google.status_code == 503  # a link handed out before the key broke
    assert google.json()["error"] == "not_configured"
    warnings = [r for r in caplog.records if "cannot be signed" in r.getMessage()]
    assert len(warnings) == 1, "once per state of the key file, not once per event"

"""One merchant's broken signing material stops only that merchant's passes."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from services.cli import ServiceName, components_of
from services.core.settings import Settings
from services.core.web import create_app
from services.passes.models import Card
from tests.factories import WS, create_card, create_merchant, pass_auth

BASE_URL = "https://cards.example.com"


def _break_certificate(settings: Settings, slug: str) -> Path:
    certificate = settings.keys_dir / f"pass.dev.passpost.{slug}.pem"
    certificate.write_text("not a certificate")
    return certificate


async def test_the_other_merchants_are_served_and_the_broken_one_answers_503(
    session: AsyncSession, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    good = await create_card(session, await create_merchant(session, settings, "shop"))
    bad = await create_card(session, await create_merchant(session, settings, "other", "Other"))
    certificate = _break_certificate(settings, "other")

    app = create_app(settings, components_of(ServiceName.all, settings))
    with caplog.at_level(logging.ERROR):
        async with app.router.lifespan_context(app):
            startup_log = caplog.text
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
                await _assert_served(client, good, bad, certificate)
                ready = await client.get("/readyz")
    assert "'other'" in startup_log
    assert "apple.certificate_path" in startup_log
    assert "'shop'" not in startup_log
    assert ready.status_code == 200
    assert ready.json()["status"] == "ok"
    assert ready.json()["signing"] == {
        "status": "degraded",
        "broken_merchants": [{"merchant": "other", "setting": "apple.certificate_path"}],
    }
    assert str(certificate) not in ready.text


async def _assert_served(
    client: httpx.AsyncClient, good: Card, bad: Card, certificate: Path
) -> None:
    for card, expected in ((good, 200), (bad, 503)):
        for response in (
            await client.get(f"/c/{card.link_token}/pass.pkpass"),
            await client.get(
                f"{WS}/passes/{card.pass_type_identifier}/{card.serial_number}",
                headers=pass_auth(card),
            ),
        ):
            assert response.status_code == expected, response.text
            if expected == 503:
                body = response.json()
                assert body["error"] == "not_configured"
                assert "merchant 'other' cannot be signed now" in body["message"]
                assert body["details"] == {"merchant": "other"}
                assert str(certificate) not in response.text


async def test_readiness_says_ok_when_every_merchant_can_sign(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings, app: FastAPI
) -> None:
    await create_merchant(session, settings, "shop")
    ready = await client.get("/readyz")
    assert ready.json()["signing"] == {"status": "ok", "broken_merchants": []}

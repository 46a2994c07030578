"""APNs misbehaving, through the whole service: order events in, pushes out to the stand-in.

For each fault the push service keeps going: every device hears of its card's latest version,
retried within ``PASSPOST_PUSH_MAX_ATTEMPTS``, or, where the fault never lifts for a device,
that push is recorded as failed for good; no version is recorded delivered twice.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.apns_standin import ApnsStandin
from services.core.settings import Settings
from services.onboarding import Onboarded
from services.passes import designs
from services.passes.apple.devchain import ensure_dev_chain
from services.passes.models import Card
from services.push.models import Delivery, PushTarget
from tests.conftest import BASE_URL
from tests.e2e.conftest import installation
from tests.factories import (
    create_card,
    create_merchant,
    order_event,
    post_order_event,
    push_token,
    register_device,
)
from tests.faults.conftest import Figures
from tests.waiting import eventually, nothing_to_push

CARDS = 8
DEVICES = 3
WAVES = ("confirmed", "shipped", "out_for_delivery")
"""Each card's order goes through these: the first before the fault, the others during it."""
MAX_ATTEMPTS = Settings().push_max_attempts
"""The default bound: 30% failures give up on a push once in 0.3**8 (1 in 15,000)."""
KEY_ID = "FAULTKEY01"


@dataclass(frozen=True)
class Fault:
    """How the stand-in misbehaves; ``doomed``: a device it never answers properly."""

    program: Callable[[ApnsStandin, str], None]
    token_auth: bool = False
    doomed: bool = False
    lands_late: bool = False
    """The doomed device's push may still be recorded delivered: every attempt of a push
    carries the same apns-id, so APNs's late 200 to one attempt answers the next (APNs took it)."""


FAULTS = {
    "500s_30_percent": Fault(lambda s, _: s.fail_randomly(0.3, 500, seed=12)),
    "429_burst": Fault(lambda s, _: s.fail(None, 429, times=30)),
    "dropped_connections": Fault(lambda s, _: s.drop_connection(after_requests=3, times=6)),
    "slower_than_the_timeout": Fault(
        lambda s, doomed: s.delay(doomed, 2.0), doomed=True, lands_late=True
    ),
    "200_without_apns_id": Fault(lambda s, doomed: s.omit_apns_id(doomed), doomed=True),
    "403_expired_provider_token": Fault(lambda s, _: s.expire_provider_tokens(), token_auth=True),
    "429_too_many_provider_token_updates": Fault(
        lambda s, _: s.fail(None, 429, "TooManyProviderTokenUpdates", times=20), token_auth=True
    ),
}


@pytest.fixture
def token_key(tmp_path: Path) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / f"AuthKey_{KEY_ID}.p8"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key, path


@pytest.fixture
async def standin(
    settings: Settings, token_key: tuple[ec.EllipticCurvePrivateKey, Path]
) -> AsyncIterator[ApnsStandin]:
    chain = ensure_dev_chain(settings.keys_dir)
    async with ApnsStandin(
        certfile=chain.apns_standin_certificate,
        keyfile=chain.apns_standin_key,
        client_ca_file=chain.client_ca_bundle,
        token_keys={KEY_ID: token_key[0].public_key()},
    ) as running:
        yield running


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The push backoff's shape (doubling from the first retry) on a scale of 50 ms, not 1 s,
    and capped at 0.4 s, not five minutes."""
    monkeypatch.setattr(
        "services.push.deliveries.retry_delay",
        lambda attempt: min(0.4, 0.05 * 2 ** max(0, attempt - 1)),
    )


async def _shop(
    session: AsyncSession, settings: Settings, token_auth: bool, key_file: Path
) -> Onboarded:
    shop = await create_merchant(session, settings)
    if token_auth:
        merchant = await session.merge(shop.merchant)
        design = await designs.get_design(session, merchant)
        await designs.set_apns_token_key(session, merchant, design, key_file, KEY_ID)
        await session.commit()
    return shop


@pytest.mark.parametrize("name", list(FAULTS))
@pytest.mark.usefixtures("quick_backoff")
async def test_the_push_service_survives_apns_misbehaving(
    name: str,
    settings: Settings,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    token_key: tuple[ec.EllipticCurvePrivateKey, Path],
) -> None:
    fault = FAULTS[name]
    settings = settings.model_copy(
        update={
            "apns_url": standin.url,
            "apns_ca_file": settings.keys_dir / "dev-root.pem",
            "apns_timeout": 0.5,
        }
    )
    shop = await _shop(session, settings, fault.token_auth, token_key[1])
    cards = [await create_card(session, shop, customer_id=f"c-{n}") for n in range(CARDS)]
    await session.rollback()
    tokens = {card.id: [push_token() for _ in range(DEVICES)] for card in cards}
    doomed = tokens[cards[0].id][0]
    app = installation(settings)
    figures = Figures(name, "sqlite" if settings.is_sqlite else "postgresql")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            for card in cards:
                for n, token in enumerate(tokens[card.id]):
                    await register_device(client, card, f"d{n}-{card.serial_number}", token)
            for wave, status in enumerate(WAVES):
                if wave == 1:
                    await eventually(lambda: nothing_to_push(sessionmaker))
                    answered_before = standin.push_count
                    fault.program(standin, doomed)
                for card in cards:
                    event = order_event(
                        status,
                        order_id=f"{card.customer_id}-1",
                        at=f"2026-11-23T1{wave}:00:00Z",
                        customer={"id": card.customer_id, "name": "Jana", "locale": "sk"},
                    )
                    await post_order_event(client, shop.api_key, event)
                    figures.events += 1
            await eventually(lambda: nothing_to_push(sessionmaker), seconds=60)
    during = list(standin.received)[answered_before:]
    figures.faults_injected = sum(
        p.status != 200 or p.apns_id is None or (fault.doomed and p.token == doomed) for p in during
    )
    assert figures.faults_injected > 0, "the fault was injected"
    await _check_outcomes(
        sessionmaker, cards, tokens, doomed if fault.doomed else None, figures, fault.lands_late
    )
    figures.record()


async def _check_outcomes(
    sessionmaker: async_sessionmaker[AsyncSession],
    cards: list[Card],
    tokens: dict[uuid.UUID, list[str]],
    doomed: str | None,
    figures: Figures,
    lands_late: bool,
) -> None:
    """Every device at its card's latest version, or (the doomed one) recorded as failed after
    the bounded attempts; no version recorded delivered twice."""
    async with sessionmaker() as session:
        versions = {
            row.id: row.version for row in await session.execute(select(Card.id, Card.version))
        }
        targets = (await session.scalars(select(PushTarget))).all()
        deliveries = (await session.scalars(select(Delivery))).all()
    assert len(targets) == CARDS * DEVICES
    delivered = Counter(
        (d.card_id, d.device_library_identifier, d.version)
        for d in deliveries
        if d.outcome == "delivered"
    )
    figures.deliveries = sum(delivered.values())
    figures.repeated = sum(count - 1 for count in delivered.values() if count > 1)
    assert figures.repeated == 0
    assert max(d.attempt for d in deliveries) <= MAX_ATTEMPTS
    for target in targets:
        latest = versions[target.card_id]
        assert target.wanted_version == latest
        assert target.sent_version == latest  # delivered, or given up on and recorded
        if (target.card_id, target.device_library_identifier, latest) in delivered:
            continue
        assert target.push_token == doomed, "a device lost its card's latest version"
        given_up = [
            d
            for d in deliveries
            if d.device_library_identifier == target.device_library_identifier
            and d.outcome == "failed"
        ]
        assert given_up, "the failure is recorded"
        assert all(d.attempt == MAX_ATTEMPTS for d in given_up)
        figures.failed_for_good += len(given_up)
    assert doomed is None or lands_late or figures.failed_for_good > 0
    figures.lost = sum(
        1
        for target in targets
        if (target.card_id, target.device_library_identifier, versions[target.card_id])
        not in delivered
        and target.push_token != doomed
    )
    assert figures.lost == 0
    assert {t.push_token for t in targets} == {t for ts in tokens.values() for t in ts}

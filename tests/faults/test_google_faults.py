"""Google's Wallet API answering 429, 500, 503 or timing out, through the whole service.

A fake Wallet API (respx) answers a seeded share of the calls with one of those faults and keeps
what the others did. Afterwards every card's object is at its latest version and every message
the cards were to get is on its object once: retried (by the client, then by the worker),
nothing lost.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.settings import Settings
from services.integrations.google_wallet.client import DEFAULT_API_URL, RetryPolicy
from services.merchants import google_wallet
from services.push.models import GoogleDelivery, GoogleTarget
from tests.conftest import BASE_URL, GOOGLE_TOKEN_URI
from tests.e2e.conftest import installation
from tests.factories import create_merchant, order_event, post_order_event
from tests.faults.conftest import Figures
from tests.integrations.google_wallet.conftest import ISSUER_ID, google_error
from tests.waiting import eventually, queue_drained

CARDS = 10
WAVES = ("confirmed", "shipped", "out_for_delivery", "delivered")
FAULT_SHARE = 0.4
FAULTS = ("429", "500", "503", "timeout")


class FlakyWallet:
    """Loyalty objects and their messages as Google would keep them, behind faults: a seeded
    ``FAULT_SHARE`` of calls is answered with one of ``FAULTS`` and changes nothing."""

    def __init__(self, router: respx.MockRouter) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.messages: Counter[tuple[str, str]] = Counter()
        self.faults: Counter[str] = Counter()
        self._random = random.Random(2026)  # noqa: S311  (which call fails, not a secret)
        router.post(GOOGLE_TOKEN_URI).mock(
            return_value=httpx.Response(
                200, json={"access_token": "ya29.t", "expires_in": 3599, "token_type": "Bearer"}
            )
        )
        router.route(url__startswith=DEFAULT_API_URL).mock(side_effect=self.answer)

    def answer(self, request: httpx.Request) -> httpx.Response:
        if self._random.random() < FAULT_SHARE:
            fault = self._random.choice(FAULTS)
            self.faults[fault] += 1
            if fault == "timeout":
                raise httpx.ReadTimeout("the Wallet API did not answer in time", request=request)
            return google_error(int(fault), "backend trouble", "backendError")
        path = str(request.url).removeprefix(DEFAULT_API_URL + "/")
        body = json.loads(request.content) if request.content else {}
        _collection, _, rest = path.partition("/")
        if path.endswith("/addMessage"):
            object_id = rest.removesuffix("/addMessage")
            self.messages[object_id, body["message"]["id"]] += 1
            return httpx.Response(200, json={"resource": self.objects.get(object_id, {})})
        if request.method == "PATCH":
            if rest not in self.objects:
                return google_error(404, "no such object", "resourceNotFound")
            self.objects[rest] = {**self.objects[rest], **body}
            return httpx.Response(200, json=self.objects[rest])
        if rest in self.objects or body.get("id") in self.objects:
            return google_error(409, "exists", "duplicate")
        self.objects[body.get("id", rest)] = body
        return httpx.Response(200, json=body)


@pytest.fixture
def wallet() -> Iterator[FlakyWallet]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield FlakyWallet(router)


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both backoffs (the client's, then the worker's) in their shape on a scale of 10 ms."""
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, retry: 0.01 * 2 ** (retry - 1))
    monkeypatch.setattr(
        "services.push.google.retry_delay", lambda attempt: min(0.2, 0.02 * 2**attempt)
    )


@pytest.mark.usefixtures("quick_retries")
async def test_google_faults_are_retried_and_nothing_is_lost(
    settings: Settings,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    wallet: FlakyWallet,
    service_account_info: dict[str, str],
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "service-account.json"
    key_file.write_text(json.dumps(service_account_info))
    shop = await create_merchant(session, settings)
    merchant = await session.merge(shop.merchant)
    await google_wallet.configure(
        session, merchant, issuer_id=ISSUER_ID, service_account_file=key_file, origins=[]
    )
    await session.commit()
    backend = "sqlite" if settings.is_sqlite else "postgresql"
    figures = Figures("google_429_500_503_timeouts", backend)
    app = installation(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            for wave, status in enumerate(WAVES):
                for n in range(CARDS):
                    event = order_event(
                        status,
                        order_id=f"G-{n}",
                        at=f"2026-11-23T1{wave}:00:00Z",
                        customer={"id": f"g-{n}", "name": "Jana", "locale": "sk"},
                    )
                    await post_order_event(client, shop.api_key, event)
                    figures.events += 1

            async def delivered() -> bool:
                if not await queue_drained(sessionmaker):
                    return False
                async with sessionmaker() as check:
                    targets = (await check.scalars(select(GoogleTarget))).all()
                return len(targets) == CARDS and all(
                    t.synced_version >= t.wanted_version and not t.pending_messages for t in targets
                )

            await eventually(delivered, seconds=60)
    async with sessionmaker() as check:
        targets = (await check.scalars(select(GoogleTarget))).all()
        log = (await check.scalars(select(GoogleDelivery))).all()
    figures.faults_injected = sum(wallet.faults.values())
    assert set(wallet.faults) == set(FAULTS), "every kind of fault was injected"
    given_up = [t for t in targets if t.last_error and t.attempts == 0 and t.pending_messages]
    assert not given_up
    sent_messages = {message["id"] for t in targets for message in t.kept_messages}
    on_google = {message_id for _object, message_id in wallet.messages}
    figures.lost = len(sent_messages - on_google) + sum(
        t.object_id not in wallet.objects for t in targets
    )
    assert figures.lost == 0
    assert sent_messages == on_google
    figures.repeated = sum(count - 1 for count in wallet.messages.values() if count > 1)
    assert figures.repeated == 0, "a message Google did not take is sent again, never one it did"
    figures.deliveries = sum(entry.outcome == "delivered" for entry in log)
    assert all(t.wanted_version == t.synced_version for t in targets)
    for target in targets:
        kept = wallet.objects[target.object_id]
        assert kept["id"] == target.object_id
    figures.record()

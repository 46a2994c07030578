"""The PassKit web service's cache of cards: a changed card is never answered from it."""

from __future__ import annotations

import uuid
from collections.abc import Hashable
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.settings import Settings
from services.passes.apple import pass_cache
from services.passes.apple.pass_cache import BundleCache, PassCache
from services.passes.changes import record_change
from services.passes.models import Card
from services.passes.registrations import PassState
from tests.factories import WS, create_card, create_merchant, pass_auth
from tests.waiting import eventually

STATE = PassState(uuid.uuid4(), "token", 1, datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """An hour: only hearing of the change, never the entry's age, may end a stale answer."""
    return settings.model_copy(update={"pass_cache_seconds": 3600.0})


@pytest.fixture
async def card(session: AsyncSession, settings: Settings) -> Card:
    return await create_card(session, await create_merchant(session, settings))


def _url(card: Card) -> str:
    return f"{WS}/passes/{card.pass_type_identifier}/{card.serial_number}"


async def _cached(app: FastAPI, client: httpx.AsyncClient, card: Card) -> str:
    """The card's Last-Modified once the process answers it from its cache."""
    cache: PassCache = app.state.pass_cache
    listener = app.state.pass_cache_listener
    last_modified = (await client.get(_url(card), headers=pass_auth(card))).headers["last-modified"]

    async def kept() -> bool:
        if listener is not None and not listener.listening.is_set():
            return False
        unchanged = await client.get(
            _url(card), headers={**pass_auth(card), "If-Modified-Since": last_modified}
        )
        assert unchanged.status_code == 304
        return cache.lookup(card.pass_type_identifier, card.serial_number) is not None

    await eventually(kept, seconds=10)  # SQLite: once the WAL file has settled
    return last_modified


async def test_a_card_another_process_changed_is_not_answered_304(
    app: FastAPI,
    client: httpx.AsyncClient,
    card: Card,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    last_modified = await _cached(app, client, card)
    # The change is made as another process would: this process's caches are not told.
    monkeypatch.setattr(pass_cache, "_forget", lambda _changed: None)
    await record_change(session, card)
    await session.commit()

    async def current() -> bool:
        answer = await client.get(
            _url(card), headers={**pass_auth(card), "If-Modified-Since": last_modified}
        )
        return answer.status_code == 200

    # PostgreSQL: the NOTIFY of the commit; SQLite: the WAL file moved.
    await eventually(current, seconds=10)


async def test_a_cached_card_still_needs_its_token(
    app: FastAPI, client: httpx.AsyncClient, card: Card
) -> None:
    last_modified = await _cached(app, client, card)
    headers = {"If-Modified-Since": last_modified}
    assert (await client.get(_url(card), headers=headers)).status_code == 401
    token = card.authentication_token
    other = "y" if token.endswith("x") else "x"  # a token ending in "x" stayed right (1 in 64)
    wrong = {**headers, "Authorization": f"ApplePass {token[:-1]}{other}"}
    assert (await client.get(_url(card), headers=wrong)).status_code == 401


def _cache(signal: list[Hashable | None], now: list[float]) -> PassCache:
    return PassCache(60.0, 1024, lambda: signal[0], monotonic=lambda: now[0])


def test_a_read_that_raced_a_change_is_not_kept() -> None:
    cache = _cache([1], [0.0])
    ticket = cache.ticket()
    cache.forget("pass.x", "other")  # any card: the generation moved during the read
    entry = cache.store(ticket, "pass.x", "s1", STATE)
    assert entry.state == STATE
    assert cache.lookup("pass.x", "s1") is None
    cache.store(cache.ticket(), "pass.x", "s1", STATE)
    assert cache.lookup("pass.x", "s1") is not None


def test_nothing_is_kept_or_served_while_changes_cannot_be_heard() -> None:
    signal: list[Hashable | None] = [None]
    cache = _cache(signal, [0.0])
    cache.store(cache.ticket(), "pass.x", "s1", STATE)
    assert cache.lookup("pass.x", "s1") is None
    signal[0] = 1
    cache.store(cache.ticket(), "pass.x", "s1", STATE)
    assert cache.lookup("pass.x", "s1") is not None
    signal[0] = None  # the listener lost its connection
    assert cache.lookup("pass.x", "s1") is None
    signal[0] = 2  # and reconnected: what was kept before is not trusted
    assert cache.lookup("pass.x", "s1") is None


def test_an_entry_lives_at_most_its_max_age_from_before_its_read() -> None:
    now = [100.0]
    cache = _cache([1], now)
    ticket = cache.ticket()
    now[0] += 30.0
    cache.store(ticket, "pass.x", "s1", STATE)
    now[0] += 29.9
    assert cache.lookup("pass.x", "s1") is not None
    now[0] += 0.1
    assert cache.lookup("pass.x", "s1") is None


def test_a_notification_forgets_its_card_only() -> None:
    cache = _cache([1], [0.0])
    for serial in ("s1", "s2"):
        cache.store(cache.ticket(), "pass.x.y", serial, STATE)
    cache.on_notification(pass_cache.CHANNEL, pass_cache.card_key("pass.x.y", "s1"))
    assert cache.lookup("pass.x.y", "s1") is None
    assert cache.lookup("pass.x.y", "s2") is not None


def test_bundles_are_kept_within_their_byte_budget_least_recent_out_first() -> None:
    bundles = BundleCache(max_bytes=10)
    card = uuid.uuid4()
    bundles.put(card, 1, b"aaaa")
    bundles.put(card, 2, b"bbbb")
    assert bundles.get(card, 1) == b"aaaa"  # now the most recent
    bundles.put(card, 3, b"cccc")
    assert bundles.get(card, 2) is None
    assert bundles.get(card, 1) == b"aaaa"
    assert bundles.get(card, 3) == b"cccc"
    bundles.put(card, 4, b"x" * 11)  # larger than the whole budget: not kept
    assert bundles.get(card, 4) is None

"""Marketing messages on the card's Google object: the budget they may take, their display
interval, taking them off again, and what push counts for the channel's stats. The Wallet API is
mocked with respx; every request body is checked against Google's published schema."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.contracts.messages import CardUpdated, ChannelCounted
from services.core.clock import Clock, clock
from services.core.queue import OutboxMessage
from services.integrations.google_wallet.client import DEFAULT_API_URL
from services.push.google import GoogleClients, GoogleWorker, schedule
from services.push.models import GoogleDelivery, GoogleTarget
from services.push.workers import Wakeup
from tests.integrations.google_wallet.conftest import ISSUER_ID, WalletApi, google_error

CARD = uuid.uuid4()
MERCHANT = uuid.uuid4()
OBJECT_ID = f"{ISSUER_ID}.card-0001"
OBJECT_PATH = f"loyaltyObject/{OBJECT_ID}"
NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OFFER_ENDS = datetime(2026, 12, 24, 23, 0, tzinfo=UTC)


@pytest.fixture
def set_clock() -> Iterator[Clock]:
    clock.set(NOON)
    yield clock
    clock.reset()


@pytest.fixture
def wallet_api() -> Iterator[WalletApi]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        api = WalletApi(router)
        ok = httpx.Response(200, json={})
        api.answer("PATCH", OBJECT_PATH, ok)
        api.answer("POST", f"{OBJECT_PATH}/addMessage", ok)
        yield api


@pytest.fixture
async def worker(
    sessionmaker: async_sessionmaker[AsyncSession],
    wallet_api: WalletApi,
) -> AsyncIterator[GoogleWorker]:
    clients = GoogleClients(DEFAULT_API_URL)
    yield GoogleWorker(sessionmaker, clients, Wakeup())
    await clients.aclose()


@pytest.fixture
def key_file(service_account_info: dict[str, str], tmp_path: Path) -> Path:
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(service_account_info))
    return path


class Card:
    """The card's versions as passes would publish them."""

    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        self.version = 0

    def change(
        self, message: dict[str, Any] | None = None, withdrawn: tuple[str, ...] = ()
    ) -> CardUpdated:
        self.version += 1
        return CardUpdated.model_validate(
            {
                "card_id": str(CARD),
                "merchant_id": str(MERCHANT),
                "serial_number": "card-0001",
                "pass_type_identifier": "pass.test.shop",
                "version": self.version,
                "apns": {"auth": "certificate", "certificate_path": "c", "key_path": "k"},
                "devices": [],
                "google": {
                    "issuer_id": ISSUER_ID,
                    "object_id": OBJECT_ID,
                    "service_account_path": str(self.key_file),
                    "object": {"id": OBJECT_ID, "classId": f"{ISSUER_ID}.customer-card"},
                    "message": message,
                    "withdrawn_messages": withdrawn,
                },
            }
        )


@pytest.fixture
def card(key_file: Path) -> Card:
    return Card(key_file)


def status(version: int, header: str = "Shipped") -> dict[str, Any]:
    return {"id": f"v{version}", "header": header, "body": "On its way", "important": True}


def offer(offer_id: str = "xmas", until: datetime = OFFER_ENDS) -> dict[str, Any]:
    return {
        "id": f"offer-{offer_id}",
        "header": "20 % off",
        "body": "Until Christmas Eve",
        "important": True,
        "kind": "marketing",
        "display_until": until.isoformat(),
    }


async def deliver(
    sessionmaker: async_sessionmaker[AsyncSession], worker: GoogleWorker, change: CardUpdated
) -> None:
    """The change consumed as the ``card.updated`` handler would, then worked off."""
    async with sessionmaker() as session, session.begin():
        await schedule(session, change, None)
    while await worker.deliver_once():
        pass


def added(api: WalletApi) -> list[tuple[str, str]]:
    """(message id, messageType) of every addMessage, in order."""
    return [
        (body["message"]["id"], body["message"]["messageType"])
        for method, path, body in api.bodies()
        if path.endswith("/addMessage")
    ]


def rewrites(api: WalletApi) -> list[list[dict[str, Any]]]:
    """The message lists of every PATCH that rewrote them."""
    return [
        body["messages"]
        for method, _, body in api.bodies()
        if method == "PATCH" and "messages" in body
    ]


async def counted(session: AsyncSession) -> list[ChannelCounted]:
    rows = await session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.topic == ChannelCounted.topic)
        .order_by(OutboxMessage.id)
    )
    return [ChannelCounted.model_validate(row.payload) for row in rows]


async def test_an_offer_notifies_with_its_display_interval_ending_when_it_does(
    set_clock: Clock,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: GoogleWorker,
    wallet_api: WalletApi,
    card: Card,
) -> None:
    await deliver(sessionmaker, worker, card.change(offer()))

    (body,) = [b for _, path, b in wallet_api.bodies() if path.endswith("/addMessage")]
    assert body == {
        "message": {
            "id": "offer-xmas",
            "header": "20 % off",
            "body": "Until Christmas Eve",
            "messageType": "TEXT_AND_NOTIFY",
            "displayInterval": {"end": {"date": "2026-12-24T23:00:00Z"}},
        }
    }


async def test_a_status_notification_in_the_last_day_sends_an_offer_as_text(
    set_clock: Clock,
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    worker: GoogleWorker,
    wallet_api: WalletApi,
    card: Card,
) -> None:
    await deliver(sessionmaker, worker, card.change(status(1)))
    set_clock.advance(timedelta(hours=23, minutes=59))
    await deliver(sessionmaker, worker, card.change(offer("a")))
    # Two slots were left, but an order on its way needs them: the offer yields.
    set_clock.advance(timedelta(minutes=2))  # the status is a day old now
    await deliver(sessionmaker, worker, card.change(offer("b")))

    assert added(wallet_api) == [
        ("v1", "TEXT_AND_NOTIFY"),
        ("offer-a", "TEXT"),
        ("offer-b", "TEXT_AND_NOTIFY"),
    ]
    kinds = [d.kind for d in await session.scalars(select(GoogleDelivery).order_by("id"))]
    assert [k for k in kinds if k != "object"] == ["notified", "downgraded", "notified"]
    (suppressed,) = await counted(session)
    assert suppressed.merchant_id == MERCHANT
    assert suppressed.day == NOON.date() + timedelta(days=1)
    assert suppressed.counts == {"suppressed.google_budget": 1}


async def test_one_offer_a_day_and_the_statuses_after_it_keep_two_slots(
    set_clock: Clock,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: GoogleWorker,
    wallet_api: WalletApi,
    card: Card,
) -> None:
    await deliver(sessionmaker, worker, card.change(offer("a")))
    set_clock.advance(timedelta(hours=1))
    await deliver(sessionmaker, worker, card.change(offer("b")))
    for hour in range(3):
        set_clock.advance(timedelta(hours=1))
        await deliver(sessionmaker, worker, card.change(status(card.version + 1, f"s{hour}")))

    assert added(wallet_api) == [
        ("offer-a", "TEXT_AND_NOTIFY"),
        ("offer-b", "TEXT"),
        ("v3", "TEXT_AND_NOTIFY"),
        ("v4", "TEXT_AND_NOTIFY"),
        ("v5", "TEXT"),  # Google's 3rd slot was the offer's: the rule cannot undo that
    ]


async def test_statuses_alone_still_get_all_three_slots(
    set_clock: Clock,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: GoogleWorker,
    wallet_api: WalletApi,
    card: Card,
) -> None:
    for _ in range(4):
        set_clock.advance(timedelta(minutes=30))
        await deliver(sessionmaker, worker, card.change(status(card.version + 1)))

    types = [message_type for _, message_type in added(wallet_api)]
    assert types == ["TEXT_AND_NOTIFY"] * 3 + ["TEXT"]


async def test_a_withdrawn_offer_leaves_the_object_quietly(
    set_clock: Clock,
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    worker: GoogleWorker,
    wallet_api: WalletApi,
    card: Card,
) -> None:
    await deliver(sessionmaker, worker, card.change(status(1)))
    await deliver(sessionmaker, worker, card.change(offer("a")))
    await deliver(sessionmaker, worker, card.change(withdrawn=("offer-a",)))

    (rewrite,) = rewrites(wallet_api)
    assert [(m["id"], m["messageType"]) for m in rewrite] == [("v1", "TEXT")]
    assert len(added(wallet_api)) == 2, "taking a message off adds none"
    target = (await session.scalars(select(GoogleTarget))).one()
    assert [m["id"] for m in target.kept_messages] == ["v1"]
    assert (target.withdrawn_messages, target.messages_due) == ([], False)


async def test_an_offer_withdrawn_before_it_went_out_never_goes(
    set_clock: Clock,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: GoogleWorker,
    wallet_api: WalletApi,
    card: Card,
) -> None:
    async with sessionmaker() as session, session.begin():
        await schedule(session, card.change(offer("a")), None)
        await schedule(session, card.change(withdrawn=("offer-a",)), None)
    while await worker.deliver_once():
        pass

    assert added(wallet_api) == []
    assert rewrites(wallet_api) == [], "nothing on the object to take off"


async def test_a_withdrawal_arriving_while_the_offer_is_sent_is_done_next_round(
    set_clock: Clock,
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    worker: GoogleWorker,
    wallet_api: WalletApi,
    card: Card,
) -> None:
    async def withdraw_meanwhile(request: httpx.Request) -> httpx.Response:
        async with sessionmaker() as other, other.begin():
            await schedule(other, card.change(withdrawn=("offer-a",)), None)
        return httpx.Response(200, json={})

    wallet_api.router.route(method="POST", url=f"{DEFAULT_API_URL}/{OBJECT_PATH}/addMessage").mock(
        side_effect=withdraw_meanwhile
    )
    async with sessionmaker() as setup, setup.begin():
        await schedule(setup, card.change(offer("a")), None)
    while await worker.deliver_once():
        pass

    (rewrite,) = rewrites(wallet_api)
    assert rewrite == []
    target = (await session.scalars(select(GoogleTarget))).one()
    assert (target.kept_messages, target.withdrawn_messages) == ([], [])


async def test_an_offer_that_expired_before_it_could_go_is_dropped(
    set_clock: Clock,
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    worker: GoogleWorker,
    wallet_api: WalletApi,
    card: Card,
) -> None:
    await deliver(sessionmaker, worker, card.change(offer("a", until=NOON - timedelta(seconds=1))))

    assert added(wallet_api) == []
    kinds = [(d.kind, d.outcome) for d in await session.scalars(select(GoogleDelivery))]
    assert ("expired", "dropped") in kinds
    target = (await session.scalars(select(GoogleTarget))).one()
    assert (target.pending_messages, target.messages_due) == ([], False)


async def test_ten_messages_make_room_by_dropping_ended_ones_first(
    set_clock: Clock,
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    worker: GoogleWorker,
    wallet_api: WalletApi,
    card: Card,
) -> None:
    await deliver(sessionmaker, worker, card.change(status(1)))
    ended = {"displayInterval": {"end": {"date": "2026-11-30T00:00:00Z"}}}
    target = (await session.scalars(select(GoogleTarget))).one()
    target.kept_messages = [
        {
            "id": f"m{n}",
            "header": "h",
            "body": "b",
            "messageType": "TEXT",
            **(ended if n == 5 else {}),
        }
        for n in range(10)
    ]
    await session.commit()

    await deliver(sessionmaker, worker, card.change(offer("a")))

    (rewrite,) = rewrites(wallet_api)
    assert [m["id"] for m in rewrite] == [f"m{n}" for n in range(10) if n != 5]
    await session.refresh(target)
    assert len(target.kept_messages) == 10
    assert target.kept_messages[-1]["id"] == "offer-a"


async def test_quota_exceeded_for_an_offer_sends_it_as_text_and_counts_it(
    set_clock: Clock,
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    worker: GoogleWorker,
    wallet_api: WalletApi,
    card: Card,
) -> None:
    wallet_api.answer(
        "POST",
        f"{OBJECT_PATH}/addMessage",
        google_error(403, "Quota exceeded", "quotaExceeded"),
        httpx.Response(200, json={}),
    )
    await deliver(sessionmaker, worker, card.change(offer("a")))

    assert added(wallet_api) == [("offer-a", "TEXT_AND_NOTIFY"), ("offer-a", "TEXT")]
    (suppressed,) = await counted(session)
    assert suppressed.counts == {"suppressed.google_budget": 1}


async def test_downgrades_of_a_batch_are_counted_in_one_message_per_merchant(
    set_clock: Clock,
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    worker: GoogleWorker,
    wallet_api: WalletApi,
    card: Card,
) -> None:
    async with sessionmaker() as setup, setup.begin():
        for version in range(1, 6):
            await schedule(setup, card.change(status(version)), None)
    assert await worker.deliver_once() == 1

    (suppressed,) = await counted(session)
    assert suppressed.counts == {"suppressed.google_budget": 2}

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
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.contracts.messages import CardUpdated, ChannelCounted
from services.core.clock import Clock, clock
from services.core.queue import OutboxMessage
from services.integrations.google_wallet.client import DEFAULT_API_URL
from services.push.google import GoogleClients, GoogleWorker, schedule
from services.push.models import GoogleDelivery, GoogleTarget
from services.push.workers import Wakeup
from tests.integrations.google_wallet.conftest import ISSUER_ID, WalletApi, google_error
from tests.statements import statements_of

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


class Google:
    """One card's Google side as push sees it: the changes passes would publish for it, the
    worker that delivers them, and the Wallet API mock they reach."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: GoogleWorker,
        api: WalletApi,
        key_file: Path,
    ) -> None:
        self.sessionmaker, self.worker, self.api = sessionmaker, worker, api
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

    async def schedule(self, *changes: CardUpdated) -> None:
        """The changes consumed as the ``card.updated`` handler would, in one transaction."""
        async with self.sessionmaker() as session, session.begin():
            for change in changes:
                await schedule(session, change, None)

    async def deliver(self, *changes: CardUpdated) -> None:
        """The changes scheduled, then worked off."""
        await self.schedule(*changes)
        while await self.worker.deliver_once():
            pass

    def added(self) -> list[tuple[str, str]]:
        """(message id, messageType) of every addMessage, in order."""
        return [
            (body["message"]["id"], body["message"]["messageType"])
            for method, path, body in self.api.bodies()
            if path.endswith("/addMessage")
        ]

    def rewrites(self) -> list[list[dict[str, Any]]]:
        """The message lists of every PATCH that rewrote them."""
        return [
            body["messages"]
            for method, _, body in self.api.bodies()
            if method == "PATCH" and "messages" in body
        ]


@pytest.fixture
async def google(
    set_clock: Clock,
    sessionmaker: async_sessionmaker[AsyncSession],
    wallet_api: WalletApi,
    service_account_info: dict[str, str],
    tmp_path: Path,
) -> AsyncIterator[Google]:
    key_file = tmp_path / "service-account.json"
    key_file.write_text(json.dumps(service_account_info))
    clients = GoogleClients(DEFAULT_API_URL)
    yield Google(sessionmaker, GoogleWorker(sessionmaker, clients, Wakeup()), wallet_api, key_file)
    await clients.aclose()


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


async def counted(session: AsyncSession) -> list[ChannelCounted]:
    rows = await session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.topic == ChannelCounted.topic)
        .order_by(OutboxMessage.id)
    )
    return [ChannelCounted.model_validate(row.payload) for row in rows]


async def test_an_offer_notifies_with_its_display_interval_ending_when_it_does(
    google: Google,
) -> None:
    await google.deliver(google.change(offer()))

    (body,) = [b for _, path, b in google.api.bodies() if path.endswith("/addMessage")]
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
    google: Google, session: AsyncSession
) -> None:
    await google.deliver(google.change(status(1)))
    clock.advance(timedelta(hours=23, minutes=59))
    await google.deliver(google.change(offer("a")))
    # Two slots were left, but an order on its way needs them: the offer yields.
    clock.advance(timedelta(minutes=2))  # the status is a day old now
    await google.deliver(google.change(offer("b")))

    assert google.added() == [
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


async def test_one_offer_a_day_and_the_statuses_after_it_keep_two_slots(google: Google) -> None:
    await google.deliver(google.change(offer("a")))
    clock.advance(timedelta(hours=1))
    await google.deliver(google.change(offer("b")))
    for hour in range(3):
        clock.advance(timedelta(hours=1))
        await google.deliver(google.change(status(google.version + 1, f"s{hour}")))

    assert google.added() == [
        ("offer-a", "TEXT_AND_NOTIFY"),
        ("offer-b", "TEXT"),
        ("v3", "TEXT_AND_NOTIFY"),
        ("v4", "TEXT_AND_NOTIFY"),
        ("v5", "TEXT"),  # Google's 3rd slot was the offer's: the rule cannot undo that
    ]


async def test_statuses_alone_still_get_all_three_slots(google: Google) -> None:
    for _ in range(4):
        clock.advance(timedelta(minutes=30))
        await google.deliver(google.change(status(google.version + 1)))

    types = [message_type for _, message_type in google.added()]
    assert types == ["TEXT_AND_NOTIFY"] * 3 + ["TEXT"]


async def test_a_withdrawn_offer_leaves_the_object_quietly(
    google: Google, session: AsyncSession
) -> None:
    await google.deliver(google.change(status(1)))
    await google.deliver(google.change(offer("a")))
    await google.deliver(google.change(withdrawn=("offer-a",)))

    (rewrite,) = google.rewrites()
    assert [(m["id"], m["messageType"]) for m in rewrite] == [("v1", "TEXT")]
    assert len(google.added()) == 2, "taking a message off adds none"
    target = (await session.scalars(select(GoogleTarget))).one()
    assert [m["id"] for m in target.kept_messages] == ["v1"]
    assert (target.withdrawn_messages, target.messages_due) == ([], False)


async def test_an_offer_withdrawn_before_it_went_out_never_goes(google: Google) -> None:
    await google.deliver(google.change(offer("a")), google.change(withdrawn=("offer-a",)))

    assert google.added() == []
    assert google.rewrites() == [], "nothing on the object to take off"


async def test_a_withdrawal_arriving_while_the_offer_is_sent_is_done_next_round(
    google: Google, session: AsyncSession
) -> None:
    async def withdraw_meanwhile(request: httpx.Request) -> httpx.Response:
        await google.schedule(google.change(withdrawn=("offer-a",)))
        return httpx.Response(200, json={})

    google.api.router.route(method="POST", url=f"{DEFAULT_API_URL}/{OBJECT_PATH}/addMessage").mock(
        side_effect=withdraw_meanwhile
    )
    await google.deliver(google.change(offer("a")))

    (rewrite,) = google.rewrites()
    assert rewrite == []
    target = (await session.scalars(select(GoogleTarget))).one()
    assert (target.kept_messages, target.withdrawn_messages) == ([], [])


async def test_an_offer_that_expired_before_it_could_go_is_dropped(
    google: Google, session: AsyncSession
) -> None:
    await google.deliver(google.change(offer("a", until=NOON - timedelta(seconds=1))))

    assert google.added() == []
    kinds = [(d.kind, d.outcome) for d in await session.scalars(select(GoogleDelivery))]
    assert ("expired", "dropped") in kinds
    target = (await session.scalars(select(GoogleTarget))).one()
    assert (target.pending_messages, target.messages_due) == ([], False)


async def test_ten_messages_make_room_by_dropping_ended_ones_first(
    google: Google, session: AsyncSession
) -> None:
    await google.deliver(google.change(status(1)))
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

    await google.deliver(google.change(offer("a")))

    (rewrite,) = google.rewrites()
    assert [m["id"] for m in rewrite] == [f"m{n}" for n in range(10) if n != 5]
    await session.refresh(target)
    assert len(target.kept_messages) == 10
    assert target.kept_messages[-1]["id"] == "offer-a"


async def test_quota_exceeded_for_an_offer_sends_it_as_text_and_counts_it(
    google: Google, session: AsyncSession
) -> None:
    google.api.answer(
        "POST",
        f"{OBJECT_PATH}/addMessage",
        google_error(403, "Quota exceeded", "quotaExceeded"),
        httpx.Response(200, json={}),
    )
    await google.deliver(google.change(offer("a")))

    assert google.added() == [("offer-a", "TEXT_AND_NOTIFY"), ("offer-a", "TEXT")]
    (suppressed,) = await counted(session)
    assert suppressed.counts == {"suppressed.google_budget": 1}


async def test_downgrades_of_a_batch_are_counted_in_one_message_per_merchant(
    google: Google, session: AsyncSession
) -> None:
    await google.schedule(*(google.change(status(version)) for version in range(1, 6)))
    assert await google.worker.deliver_once() == 1

    (suppressed,) = await counted(session)
    assert suppressed.counts == {"suppressed.google_budget": 2}


async def test_marketing_costs_the_card_updated_consumer_no_statement_more(
    google: Google, engine: AsyncEngine
) -> None:
    """The push hot path stays as it was: an offer, or taking one off, is scheduled with the
    same statements as a status message (read the target, write it)."""
    await google.deliver(google.change(status(1)))
    counts = []
    with statements_of(engine) as statements:
        for change in (
            google.change(status(2)),
            google.change(offer("a")),
            google.change(withdrawn=("offer-a",)),
        ):
            statements.clear()
            await google.schedule(change)
            verbs = [s.split()[0] for s in statements]
            counts.append([v for v in verbs if v in {"SELECT", "INSERT", "UPDATE"}])
    assert counts == [["SELECT", "UPDATE"]] * 3

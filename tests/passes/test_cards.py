"""What a card shows as its customer's orders move (``order.changed`` applied)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.contracts.cards import card_identity
from services.contracts.messages import OrderChanged
from services.core.queue import InboxMessage, OutboxMessage, Subscription, publish
from services.core.queue.db import DatabaseQueue
from services.core.settings import Settings
from services.onboarding import development_wallet_orders
from services.passes import issuing
from services.passes.apple.document import pass_document
from services.passes.card_orders import apply_order_change, delivered_orders, take_order_change
from services.passes.card_view import current_order
from services.passes.handlers import order_changed
from services.passes.models import Card, Registration, WalletOrder, WalletOrderRegistration
from tests.factories import TEST_SECRET_KEY, create_merchant
from tests.statements import statements_of


def change(
    order_id: str, status: str, revision: int, placed_at: str, **extra: Any
) -> dict[str, Any]:
    return {
        "revision": revision,
        "status": status,
        "placed_at": placed_at,
        "order": {
            "id": order_id,
            "number": order_id.removeprefix("A-"),
            "status": status,
            "customer": {"id": "c-1", "name": "Jana", "locale": extra.pop("locale", "sk")},
            **extra,
        },
    }


def message(merchant: Any, payload: dict[str, Any]) -> OrderChanged:
    """``payload`` as the orders service would publish it for ``merchant``."""
    return OrderChanged.model_validate(
        {
            "order_id": uuid.uuid4(),
            "event_id": f"evt-{uuid.uuid4().hex[:8]}",
            "occurred_at": payload["placed_at"],
            **payload,
            "merchant_id": merchant.id,
        }
    )


async def _apply(session: AsyncSession, merchant: Any, payload: dict[str, Any]) -> Any:
    card = await apply_order_change(session, merchant, message(merchant, payload), TEST_SECRET_KEY)
    await session.commit()
    return card


async def test_first_order_issues_the_card_with_the_derived_identity(
    session: AsyncSession, settings: Settings
) -> None:
    shop = await create_merchant(session, settings)
    card = await _apply(session, shop.merchant, change("A-1", "confirmed", 1, "2026-11-20T10:00"))
    identity = card_identity(TEST_SECRET_KEY, shop.merchant.id, "c-1")
    assert (card.serial_number, card.link_token) == (identity.serial_number, identity.link_token)
    assert card.version == 1
    assert card.locale == "sk"


async def test_the_card_shows_the_most_recent_open_order(
    session: AsyncSession, settings: Settings
) -> None:
    shop = await create_merchant(session, settings)
    m = shop.merchant
    await _apply(session, m, change("A-1", "shipped", 2, "2026-11-20T10:00"))
    card = await _apply(session, m, change("A-2", "confirmed", 1, "2026-11-21T10:00"))
    assert current_order(card.content)["id"] == "A-2"
    # The newer order is delivered: the older one, still open, is shown again.
    card = await _apply(session, m, change("A-2", "delivered", 2, "2026-11-21T10:00"))
    assert current_order(card.content)["id"] == "A-1"
    # All done: the last placed stays on the card until the next order.
    card = await _apply(session, m, change("A-1", "delivered", 3, "2026-11-20T10:00"))
    shown = current_order(card.content)
    assert (shown["id"], shown["status"]) == ("A-2", "delivered")
    document = pass_document(shop.design, card, settings)
    assert document["storeCard"]["primaryFields"][0]["value"] == "status.delivered"


async def test_a_stale_change_is_ignored(session: AsyncSession, settings: Settings) -> None:
    shop = await create_merchant(session, settings)
    m = shop.merchant
    await _apply(session, m, change("A-1", "confirmed", 1, "2026-11-20T10:00"))
    card = await _apply(session, m, change("A-1", "shipped", 3, "2026-11-20T10:00"))
    version = card.version
    announced = (await session.scalars(select(OutboxMessage.topic))).all()
    assert sorted(announced) == ["card.updated"] * 2 + ["channel.counted"], (
        "issued (counted), then shipped (on no device yet: no notification to count)"
    )
    card = await _apply(session, m, change("A-1", "processing", 2, "2026-11-20T10:00"))
    assert current_order(card.content)["status"] == "shipped"
    assert card.version == version
    messages = (await session.scalars(select(OutboxMessage.topic))).all()
    assert messages == announced, "a stale change announces nothing"


async def test_unknown_locale_falls_back_to_the_merchant_default(
    session: AsyncSession, settings: Settings
) -> None:
    shop = await create_merchant(session, settings)
    card = await _apply(
        session, shop.merchant, change("A-1", "confirmed", 1, "2026-11-20T10:00", locale="fr")
    )
    assert card.locale == shop.merchant.default_locale == "en"


def _for(customer: str, order_id: str, placed_at: str) -> dict[str, Any]:
    payload = change(order_id, "confirmed", 1, placed_at)
    payload["order"]["customer"]["id"] = customer
    return payload


async def test_cards_changed_in_one_transaction_share_an_update_tag(
    session: AsyncSession, settings: Settings
) -> None:
    shop = await create_merchant(session, settings)
    m = shop.merchant
    first = await _apply(session, m, _for("c-1", "A-1", "2026-11-20T10:00"))
    first_tag = first.update_tag
    second_tag = (await _apply(session, m, _for("c-2", "A-2", "2026-11-20T10:00"))).update_tag
    assert second_tag > first_tag, "each transaction takes its own tag"

    changed = [
        await apply_order_change(
            session, m, message(m, _for(c, f"B-{c}", "2026-11-21T10:00")), TEST_SECRET_KEY
        )
        for c in ("c-1", "c-3", "c-2")  # c-3 is new: issued in a savepoint, released
    ]
    await session.commit()
    assert len({c.update_tag for c in changed}) == 1
    assert changed[0].update_tag > second_tag
    assert [c.version for c in changed] == [2, 1, 2]


async def test_a_tag_taken_in_a_rolled_back_savepoint_is_taken_again(
    session: AsyncSession, settings: Settings
) -> None:
    shop = await create_merchant(session, settings)
    m = shop.merchant
    before = await _apply(session, m, _for("c-1", "A-1", "2026-11-20T10:00"))
    before_tag = before.update_tag
    nested = await session.begin_nested()
    await apply_order_change(
        session, m, message(m, _for("c-2", "A-2", "2026-11-20T10:00")), TEST_SECRET_KEY
    )
    await nested.rollback()
    after = await apply_order_change(
        session, m, message(m, _for("c-1", "B-1", "2026-11-21T10:00")), TEST_SECRET_KEY
    )
    await session.commit()
    after_tag = after.update_tag
    later = await _apply(session, m, _for("c-1", "C-1", "2026-11-22T10:00"))
    assert before_tag < after_tag < later.update_tag


async def test_a_card_issued_concurrently_is_found_and_tags_stay_taken(
    session: AsyncSession, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The insert of a card another request issued first is refused in its savepoint; the
    update tag taken for it is not undone with it, and later changes take a new one."""
    shop = await create_merchant(session, settings)
    m = shop.merchant
    before = await _apply(session, m, _for("c-2", "A-2", "2026-11-20T10:00"))
    before_tag = before.update_tag
    real_find = issuing._find
    missed: list[str] = []

    async def miss_once(*args: Any) -> Any:
        if not missed:  # as if the other request committed just after this one looked
            missed.append("c-2")
            return None
        return await real_find(*args)

    monkeypatch.setattr(issuing, "_find", miss_once)
    found = await apply_order_change(
        session, m, message(m, _for("c-2", "B-2", "2026-11-21T10:00")), TEST_SECRET_KEY
    )
    other = await apply_order_change(
        session, m, message(m, _for("c-1", "B-1", "2026-11-21T10:00")), TEST_SECRET_KEY
    )
    await session.commit()
    assert missed == ["c-2"]
    assert found.id == before.id
    assert found.version == 2
    assert found.update_tag == other.update_tag, "one tag for the transaction"
    tag = other.update_tag
    later = await _apply(session, m, _for("c-1", "C-1", "2026-11-22T10:00"))
    assert before_tag < tag < later.update_tag


async def test_a_consumer_batch_applies_each_change_to_one_card_per_customer(
    engine: AsyncEngine,
    session: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    shop = await create_merchant(session, settings)
    m = shop.merchant
    await _apply(session, m, _for("c-1", "A-1", "2026-11-20T10:00"))
    payloads = [
        _for("c-1", "B-1", "2026-11-21T10:00"),
        _for("c-2", "B-2", "2026-11-21T10:00"),  # a new customer, twice in the batch
        _for("c-2", "C-2", "2026-11-22T10:00"),
    ]
    for payload in payloads:
        publish(session, message(m, payload))
    await session.commit()

    queue = DatabaseQueue(sessionmaker)
    handler = order_changed(settings)
    with statements_of(engine) as statements:
        assert await queue.drain_once([Subscription("passes", OrderChanged, handler)]) == 3
    assert not [s for s in statements if "FROM wallet_orders" in s], "Wallet Orders are off"

    async with sessionmaker() as fresh:
        cards = {c.customer_id: c for c in await fresh.scalars(select(Card))}
        assert set(cards) == {"c-1", "c-2"}
        assert set(cards["c-1"].content["orders"]) == {"A-1", "B-1"}
        assert set(cards["c-2"].content["orders"]) == {"B-2", "C-2"}
        assert (cards["c-1"].version, cards["c-2"].version) == (2, 2)
        assert await fresh.scalar(select(func.count()).select_from(InboxMessage)) == 3


async def test_a_consumer_batch_reads_devices_wallet_orders_and_journeys_once(
    engine: AsyncEngine,
    session: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """What each change needs besides its card is read once for the batch: asked change by
    change (the card's devices, its Wallet order and that order's devices, its journeys),
    a change cost ten statements and wrote its card twice. The batch's writes go in one flush
    (a flush per change wrote its card, its Wallet order and its messages a statement each).
    The devices still reach push."""
    shop = await create_merchant(session, settings)
    m = shop.merchant
    await development_wallet_orders(session, settings, m)
    queue = DatabaseQueue(sessionmaker)
    subscription = Subscription("passes", OrderChanged, order_changed(settings))
    customers = ("c-1", "c-2", "c-3")
    for revision, status in enumerate(("confirmed", "shipped"), 1):
        for customer in customers:
            payload = change(f"A-{customer}", status, revision, "2026-11-20T10:00")
            payload["order"]["customer"]["id"] = customer
            publish(session, message(m, payload))
        if status == "shipped":
            session.add_all(await _registered(session, "c-1", "A-c-1"))
        await session.commit()
        with statements_of(engine) as statements:
            assert await queue.drain_once([subscription]) == len(customers)

    def reads(table: str) -> int:
        return sum(1 for s in statements if s.startswith("SELECT") and f"FROM {table} " in s)

    for table in ("registrations", "wallet_orders", "wallet_order_registrations", "journey_steps"):
        assert reads(table) == 1, table
    card_writes = [s for s in statements if s.startswith("UPDATE cards ")]
    assert len(card_writes) == 1, "the batch's cards written together, each once"
    wallet_order_writes = [s for s in statements if s.startswith("UPDATE wallet_orders ")]
    assert len(wallet_order_writes) == 1, "its Wallet orders too"
    async with sessionmaker() as fresh:
        outbox = (await fresh.scalars(select(OutboxMessage))).all()
        card_ids = {c.customer_id: str(c.id) for c in await fresh.scalars(select(Card))}
    devices = {
        (row.topic, row.key): [d["push_token"] for d in row.payload["devices"]]
        for row in outbox
        if row.topic in ("card.updated", "wallet_order.updated") and row.payload["version"] == 2
    }
    assert devices[("card.updated", card_ids["c-1"])] == ["ab" * 32]
    assert devices[("card.updated", card_ids["c-2"])] == []
    [wallet_order] = [key for topic, key in devices if topic == "wallet_order.updated"]
    assert devices[("wallet_order.updated", wallet_order)] == ["cd" * 32]


async def _registered(
    session: AsyncSession, customer: str, order_id: str
) -> list[Registration | WalletOrderRegistration]:
    """A phone holding the customer's card and the order's Wallet order."""
    card = await session.scalar(select(Card).where(Card.customer_id == customer))
    order = await session.scalar(select(WalletOrder).where(WalletOrder.order_id == order_id))
    assert card is not None
    assert order is not None
    return [
        Registration(device_library_identifier="phone", card_id=card.id, push_token="ab" * 32),
        WalletOrderRegistration(
            device_identifier="phone", wallet_order_id=order.id, push_token="cd" * 32
        ),
    ]


async def test_a_card_found_to_be_changed_stays_locked_until_commit(
    session: AsyncSession, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """The CLI and the admin API issue a card that may exist already, then change it: the card
    is locked from the moment it is found, so a change made in between waits instead of being
    overwritten. (SQLite's single writer lock serialises them anyway.)"""
    if session.bind.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite has one writer at a time")
    shop = await create_merchant(session, settings)
    card = await _apply(session, shop.merchant, _for("c-1", "A-1", "2026-11-20T10:00"))
    found, created = await issuing.find_or_issue(session, shop.merchant, "c-1", TEST_SECRET_KEY)
    assert (found.id, created) == (card.id, False)
    async with sessionmaker() as other:
        with pytest.raises(DBAPIError, match="could not obtain lock"):
            await other.execute(
                text("SELECT id FROM cards WHERE id = :id FOR UPDATE NOWAIT"), {"id": card.id}
            )
    await session.commit()


async def test_the_customers_time_zone_comes_with_their_orders_and_changes_nothing_shown(
    session: AsyncSession, settings: Settings
) -> None:
    shop = await create_merchant(session, settings)
    first = change("A-1", "confirmed", 1, "2026-11-20T10:00")
    first["order"]["customer"]["time_zone"] = "Europe/Prague"
    card = await _apply(session, shop.merchant, first)
    assert card.time_zone == "Europe/Prague"
    version = card.version
    # The same order, only the zone moved: kept, but the card shows nothing new.
    moved = change("A-1", "confirmed", 2, "2026-11-20T10:00")
    moved["order"]["customer"]["time_zone"] = "Asia/Tokyo"
    card = await _apply(session, shop.merchant, moved)
    assert (card.time_zone, card.version) == ("Asia/Tokyo", version)
    # An order without a zone keeps the one known.
    card = await _apply(session, shop.merchant, change("A-1", "shipped", 3, "2026-11-20T10:00"))
    assert card.time_zone == "Asia/Tokyo"


async def test_a_card_counts_each_delivered_order_once(
    session: AsyncSession, settings: Settings
) -> None:
    shop = await create_merchant(session, settings)
    m = shop.merchant
    await _apply(session, m, change("A-1", "shipped", 1, "2026-11-20T10:00"))
    card = await _apply(session, m, change("A-1", "delivered", 2, "2026-11-20T10:00"))
    assert delivered_orders(card.content) == 1
    # Its details change after delivery, then it is returned: still one delivered order.
    card = await _apply(session, m, change("A-1", "delivered", 3, "2026-11-20T10:00", number="X"))
    card = await _apply(session, m, change("A-1", "returned", 4, "2026-11-20T10:00"))
    assert delivered_orders(card.content) == 1
    # Picked up at a store counts too; a cancelled one never does.
    card = await _apply(session, m, change("A-2", "picked_up", 1, "2026-11-21T10:00"))
    card = await _apply(session, m, change("A-3", "cancelled", 1, "2026-11-22T10:00"))
    assert delivered_orders(card.content) == 2


def test_what_a_change_did_to_its_order() -> None:
    def taken(content: dict[str, Any], *payload: Any) -> Any:
        result = take_order_change(content, message(_Merchant(), change(*payload)))
        assert result is not None
        return result

    placed = taken({}, "A-1", "placed", 1, "2026-11-20T10:00")
    assert (placed.first_seen, placed.delivered, placed.undone) == (True, False, False)
    delivered = taken(placed.content, "A-1", "delivered", 2, "2026-11-20T10:00")
    assert (delivered.first_seen, delivered.delivered, delivered.undone) == (False, True, False)
    assert delivered.order["status"] == "delivered"
    returned = taken(delivered.content, "A-1", "returned", 3, "2026-11-20T10:00")
    assert (returned.delivered, returned.undone) == (False, True)
    refunded = taken(returned.content, "A-1", "refunded", 4, "2026-11-20T10:00")
    assert refunded.undone is False, "undone once, when it was returned"
    assert (
        take_order_change(
            refunded.content,
            message(_Merchant(), change("A-1", "delivered", 2, "2026-11-20T10:00")),
        )
        is None
    ), "a stale copy does nothing"


class _Merchant:
    id = uuid.uuid4()

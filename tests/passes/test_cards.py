"""What a card shows as its customer's orders move (``order.changed`` applied)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.queue import OutboxMessage
from services.core.settings import Settings
from services.passes.apple.document import current_order, pass_document
from services.passes.cards import apply_order_change, card_identity
from tests.factories import TEST_SECRET_KEY, create_merchant


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


async def _apply(session: AsyncSession, merchant: Any, payload: dict[str, Any]) -> Any:
    card = await apply_order_change(session, merchant, payload, TEST_SECRET_KEY)
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
    assert announced == ["card.updated", "card.updated"], "issued, then shipped"
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

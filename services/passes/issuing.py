"""Finding a customer's card, issuing it on first use, and the customer's details on it."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.cards import (
    LINK_TOKEN,
    CardIdentity,
    CardLinks,
    card_identity,
    open_link,
)
from services.core.errors import NotFound
from services.core.models import utcnow
from services.core.settings import Settings
from services.merchants import google_wallet as merchant_google
from services.merchants.models import Merchant
from services.passes.card_view import PREPARING
from services.passes.changes import announce, record_change, update_tag, whole_second
from services.passes.channel import count
from services.passes.designs import get_design
from services.passes.models import Card, PassDesign, Registration
from services.passes.registrations import registrations_by_card
from services.passes.schemas import CardIssue
from services.passes.texts import LOCALES

NO_SUCH_CARD = "no such card"

Customer = tuple[uuid.UUID, str]
"""(merchant id, the shop's customer id): whose card."""


def new_card(
    merchant: Merchant,
    design: PassDesign,
    data: CardIssue,
    identity: CardIdentity,
    content: dict[str, Any] | None = None,
) -> Card:
    return Card(
        id=uuid.uuid4(),
        merchant_id=merchant.id,
        pass_type_identifier=design.pass_type_identifier,
        customer_id=data.customer_id,
        customer_name=data.customer_name,
        locale=data.locale or merchant.default_locale,
        serial_number=identity.serial_number,
        authentication_token=secrets.token_urlsafe(24),
        link_token=identity.link_token,
        version=1,
        content=content or {},
        changed_at=whole_second(utcnow()),
    )


class CardsOfBatch:
    """The cards of many customers, found with one query and locked until commit (a consumer's
    batch): for each customer asked for, the card, or ``None`` while it has none. A card issued
    for one of them afterwards (``find_or_issue``) is added, so the next change finds it.

    With ``devices``, each found card's Apple registrations too, read with one more query: a
    card's row is locked while it is here and a new registration locks it first, so they stay
    what they were until commit."""

    def __init__(
        self,
        cards: dict[Customer, Card | None],
        devices: dict[uuid.UUID, list[Registration]] | None = None,
    ) -> None:
        self._cards = cards
        self._devices = devices

    def knows(self, customer: Customer) -> bool:
        return customer in self._cards

    def card_of(self, customer: Customer) -> Card | None:
        return self._cards[customer]

    def found(self) -> list[Card]:
        """The cards the customers have."""
        return [card for card in self._cards.values() if card is not None]

    def devices_of(self, card: Card) -> list[Registration] | None:
        """The card's registrations as read with the batch; ``None``: not read."""
        return None if self._devices is None else self._devices.get(card.id)

    def issued(self, card: Card, *, created: bool) -> None:
        """``card`` found or made after the batch's query (``created``: made now, so on no
        device)."""
        self._cards[card.merchant_id, card.customer_id] = card
        if created and self._devices is not None:
            self._devices[card.id] = []


async def lock_cards(
    session: AsyncSession, customers: Iterable[Customer], *, with_devices: bool = False
) -> CardsOfBatch:
    """The cards of ``customers``, with one query (``with_devices``: and their registrations,
    with another).

    They are locked until commit (in a fixed order), so another consumer cannot change them
    in between and have one of the two changes overwritten."""
    wanted = sorted(set(customers))
    found = (
        await session.scalars(
            select(Card)
            .where(tuple_(Card.merchant_id, Card.customer_id).in_(wanted))
            .order_by(Card.merchant_id, Card.customer_id)
            .with_for_update()
        )
    ).all()
    cards: dict[Customer, Card | None] = dict.fromkeys(wanted)
    cards.update({(card.merchant_id, card.customer_id): card for card in found})
    devices = await registrations_by_card(session, found) if with_devices else None
    return CardsOfBatch(cards, devices)


async def issue_card(
    session: AsyncSession, merchant: Merchant, data: CardIssue, secret_key: bytes
) -> Card:
    """The customer's card, made on first use; a later call updates name and language."""
    card, created = await find_or_issue(session, merchant, data.customer_id, secret_key)
    changed = update_customer(card, merchant, data)
    if created:
        await announce(session, card)  # Google inserts the object right away
    elif changed:
        await record_change(session, card)
    await session.flush()
    return card


async def find_or_issue(
    session: AsyncSession,
    merchant: Merchant,
    customer_id: str,
    secret_key: bytes,
    *,
    known: CardsOfBatch | None = None,
    locale: str | None = None,
    content: dict[str, Any] | None = None,
) -> tuple[Card, bool]:
    """The customer's card, and whether it was made just now.

    ``known``: cards looked up already (``lock_cards``); a customer among them is not looked
    up again, and a card issued now is added to them. ``locale`` and ``content``: what a card
    made now starts with (the merchant's default language and nothing shown, unless said).
    """
    customer = (merchant.id, customer_id)
    if known is not None and known.knows(customer):
        card = known.card_of(customer)
    else:
        card = await _find(session, merchant, customer_id)
    if card is not None:
        return card, False
    design = await get_design(session, merchant)  # refuse before a card that cannot be built
    identity = card_identity(secret_key, merchant.id, customer_id)
    data = CardIssue(customer_id=customer_id, locale=locale)
    card = new_card(merchant, design, data, identity, content)
    # The tag before the savepoint: a refused insert then cannot undo the counter's bump.
    card.update_tag = await update_tag(session, card.pass_type_identifier)
    try:
        async with session.begin_nested():
            session.add(card)
    except IntegrityError:  # issued concurrently by another request
        found = await _find(session, merchant, customer_id)
        assert found is not None
        card, created = found, False
    else:
        created = True
        count(session, merchant.id, "cards.issued")
    if known is not None:
        known.issued(card, created=created)
    return card, created


async def _find(session: AsyncSession, merchant: Merchant, customer_id: str) -> Card | None:
    """The customer's card, locked until commit (as ``lock_cards`` locks a batch's): whoever
    found it is about to change it, and a change made meanwhile would be overwritten."""
    return await session.scalar(
        select(Card)
        .where(Card.merchant_id == merchant.id, Card.customer_id == customer_id)
        .with_for_update()
    )


def update_customer(card: Card, merchant: Merchant, data: CardIssue) -> bool:
    """Take the customer's name and language; an unknown language means the shop's default."""
    changed = False
    if data.customer_name is not None and data.customer_name != card.customer_name:
        card.customer_name, changed = data.customer_name, True
    if data.locale is not None:
        locale = data.locale if data.locale in LOCALES else merchant.default_locale
        if locale != card.locale:
            card.locale, changed = locale, True
    return changed


async def card_behind_link(
    session: AsyncSession, link_token: str, secret_key: bytes, *, locale: str | None = None
) -> Card:
    """The card a link of ours names, issued now if its shop's event has not made it yet.

    A link is its card's stored token (every card issued so far, the HMAC links of those
    issued before links were sealed among them), or else (merchant, customer) sealed by
    ``contracts.cards.seal_customer``: then the card is found or issued exactly as the
    ``order.changed`` consumer would (same identity; the unique keys decide a race), showing
    "being prepared" in ``locale`` (the visitor's language, else the merchant's default) until
    the event arrives. Any other link (forged, mistyped, sealed under another key, naming no
    merchant of ours) is the same ``NotFound``: only we can seal a link, so an open one says
    nothing about whether its customer exists, and a link that does not open costs the
    same lookup and decryption whoever it names.
    """
    if not LINK_TOKEN.fullmatch(link_token):
        raise NotFound(NO_SUCH_CARD)
    card = await session.scalar(select(Card).where(Card.link_token == link_token))
    if card is not None:
        return card
    customer = open_link(secret_key, link_token)
    merchant = None if customer is None else await session.get(Merchant, customer.merchant_id)
    if customer is None or merchant is None:
        raise NotFound(NO_SUCH_CARD)
    card = await session.scalar(  # issued with its HMAC link, before links were sealed
        select(Card).where(
            Card.merchant_id == merchant.id, Card.customer_id == customer.customer_id
        )
    )
    if card is not None:
        return card
    card, created = await find_or_issue(
        session,
        merchant,
        customer.customer_id,
        secret_key,
        locale=locale,
        content={PREPARING: True},
    )
    if created:
        await announce(session, card)  # Google may insert the object before the event comes
    return card


def links_of(merchant: Merchant, card: Card, settings: Settings) -> CardLinks:
    """The card's links, the same the orders API answered the shop with."""
    return merchant_google.links_at(merchant, card, settings.base_url())

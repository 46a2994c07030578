"""Cards: issuing them, what each shows, and their signed bundles (built once per version)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.contracts.cards import LINK_TOKEN, CardIdentity, CardLinks, card_identity, card_links
from services.contracts.messages import (
    ApnsCertificate,
    ApnsToken,
    CardUpdated,
    Device,
    GoogleObject,
    OrderChanged,
)
from services.core import metrics
from services.core.errors import NotFound
from services.core.models import utcnow
from services.core.queue import publish
from services.core.settings import Settings
from services.core.transaction import Slot
from services.merchants import google_wallet as merchant_google
from services.merchants.models import Merchant
from services.passes import google_wallet
from services.passes.apple.document import pass_document, pass_strings_for
from services.passes.apple.pkpass import build_pkpass
from services.passes.card_view import Order, current_order
from services.passes.designs import DesignAssetCache, get_design
from services.passes.models import Card, PassBundle, PassDesign, Registration
from services.passes.registrations import next_update_tag, registrations_of
from services.passes.schemas import CardIssue
from services.passes.texts import LOCALES

_UPDATE_TAGS = Slot[dict[str, int]](
    "update tag of each pass type", dict, forget_at_savepoint_rollback=True
)
"""Taken in this transaction. A rolled-back savepoint may have undone the counter's bump, so
the tag is then taken again."""
_DESIGNS = Slot[dict[uuid.UUID, PassDesign]]("design of each merchant", dict)


def whole_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


async def record_change(session: AsyncSession, card: Card, *, notify: bool = False) -> None:
    """Every change of what a card shows: a new version, Last-Modified and update tag, and a
    ``card.updated`` message for the push service, all in the caller's transaction.

    Last-Modified has whole-second precision in HTTP, so it moves at least one second per
    change: a device holding the previous version never gets a 304 for the new one.
    """
    card.version += 1
    card.changed_at = max(whole_second(utcnow()), card.changed_at + timedelta(seconds=1))
    await announce(session, card, notify=notify)
    # The tag last: it locks the pass type's counter until commit, so keep that short.
    card.update_tag = await update_tag(session, card.pass_type_identifier)


async def update_tag(session: AsyncSession, pass_type: str) -> int:
    """One update tag per pass type and transaction: the counter is bumped (and locked until
    commit) by the first card changed, and every card changed with it shares the value. They
    commit together, so a device listing changes since a tag sees all of them or none."""
    tags = _UPDATE_TAGS.get(session)
    if pass_type not in tags:
        tags[pass_type] = await next_update_tag(session, pass_type)
    return tags[pass_type]


async def _design_of(session: AsyncSession, merchant_id: uuid.UUID) -> PassDesign:
    """The merchant's design, looked up once per transaction (a consumer's batch)."""
    designs = _DESIGNS.get(session)
    if merchant_id not in designs:
        design = await session.scalar(
            select(PassDesign).where(PassDesign.merchant_id == merchant_id)
        )
        assert design is not None, "a card exists only for a merchant with a design"
        designs[merchant_id] = design
    return designs[merchant_id]


async def announce(session: AsyncSession, card: Card, *, notify: bool = False) -> None:
    """Publish ``card.updated``: what push needs for the devices and the Google object.

    ``notify``: the status shown changed, so Google gets a message too (Apple's lock screen
    comes from the pass's ``changeMessage``).
    """
    design = await _design_of(session, card.merchant_id)
    devices = await registrations_of(session, card)
    merchant = await session.get_one(Merchant, card.merchant_id)
    google = google_object(merchant, design, card, notify=notify)
    publish(session, card_updated(card, design, devices, google), key=str(card.id))


async def announce_all(session: AsyncSession, merchant: Merchant) -> int:
    """Announce every card of a merchant again (after Google Wallet was switched on)."""
    found = (await session.scalars(select(Card).where(Card.merchant_id == merchant.id))).all()
    for card in found:
        await announce(session, card)
    return len(found)


def google_object(
    merchant: Merchant, design: PassDesign, card: Card, *, notify: bool
) -> GoogleObject | None:
    """The card's Google object as it should be now (None without Google Wallet)."""
    if not merchant_google.enabled(merchant):
        return None
    message = google_wallet.status_message(design, card) if notify else None
    return GoogleObject(
        issuer_id=str(merchant.google_issuer_id),
        object_id=merchant_google.card_object_id(merchant, card.serial_number),
        service_account_path=str(merchant.google_service_account_path),
        object=google_wallet.object_body(merchant, design, card),
        message=message,
    )


def card_updated(
    card: Card,
    design: PassDesign,
    devices: list[Registration],
    google: GoogleObject | None = None,
) -> CardUpdated:
    """What the push service needs to deliver a change, so that it reads no passes table."""
    apns: ApnsCertificate | ApnsToken = ApnsCertificate(
        certificate_path=design.certificate_path, key_path=design.key_path
    )
    if design.apns_token_key_path and design.apns_token_key_id:
        apns = ApnsToken(
            key_path=design.apns_token_key_path,
            key_id=design.apns_token_key_id,
            team_id=design.team_identifier,
        )
    return CardUpdated(
        card_id=card.id,
        merchant_id=card.merchant_id,
        serial_number=card.serial_number,
        pass_type_identifier=card.pass_type_identifier,
        version=card.version,
        apns=apns,
        devices=[
            Device(device_library_identifier=d.device_library_identifier, push_token=d.push_token)
            for d in devices
        ],
        google=google,
    )


Customer = tuple[uuid.UUID, str]
"""(merchant id, the shop's customer id): whose card."""


def new_card(
    merchant: Merchant, design: PassDesign, data: CardIssue, identity: CardIdentity
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
        content={},
        changed_at=whole_second(utcnow()),
    )


class CardsOfBatch:
    """The cards of many customers, found with one query and locked until commit (a consumer's
    batch): for each customer asked for, the card, or ``None`` while it has none. A card issued
    for one of them afterwards (``find_or_issue``) is added, so the next change finds it."""

    def __init__(self, cards: dict[Customer, Card | None]) -> None:
        self._cards = cards

    def knows(self, customer: Customer) -> bool:
        return customer in self._cards

    def card_of(self, customer: Customer) -> Card | None:
        return self._cards[customer]

    def issued(self, card: Card) -> None:
        self._cards[card.merchant_id, card.customer_id] = card


async def lock_cards(session: AsyncSession, customers: Iterable[Customer]) -> CardsOfBatch:
    """The cards of ``customers``, with one query.

    They are locked until commit (in a fixed order), so another consumer cannot change them
    in between and have one of the two changes overwritten."""
    wanted = sorted(set(customers))
    found = await session.scalars(
        select(Card)
        .where(tuple_(Card.merchant_id, Card.customer_id).in_(wanted))
        .order_by(Card.merchant_id, Card.customer_id)
        .with_for_update()
    )
    cards: dict[Customer, Card | None] = dict.fromkeys(wanted)
    cards.update({(card.merchant_id, card.customer_id): card for card in found})
    return CardsOfBatch(cards)


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
) -> tuple[Card, bool]:
    """The customer's card, and whether it was made just now.

    ``known``: cards looked up already (``lock_cards``); a customer among them is not looked
    up again, and a card issued now is added to them.
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
    card = new_card(merchant, design, CardIssue(customer_id=customer_id), identity)
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
    if known is not None:
        known.issued(card)
    return card, created


async def _find(session: AsyncSession, merchant: Merchant, customer_id: str) -> Card | None:
    return await session.scalar(
        select(Card).where(Card.merchant_id == merchant.id, Card.customer_id == customer_id)
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


async def get_card_by_link(session: AsyncSession, link_token: str) -> Card:
    card = None
    if LINK_TOKEN.fullmatch(link_token):
        card = await session.scalar(select(Card).where(Card.link_token == link_token))
    if card is None:
        raise NotFound("no such card")
    return card


def links_of(merchant: Merchant, card: Card, settings: Settings) -> CardLinks:
    """The card's links, the same the orders API answered the shop with."""
    google_save_url = merchant_google.save_link(merchant, card.serial_number)
    return card_links(card, settings.base_url(), google_save_url=google_save_url)


MAX_ORDERS_KEPT = 10


@dataclass(frozen=True, slots=True)
class OrdersTaken:
    """A card's content with a change applied, and what that did to what the card shows."""

    content: dict[str, Any]
    visible: bool
    """What the customer sees changed (an update of an order not shown changes nothing)."""
    status_moved: bool
    """The status shown is another one."""


def take_order_change(content: dict[str, Any], change: OrderChanged) -> OrdersTaken | None:
    """``content`` with the order's latest state, or ``None`` when the card has that order at
    this revision or later already (a redelivered or reordered message)."""
    orders = dict(content.get("orders") or {})
    known = orders.get(change.order.id)
    if known is not None and known["revision"] >= change.revision:
        return None
    view = change.order.model_dump(mode="json", exclude_none=True)
    orders[change.order.id] = {
        "id": change.order.id,
        "revision": change.revision,
        "status": change.order.status.value,
        "placed_at": change.placed_at.isoformat(),
        **{k: view.get(k) for k in ("number", "total", "shipping", "items", "links")},
    }
    newest = sorted(orders.values(), key=lambda o: o["placed_at"])[-MAX_ORDERS_KEPT:]
    shown = current_order(content)
    taken = {**content, "orders": {o["id"]: o for o in newest}}
    now_shown = current_order(taken)
    return OrdersTaken(
        content=taken,
        visible=_visible(now_shown) != _visible(shown),
        status_moved=(shown or {}).get("status") != (now_shown or {}).get("status"),
    )


def _visible(order: Order | None) -> Order | None:
    return None if order is None else {k: v for k, v in order.items() if k != "revision"}


async def apply_order_change(
    session: AsyncSession,
    merchant: Merchant,
    change: OrderChanged,
    secret_key: bytes,
    *,
    cards: CardsOfBatch | None = None,
) -> Card:
    """Put an order's latest state on its customer's card (``order.changed``).

    A change older than what the card has (a redelivered or reordered message) is ignored.
    ``cards``: the batch's cards locked already (``lock_cards``), so the card is not looked up.
    """
    customer = change.order.customer
    card, created = await find_or_issue(session, merchant, customer.id, secret_key, known=cards)
    changed = update_customer(
        card,
        merchant,
        CardIssue(customer_id=customer.id, customer_name=customer.name, locale=customer.locale),
    )
    status_moved = False
    if (taken := take_order_change(card.content, change)) is not None:
        card.content = taken.content
        changed = changed or taken.visible
        status_moved = taken.status_moved
    if created:
        await announce(session, card, notify=True)
    elif changed:
        await record_change(session, card, notify=status_moved)
    await session.flush()
    return card


@dataclass(frozen=True, slots=True)
class SignedPass:
    content: bytes
    version: int
    changed_at: datetime


_CACHED_CONTENT = select(PassBundle.content).where(
    PassBundle.card_id == bindparam("card_id"), PassBundle.version == bindparam("version")
)


async def cached_content(
    connection: AsyncConnection, card_id: uuid.UUID, version: int
) -> bytes | None:
    """The bundle built for exactly this version of a card, if any, without loading the card."""
    content: bytes | None = await connection.scalar(
        _CACHED_CONTENT, {"card_id": card_id, "version": version}
    )
    return content


class PassBuilder:
    """Builds a card's signed bundle at most once per version and keeps it in the database."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._assets = DesignAssetCache()

    async def signed_pass(self, session: AsyncSession, card: Card) -> SignedPass:
        bundle = await session.get(PassBundle, card.id)
        if bundle is not None and bundle.version == card.version:
            return SignedPass(bundle.content, card.version, card.changed_at)
        merchant = await session.get_one(Merchant, card.merchant_id)
        design = await get_design(session, merchant)
        assets = await self._assets.get(session, merchant, design)
        content = build_pkpass(
            pass_document(design, card, self._settings),
            pass_strings_for(design, card),
            assets.static,
            assets.signer,
        )
        metrics.PASSES_BUILT.inc()
        if bundle is None:
            try:
                async with session.begin_nested():
                    session.add(PassBundle(card_id=card.id, version=card.version, content=content))
            except IntegrityError:
                pass  # built concurrently by another request: same version, same pass
        elif bundle.version < card.version:
            bundle.version, bundle.content, bundle.built_at = card.version, content, utcnow()
        return SignedPass(content, card.version, card.changed_at)

"""The messages between services: one model per topic, the topic's name beside it.

A publisher hands ``publish`` the model; the consumer's handler receives the model, validated
from the stored payload (``services.core.queue``). A payload that does not validate is recorded
as failed with the reason, never retried: it would fail the same way every time.

``schema_version`` names the shape of a payload. Adding an optional field keeps the version
(consumers ignore fields they do not know, so publishers may be deployed first); renaming,
removing or changing the meaning of a field is a new version, which consumers must learn before
publishers send it.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from services.contracts.orders import OrderStatus
from services.contracts.shop_events import ShopEventIn
from services.core.queue.contract import Contract, Part

# order.changed ---------------------------------------------------------------------------


class Customer(Part):
    id: str
    name: str | None = None
    locale: str | None = None
    time_zone: str | None = None
    """An IANA zone name (``Europe/Prague``): the customer's quiet hours and calendar days."""


class Money(Part):
    amount: Decimal
    currency: str


class Shipping(Part):
    carrier: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    estimated_delivery: date | None = None
    cost: Money | None = None


class Item(Part):
    name: str
    quantity: int = 1
    product_id: str | None = None
    refill_after_days: int | None = None
    """The shop's own follow-up for the product: a refill reminder this many days after the
    order is delivered."""


class OrderLinks(Part):
    order: str | None = None
    tracking: str | None = None
    returns: str | None = None
    account: str | None = None


class OrderView(Part):
    """The order as the shop last described it (what it left out was kept from before)."""

    id: str
    status: OrderStatus
    number: str | None = None
    customer: Customer
    total: Money | None = None
    shipping: Shipping | None = None
    items: list[Item] | None = None
    links: OrderLinks | None = None


class OrderChanged(Contract):
    """orders -> passes: something a customer could see of an order changed (its status, or
    only its details: tracking, estimate, items, links). ``revision`` rises with every such
    change, so a card ignores a copy older than what it shows."""

    topic: ClassVar[str] = "order.changed"

    merchant_id: uuid.UUID
    order_id: uuid.UUID
    revision: int
    event_id: str
    status: OrderStatus
    previous_status: OrderStatus | None = None
    placed_at: datetime
    occurred_at: datetime
    order: OrderView


# card.updated ----------------------------------------------------------------------------


class ApnsCertificate(Part):
    """APNs authenticated by the merchant's pass type certificate (file paths, never keys)."""

    auth: Literal["certificate"] = "certificate"
    certificate_path: str
    key_path: str


class ApnsToken(Part):
    """APNs authenticated by a .p8 token key (a file path, never the key)."""

    auth: Literal["token"] = "token"
    key_path: str
    key_id: str
    team_id: str


ApnsAuth = Annotated[ApnsCertificate | ApnsToken, Field(discriminator="auth")]


class Device(Part):
    device_library_identifier: str
    push_token: str


class GoogleMessage(Part):
    """A message for the card's Google object; ``important`` ones may notify (3 a day).

    ``kind`` says whose budget it draws on: order statuses are never held back by marketing,
    so a marketing message notifies only while the day's budget leaves room for statuses."""

    id: str
    header: str
    body: str
    important: bool
    kind: Literal["status", "marketing"] = "status"
    display_until: datetime | None = None
    """The end of the message's ``displayInterval`` (an offer's ``valid_until``)."""


class GoogleObject(Part):
    """The card's Google Wallet object as it should be now, and the message to add, if any."""

    issuer_id: str
    object_id: str
    service_account_path: str
    object: dict[str, Any]
    message: GoogleMessage | None = None
    withdrawn_messages: tuple[str, ...] = ()
    """Ids of messages to take off the object (an offer expired, redeemed or cancelled)."""


class CardUpdated(Contract):
    """passes -> push: a card's new version, with everything push needs to deliver it (the
    devices' push tokens, how to authenticate to APNs, the Google object), so push reads no
    passes table."""

    topic: ClassVar[str] = "card.updated"

    card_id: uuid.UUID
    merchant_id: uuid.UUID
    serial_number: str
    pass_type_identifier: str
    version: int
    apns: ApnsAuth
    devices: list[Device]
    google: GoogleObject | None = None
    notification: Literal["status", "marketing"] | None = None
    """What this version announces on the lock screen, if anything (for the channel's stats)."""


# wallet_order.updated --------------------------------------------------------------------


class WalletOrderUpdated(Contract):
    """passes -> push: an Apple Wallet order's new version. Push tells each device of it once
    (topic = the order type id, an empty payload), through the path card versions take, so it
    reads no passes table; ``wallet_order_id`` is where a card's id is there (its targets and
    deliveries), and a token APNs rejects comes back as ``push_token.rejected`` with it."""

    topic: ClassVar[str] = "wallet_order.updated"

    wallet_order_id: uuid.UUID
    merchant_id: uuid.UUID
    order_type_identifier: str
    order_identifier: str
    version: int
    apns: ApnsCertificate
    """APNs authenticated by the Order Type ID certificate (file paths, never keys)."""
    devices: list[Device]


# push_token.rejected ---------------------------------------------------------------------


class PushTokenRejected(Contract):
    """push -> passes: APNs refused a token for good (410 Unregistered, 400 BadDeviceToken);
    drop that registration unless the device registered a new token since. ``card_id`` is a
    Wallet order's id when the push was a Wallet order's (``wallet_order.updated``)."""

    topic: ClassVar[str] = "push_token.rejected"

    card_id: uuid.UUID
    device_library_identifier: str
    push_token: str
    reason: str | None = None
    timestamp: int | None = None
    """When APNs says the token stopped being valid (milliseconds), with 410 only."""


# offers and campaigns -------------------------------------------------------------------


class OfferText(Part):
    title: str
    text: str


class OfferView(Part):
    """An offer as a card shows it. ``texts`` are the shop's own per locale and win over
    ``title``/``text``; ``created_at`` orders several offers (the newest on the front)."""

    id: str
    title: str
    text: str
    coupon_code: str | None = None
    url: str | None = None
    valid_from: datetime | None = None
    valid_until: datetime
    texts: dict[str, OfferText] = Field(default_factory=dict)
    notify: bool = True
    created_at: datetime


class OrderCriteria(Part):
    """What the orders service answers of a segment (all that are set must hold)."""

    ordered_within_days: int | None = None
    not_ordered_for_days: int | None = None
    min_orders: int | None = None
    min_total_spent: Money | None = None
    delivered_within_days: int | None = None

    def any(self) -> bool:
        return any(value is not None for value in self.model_dump().values())


class CardCriteria(Part):
    """What the passes service answers of a segment: the card's language and where it is."""

    locales: list[str] | None = None
    has_wallet: Literal["apple", "google", "any"] | None = None


class CampaignStarted(Contract):
    """offers -> orders: find the customers a segment's order criteria hold for, a page at a
    time. The orders service answers each page with a ``campaign.audience`` and, while more
    customers remain, publishes this message again with ``after`` set to the page's last
    customer id, so no transaction handles more than a page."""

    topic: ClassVar[str] = "campaign.started"

    campaign_id: uuid.UUID
    merchant_id: uuid.UUID
    offer: OfferView
    orders: OrderCriteria
    cards: CardCriteria
    after: str | None = None
    part: int = 1
    """The number of the audience part the page will be."""
    as_of: datetime | None = None
    """The time the criteria are evaluated at (the campaign's start), the same for every page;
    None: when the page is handled."""


class CampaignAudience(Contract):
    """offers or orders -> passes: put the offer on these customers' cards (those the card
    criteria hold for). ``customer_ids`` None means every card of the merchant: passes then
    takes a page of its cards after ``after`` and publishes the rest as a further part itself.
    ``parts`` is set on the last part only: how many parts the campaign's audience has."""

    topic: ClassVar[str] = "campaign.audience"

    campaign_id: uuid.UUID
    merchant_id: uuid.UUID
    offer: OfferView
    cards: CardCriteria = CardCriteria()
    customer_ids: list[str] | None = None
    after: str | None = None
    part: int
    parts: int | None = None


class CampaignProgress(Contract):
    """passes -> offers: what a part of a campaign's audience (``part``) or a later step for
    some of its cards (a deferred send that went out or expired: ``part`` None) did. Counts are
    deltas the campaign adds; ``deferred`` falls again when a held notification is sent or
    dropped, and skipped ``not_on_a_device`` when the card later lands on a device and the
    offer shows (silent ``later_on_a_device``). Reasons: silent ``capped``, ``not_requested``,
    ``later_on_a_device``; skipped ``opted_out``, ``not_on_a_device``, ``no_card``,
    ``expired``."""

    topic: ClassVar[str] = "campaign.progress"

    campaign_id: uuid.UUID
    merchant_id: uuid.UUID
    part: int | None = None
    parts: int | None = None
    targeted: int = 0
    updated: int = 0
    notified: int = 0
    silent: dict[str, int] = Field(default_factory=dict)
    deferred: int = 0
    skipped: dict[str, int] = Field(default_factory=dict)
    failed: int = 0


class OfferWithdrawn(Contract):
    """offers -> passes: take an offer off one customer's card (redeemed) or off every card
    (cancelled), quietly. For every card passes works a page at a time, publishing the rest
    again with ``after`` set."""

    topic: ClassVar[str] = "offer.withdrawn"

    merchant_id: uuid.UUID
    offer_id: str
    reason: Literal["cancelled", "redeemed"]
    customer_id: str | None = None
    after: str | None = None


class MarketingConsentSet(Contract):
    """offers -> passes: the shop recorded the customer's consent to marketing on the card
    (``POST /v1/customers/{id}/marketing``). The latest ``at`` wins over the customer's own
    choice on the card's page and over earlier records."""

    topic: ClassVar[str] = "marketing.consent"

    merchant_id: uuid.UUID
    customer_id: str
    consent: bool
    at: datetime


# feedback --------------------------------------------------------------------------------

PROMOTERS_FROM = 9
"""Scores from 9 up are promoters (a review invitation follows); NPS counts them."""
DETRACTORS_UP_TO = 6
"""Scores up to 6 are detractors ("we're sorry: talk to us" follows); 7 and 8 are passives."""


class FeedbackGiven(Contract):
    """passes -> offers: the customer rated a delivered order on the card's page. Offers keeps
    one rating per (merchant, customer, order): the latest ``at`` wins, whichever path it came
    by."""

    topic: ClassVar[str] = "feedback.given"

    merchant_id: uuid.UUID
    customer_id: str
    order_id: str
    score: Annotated[int, Field(ge=0, le=10)]
    text: str | None = None
    at: datetime


class FeedbackRecorded(Contract):
    """offers -> passes: the shop recorded a rating through the API
    (``POST /v1/customers/{id}/feedback``), so the card's back shows the same follow-up as
    after a rating on the card's page (a review invitation for 9-10, "talk to us" for 0-6)."""

    topic: ClassVar[str] = "feedback.recorded"

    merchant_id: uuid.UUID
    customer_id: str
    order_id: str
    score: Annotated[int, Field(ge=0, le=10)]
    at: datetime


# google_wallet.changed -------------------------------------------------------------------


class GoogleWalletChanged(Contract):
    """push -> passes: the customer saved the card's Google object or removed it (a verified
    callback), so passes knows which cards are on a device without reading push's tables."""

    topic: ClassVar[str] = "google_wallet.changed"

    card_id: uuid.UUID
    saved: bool
    at: datetime


# channel.counted -------------------------------------------------------------------------


class ChannelCounted(Contract):
    """passes or push -> offers: what happened on a merchant's cards on one day (UTC), added to
    the channel's stats. One message per handled batch, never one per card. Keys: ``cards.issued``,
    ``apple.registered``, ``apple.unregistered``, ``google.saved``, ``google.removed``,
    ``notifications.status``, ``notifications.marketing``, ``suppressed.<reason>``,
    ``journeys.<journey>`` (a journey's message notified), ``events.no_effect``."""

    topic: ClassVar[str] = "channel.counted"

    merchant_id: uuid.UUID
    day: date
    counts: dict[str, int]


# cards.refreshed -------------------------------------------------------------------------


class CardsRefreshed(Contract):
    """passes -> passes: every card of a merchant gets a new version, silently (no
    ``changeMessage`` field changes), after the design changed what all of them carry (the
    store locations). A page of cards per message; the rest follows with ``after`` set to the
    page's last customer id, so no transaction handles more than a page."""

    topic: ClassVar[str] = "cards.refreshed"

    merchant_id: uuid.UUID
    reason: Literal["locations"]
    after: str | None = None


# shop.event -------------------------------------------------------------------------------


class ShopEventReceived(Contract):
    """offers -> passes: a shop event accepted (``POST /v1/events``), published in the
    transaction that stored it, for the journeys it triggers on the customer's card. Key: the
    customer, so one customer's events arrive in their order."""

    topic: ClassVar[str] = "shop.event"

    merchant_id: uuid.UUID
    event: ShopEventIn
    received_at: datetime


CONTRACTS: tuple[type[Contract], ...] = (
    OrderChanged,
    CardUpdated,
    WalletOrderUpdated,
    PushTokenRejected,
    CampaignStarted,
    CampaignAudience,
    CampaignProgress,
    OfferWithdrawn,
    MarketingConsentSet,
    GoogleWalletChanged,
    ChannelCounted,
    FeedbackGiven,
    FeedbackRecorded,
    CardsRefreshed,
    ShopEventReceived,
)

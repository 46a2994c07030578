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
from services.core.queue.contract import Contract, Part

# order.changed ---------------------------------------------------------------------------


class Customer(Part):
    id: str
    name: str | None = None
    locale: str | None = None


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
    """A message for the card's Google object; ``important`` ones may notify (3 a day)."""

    id: str
    header: str
    body: str
    important: bool


class GoogleObject(Part):
    """The card's Google Wallet object as it should be now, and the message to add, if any."""

    issuer_id: str
    object_id: str
    service_account_path: str
    object: dict[str, Any]
    message: GoogleMessage | None = None


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


# push_token.rejected ---------------------------------------------------------------------


class PushTokenRejected(Contract):
    """push -> passes: APNs refused a token for good (410 Unregistered, 400 BadDeviceToken);
    drop that registration unless the device registered a new token since."""

    topic: ClassVar[str] = "push_token.rejected"

    card_id: uuid.UUID
    device_library_identifier: str
    push_token: str
    reason: str | None = None
    timestamp: int | None = None
    """When APNs says the token stopped being valid (milliseconds), with 410 only."""


CONTRACTS: tuple[type[Contract], ...] = (OrderChanged, CardUpdated, PushTokenRejected)

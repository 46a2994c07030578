"""The orders API at the edge: what e-shops send and what they get back."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    Field,
    HttpUrl,
)

from services.contracts.cards import CardLinks
from services.contracts.orders import OrderStatus
from services.contracts.shop_api import BatchIn as BatchIn
from services.contracts.shop_api import BatchItem as BatchItem
from services.contracts.shop_api import BatchResult as BatchResult
from services.contracts.shop_api import Customer, Edge, EventIn, Money, Text
from services.contracts.wallet_orders import WalletOrderLinks
from services.core.text import Identifier, PlainText
from services.merchants.journeys import RefillDays


class Shipping(Edge):
    carrier: Text | None = None
    tracking_number: Annotated[PlainText, Field(min_length=1, max_length=100)] | None = None
    tracking_url: HttpUrl | None = None
    estimated_delivery: date | None = None
    cost: Money | None = None


class Item(Edge):
    name: Text
    quantity: Annotated[int, Field(ge=1, le=100_000)] = 1
    product_id: Identifier | None = Field(
        default=None,
        description="The shop's product id: a later order with the same product cancels its"
        " pending refill reminder (without one, the item's name stands for the product).",
    )
    refill_after_days: RefillDays | None = Field(
        default=None,
        description="Remind the customer to buy it again this many days after the order"
        " is delivered (the refill journey; the merchant's per-product setting otherwise).",
    )


class OrderLinks(Edge):
    order: HttpUrl | None = None
    tracking: HttpUrl | None = None
    returns: HttpUrl | None = None
    account: HttpUrl | None = None


class OrderSnapshot(Edge):
    id: Identifier
    number: Annotated[PlainText, Field(min_length=1, max_length=50)] | None = None
    status: OrderStatus
    customer: Customer
    total: Money | None = None
    shipping: Shipping | None = None
    items: Annotated[list[Item], Field(max_length=200)] | None = None
    links: OrderLinks | None = None


class OrderEventIn(EventIn):
    order: OrderSnapshot


class HistoryEntry(BaseModel):
    event_id: str
    status: OrderStatus
    occurred_at: datetime
    received_at: datetime
    outcome: str = Field(description="applied, same, stale (late or a step back), or refused")
    connector: str | None = Field(
        default=None, description="The platform connector whose webhook made it (else the API)"
    )
    delivery: str | None = Field(
        default=None, description="The connector's delivery that made it (its id at the platform)"
    )


class OrderRead(BaseModel):
    id: str
    number: str | None
    status: OrderStatus
    customer: dict[str, Any]
    total: dict[str, Any] | None = None
    shipping: dict[str, Any] | None = None
    items: list[dict[str, Any]] | None = None
    links: dict[str, Any] | None = None
    placed_at: datetime
    updated_at: datetime
    history: list[HistoryEntry] | None = None


class EventAccepted(BaseModel):
    event_id: str
    duplicate: bool
    order: OrderRead
    card: CardLinks
    wallet_order: WalletOrderLinks | None = None
    """The order in Apple Wallet (its package's link, Apple Pay's order details), or null
    while the merchant has Wallet Orders off."""

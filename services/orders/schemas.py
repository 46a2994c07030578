"""The orders API at the edge: what e-shops send and what they get back."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, HttpUrl

from services.contracts.cards import CardLinks
from services.contracts.orders import OrderStatus
from services.merchants.schemas import Locale

Text = Annotated[str, Field(min_length=1, max_length=200)]
Identifier = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]


class Edge(BaseModel):
    """Unknown fields are ignored: shops post their own order objects, often with more in them."""

    model_config = ConfigDict(extra="ignore")


class Money(Edge):
    amount: Annotated[Decimal, Field(max_digits=14, decimal_places=2)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class Customer(Edge):
    id: Identifier
    name: Text | None = None
    locale: Locale | None = None


class Shipping(Edge):
    carrier: Text | None = None
    tracking_number: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    tracking_url: HttpUrl | None = None
    estimated_delivery: date | None = None
    cost: Money | None = None


class Item(Edge):
    name: Text
    quantity: Annotated[int, Field(ge=1, le=100_000)] = 1


class OrderLinks(Edge):
    order: HttpUrl | None = None
    tracking: HttpUrl | None = None
    returns: HttpUrl | None = None
    account: HttpUrl | None = None


class OrderSnapshot(Edge):
    id: Identifier
    number: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    status: OrderStatus
    customer: Customer
    total: Money | None = None
    shipping: Shipping | None = None
    items: Annotated[list[Item], Field(max_length=200)] | None = None
    links: OrderLinks | None = None


class OrderEventIn(Edge):
    id: Identifier = Field(description="Unique per merchant: the idempotency key.")
    occurred_at: AwareDatetime = Field(description="When it happened at the shop (RFC 3339).")
    order: OrderSnapshot


class HistoryEntry(BaseModel):
    event_id: str
    status: OrderStatus
    occurred_at: datetime
    received_at: datetime
    outcome: str = Field(description="applied, same, stale (late or a step back), or refused")


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


class BatchIn(Edge):
    events: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=500)]


class BatchItem(BaseModel):
    index: int
    status: int
    body: dict[str, Any]


class BatchResult(BaseModel):
    results: list[BatchItem]

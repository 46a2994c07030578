"""The orders API at the edge: what e-shops send and what they get back."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    WithJsonSchema,
)

from services.contracts.cards import CardLinks
from services.contracts.orders import OrderStatus
from services.core.models import utcnow
from services.core.text import Identifier, PlainText, TimeZoneName
from services.merchants.schemas import Locale

Text = Annotated[PlainText, Field(min_length=1, max_length=200)]

EARLIEST_OCCURRED_AT = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_OCCURRED_AHEAD = timedelta(days=365)
_RFC_3339_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]")


def _rfc_3339(value: object) -> object:
    """A string such as ``2026-11-23T10:15:00Z``, not a Unix timestamp (pydantic would take one)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC_3339_DATE.match(value):
        raise ValueError("an RFC 3339 date-time with an offset, such as 2026-11-23T10:15:00Z")
    return value


def _sane(value: datetime) -> datetime:
    """Within 2000-01-01 and a year from now: far outside is a mistake (and may not convert)."""
    if not EARLIEST_OCCURRED_AT <= value <= utcnow() + LATEST_OCCURRED_AHEAD:
        raise ValueError("a date-time from 2000-01-01 to a year from now")
    return value


OccurredAt = Annotated[AwareDatetime, BeforeValidator(_rfc_3339), AfterValidator(_sane)]


class Edge(BaseModel):
    """Unknown fields are ignored: shops post their own order objects, often with more in them."""

    model_config = ConfigDict(extra="ignore")


AMOUNT_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": "^-?[0-9]{1,12}(?:\\.[0-9]{1,2})?$"},
        {"type": "integer", "minimum": -999_999_999_999, "maximum": 999_999_999_999},
        {
            "type": "number",
            "multipleOf": 0.01,
            "minimum": -999_999_999_999.99,
            "maximum": 999_999_999_999.99,
        },
    ]
}
"""At most 14 digits, 2 of them after the point: a decimal string (best), or a JSON number."""


class Money(Edge):
    amount: Annotated[
        Decimal, Field(max_digits=14, decimal_places=2), WithJsonSchema(AMOUNT_SCHEMA)
    ]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class Customer(Edge):
    id: Identifier
    name: Text | None = None
    locale: Locale | None = None
    time_zone: TimeZoneName | None = None


class Shipping(Edge):
    carrier: Text | None = None
    tracking_number: Annotated[PlainText, Field(min_length=1, max_length=100)] | None = None
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
    number: Annotated[PlainText, Field(min_length=1, max_length=50)] | None = None
    status: OrderStatus
    customer: Customer
    total: Money | None = None
    shipping: Shipping | None = None
    items: Annotated[list[Item], Field(max_length=200)] | None = None
    links: OrderLinks | None = None


class OrderEventIn(Edge):
    id: Identifier = Field(description="Unique per merchant: the idempotency key.")
    occurred_at: OccurredAt = Field(
        description="When it happened at the shop: RFC 3339 with an offset, from 2000-01-01 to a"
        " year from now."
    )
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

"""The offers API at the edge: what a shop sends and what it gets back.

Unknown fields are refused here (unlike order events, which carry the shop's own objects): a
misspelt ``notfy`` or segment key must not quietly send a campaign to the wrong people.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    StrictBool,
    WithJsonSchema,
    model_validator,
)

from services.core.clock import clock
from services.core.text import Identifier, PlainText
from services.merchants.schemas import Locale
from services.offers.feedback.schemas import Nps

COUPON_PATTERN = r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$"
"""Printable ASCII, inner spaces allowed: what every barcode symbology and till can carry."""
MAX_CUSTOMER_IDS = 10_000
"""Customer ids in one call; more go in further calls to ``POST /v1/campaigns/{id}/audience``."""
LONGEST_VALIDITY = timedelta(days=366)

CouponCode = Annotated[str, Field(min_length=1, max_length=64, pattern=COUPON_PATTERN)]
Title = Annotated[PlainText, Field(min_length=1, max_length=60)]
Body = Annotated[PlainText, Field(min_length=1, max_length=500)]
Days = Annotated[int, Field(ge=1, le=3650)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Money(Strict):
    amount: Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class Segment(Strict):
    """Who gets the offer: every criterion given must hold. The order criteria are answered by
    the orders service, ``locales`` and ``has_wallet`` by the cards (passes)."""

    ordered_within_days: Days | None = None
    not_ordered_for_days: Days | None = None
    min_orders: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    min_total_spent: Money | None = None
    locales: Annotated[list[Locale], Field(min_length=1, max_length=20)] | None = None
    has_wallet: Literal["apple", "google", "any"] | None = None
    delivered_within_days: Days | None = None

    @model_validator(mode="after")
    def _some_criterion(self) -> Segment:
        if not self.model_fields_set:
            raise ValueError('name at least one criterion ("has_wallet": "any" for every card)')
        return self


def _distinct(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _at_most_a_call(value: Any) -> Any:
    if isinstance(value, list) and len(value) > MAX_CUSTOMER_IDS:
        raise ValueError(_TOO_MANY)
    return value


CustomerIds = Annotated[
    list[Identifier],
    BeforeValidator(_at_most_a_call),
    Field(
        min_length=1,
        max_length=MAX_CUSTOMER_IDS,
        description=f"At most {MAX_CUSTOMER_IDS:,} per call: send more to "
        "POST /v1/campaigns/{campaign_id}/audience, up to as many per call.",
    ),
    AfterValidator(_distinct),
]


class Target(Strict):
    """Exactly one of ``customer_ids`` and ``segment``."""

    customer_ids: CustomerIds | None = None
    segment: Segment | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Target:
        if (self.customer_ids is None) == (self.segment is None):
            raise ValueError("give either customer_ids or segment")
        return self


_TOO_MANY = (
    f"at most {MAX_CUSTOMER_IDS:,} customer_ids in one call: create the offer with the first "
    f"{MAX_CUSTOMER_IDS:,}, then send the rest to POST /v1/campaigns/{{campaign_id}}/audience "
    f"in calls of up to {MAX_CUSTOMER_IDS:,} each"
)


class OfferTextIn(Strict):
    title: Title
    text: Body


def _ahead(value: datetime) -> datetime:
    now = clock.now()
    if value <= now:
        raise ValueError("must be in the future")
    if value > now + LONGEST_VALIDITY:
        raise ValueError("at most a year ahead")
    return value


class OfferIn(Strict):
    id: Identifier = Field(description="Unique per merchant: the idempotency key.")
    title: Title
    text: Body
    coupon_code: CouponCode | None = None
    url: HttpUrl | None = None
    valid_from: AwareDatetime | None = Field(
        None, description="When the campaign starts (now if left out or past)."
    )
    valid_until: Annotated[AwareDatetime, AfterValidator(_ahead)] = Field(
        description="When the offer leaves the cards: in the future, at most a year ahead."
    )
    target: Target
    texts: dict[Locale, OfferTextIn] = Field(
        default_factory=dict, max_length=20, description="The offer's own words per language."
    )
    notify: StrictBool = True

    @model_validator(mode="after")
    def _valid_from_first(self) -> OfferIn:
        if self.valid_from is not None and self.valid_from >= self.valid_until:
            raise ValueError("valid_from must come before valid_until")
        return self


class AudienceIn(Strict):
    customer_ids: CustomerIds


class TargetRead(BaseModel):
    """What the offer targets: a segment, or how many customer ids were given."""

    customers: int | None = None
    segment: dict[str, Any] | None = None


class OfferRead(BaseModel):
    id: str
    title: str
    text: str
    coupon_code: str | None
    url: str | None
    valid_from: datetime | None
    valid_until: datetime
    texts: dict[str, dict[str, str]]
    notify: bool
    target: TargetRead
    state: Literal["scheduled", "active", "expired", "cancelled"]
    redemptions: int
    campaign_id: uuid.UUID
    created_at: datetime
    cancelled_at: datetime | None


class OfferAccepted(OfferRead):
    duplicate: bool


class CampaignRead(BaseModel):
    id: uuid.UUID
    offer_id: str
    state: Literal["scheduled", "running", "done", "cancelled"]
    starts_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    parts: int | None = Field(description="Audience parts, once known.")
    parts_done: int
    targeted: int
    updated: int
    notified: int
    silent: dict[str, int] = Field(description="Updated without a notification, by reason.")
    deferred: int = Field(description="Held for quiet hours, not yet sent.")
    skipped: dict[str, int] = Field(description="Not updated, by reason.")
    failed: int


class OfferPage(BaseModel):
    items: list[OfferRead]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; None: last.")


class CampaignPage(BaseModel):
    items: list[CampaignRead]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; None: last.")


class RedemptionIn(Strict):
    customer_id: Identifier
    code: Annotated[str, Field(min_length=1, max_length=64)]


class RedemptionRead(BaseModel):
    offer_id: str
    customer_id: str
    code: str
    redeemed_at: datetime
    redemptions: int


class ConsentIn(Strict):
    consent: StrictBool


class ConsentRead(BaseModel):
    customer_id: str
    consent: bool
    at: datetime


class Stats(BaseModel):
    from_: date = Field(alias="from")
    to: date
    cards: dict[str, int]
    apple: dict[str, int]
    google: dict[str, int]
    notifications: dict[str, int]
    suppressed: dict[str, int]
    nps: Nps = Field(description="The ratings given in the period (GET /v1/feedback).")
    journeys: dict[str, int] = Field(
        description="Journey messages that notified, by journey (welcome, cart_abandoned, ...)."
    )
    events: dict[str, int] = Field(
        description="Shop events by what they did: no_effect (an unknown customer, nothing due)."
    )
    days: list[dict[str, Any]] = Field(description="Per day (UTC) with any count: its counts.")

    model_config = ConfigDict(populate_by_name=True)


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) a cursor continues after; ValueError if it is none of ours."""
    try:
        when, _, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(when), uuid.UUID(row_id)
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("not a cursor of ours: pass next_cursor as it came") from exc
    except ValueError:
        raise ValueError("not a cursor of ours: pass next_cursor as it came") from None


def _cursor(value: str) -> str:
    decode_cursor(value)
    return value


Cursor = Annotated[str, Field(max_length=200), AfterValidator(_cursor)]


def _iso_day(value: object) -> object:
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("a day as YYYY-MM-DD")
    return value


Day = Annotated[
    date,
    BeforeValidator(_iso_day),
    WithJsonSchema({"type": "string", "format": "date"}),
]
"""A calendar day as ``YYYY-MM-DD`` only (pydantic would also take a number of days since 1970)."""

"""What every write of the shop API (order events, shop events) shares at the edge: unknown
fields ignored, the RFC 3339 time of the event, the customer it is about, the body hash behind
idempotency, and the batch of up to 500 answered one item at a time."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Protocol, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.errors import Conflict, PasspostError, invalid_body
from services.core.models import utcnow
from services.core.text import Identifier, Locale, PlainText, TimeZoneName

Text = Annotated[PlainText, Field(min_length=1, max_length=200)]

EARLIEST_OCCURRED_AT = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_OCCURRED_AHEAD = timedelta(days=365)
_RFC_3339_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]")
BATCH_SIZE = 500
E = TypeVar("E", bound=BaseModel)


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
"""An RFC 3339 date-time with an offset, from 2000-01-01 to a year from now."""


class Edge(BaseModel):
    """Unknown fields are ignored: shops post their own objects, often with more in them."""

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


class EventIn(Edge):
    """What every event of the shop API has: its id (the idempotency key) and its time."""

    id: Identifier = Field(description="Unique per merchant: the idempotency key.")
    occurred_at: OccurredAt = Field(
        description="When it happened at the shop: RFC 3339 with an offset, from 2000-01-01 to a"
        " year from now."
    )


class Customer(Edge):
    """The shop's customer an event is about: the card's holder."""

    id: Identifier
    name: Text | None = None
    locale: Locale | None = None
    time_zone: TimeZoneName | None = None


def body_hash(event: BaseModel) -> str:
    """The event as validated, canonically: the same body under the same id is a replay."""
    canonical = json.dumps(event.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class BatchIn(Edge):
    events: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=BATCH_SIZE)]


class BatchItem(BaseModel):
    index: int
    status: int
    body: dict[str, Any]


class BatchResult(BaseModel):
    results: list[BatchItem]


@dataclass(frozen=True, slots=True)
class Answer:
    """What an event id was answered: a replay with the same body gets it again."""

    event_id: str
    body_hash: str
    response: dict[str, Any]


def replay(seen: Answer, digest: str, model: type[E]) -> E | PasspostError:
    """The answer an id had, for the same body again (``duplicate`` true); another body under
    the same id is a 409."""
    if not hmac.compare_digest(seen.body_hash, digest):
        return Conflict(
            f"event {seen.event_id!r} was received before with a different body",
            event_id=seen.event_id,
        )
    return model.model_validate({**seen.response, "duplicate": True})


class StoredEvent(Protocol):
    """A table of received events: what ``answers`` reads of it."""

    merchant_id: Any
    event_id: Any
    body_hash: Any
    response: Any


async def answers(
    session: AsyncSession, table: type[StoredEvent], merchant_id: uuid.UUID, event_ids: set[str]
) -> dict[str, Answer]:
    """The answers given before to these event ids of the merchant, by id."""
    if not event_ids:
        return {}
    rows = await session.execute(
        select(table.event_id, table.body_hash, table.response).where(
            table.merchant_id == merchant_id, table.event_id.in_(event_ids)
        )
    )
    return {row.event_id: Answer(row.event_id, row.body_hash, row.response) for row in rows}


async def answer_batch(
    batch: BatchIn,
    validate: Callable[[Any], E],
    ingest: Callable[[list[E]], Awaitable[Sequence[BaseModel | PasspostError]]],
    accepted: int = 202,
) -> BatchResult:
    """Each item validated (``validate``: an invalid one is its own 422 with the field path),
    the valid ones ingested together, and every item answered in its place."""
    results: dict[int, BatchItem] = {}
    valid: list[tuple[int, E]] = []
    for index, raw in enumerate(batch.events):
        try:
            valid.append((index, validate(raw)))
        except ValidationError as exc:
            body = invalid_body("the event is invalid", exc.errors())
            results[index] = BatchItem(index=index, status=422, body=body)
    outcomes = await ingest([event for _, event in valid])
    for (index, _), outcome in zip(valid, outcomes, strict=True):
        if isinstance(outcome, PasspostError):
            results[index] = BatchItem(
                index=index, status=outcome.status_code, body=outcome.to_dict()
            )
        else:
            body = outcome.model_dump(mode="json")
            results[index] = BatchItem(index=index, status=accepted, body=body)
    return BatchResult(results=[results[index] for index in range(len(batch.events))])

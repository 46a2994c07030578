"""What every connector shares: the platforms, what became of a delivery, and the pieces of an
order event that each platform's mapping builds from its own payload."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from services.contracts.orders import CARD_LANGUAGES, OrderStatus
from services.orders.schemas import OrderEventIn


class Platform(StrEnum):
    shopify = "shopify"
    woocommerce = "woocommerce"
    shoptet = "shoptet"


class Outcome(StrEnum):
    """What became of a delivery (``GET /v1/connectors/events``, the metric's label)."""

    applied = "applied"
    """It moved the order (or made it)."""
    same = "same"
    """The order's status again: details may have changed."""
    stale = "stale"
    """Older than what the order shows, or a step back: kept in the history, status untouched."""
    duplicate = "duplicate"
    """The same order state was received before (from another delivery)."""
    redelivered = "redelivered"
    """The same delivery again (a platform's retry): answered, never recorded twice."""
    ignored = "ignored"
    """Nothing for the card in it (a deleted order, a draft, a partial refund)."""
    unmappable = "unmappable"
    """We could not make an order event of it (unknown status, missing customer): see reason."""
    refused = "refused"
    """The state machine refused it (an order leaving a final status): see reason."""
    pending = "pending"
    """Shoptet: the order is still to be fetched."""
    failed = "failed"
    """Shoptet: the order could not be fetched, however often we tried: see reason."""


@dataclass(frozen=True, slots=True)
class Received:
    """What a verified delivery says before it is mapped."""

    topic: str
    dedupe: str
    """What makes a delivery the same one again, in the platform's own terms."""
    delivery: str | None
    order_ref: str | None
    occurred_at: datetime | None
    payload: Any


@dataclass(frozen=True, slots=True)
class Skip:
    """A delivery that makes no order event, and why."""

    outcome: Outcome
    reason: str


@dataclass(frozen=True, slots=True)
class KnownOrder:
    """What passpost already has of the order a delivery names (fulfillments and refunds carry
    no customer and no total)."""

    customer_id: str
    total: Decimal | None


Mapped = OrderEventIn | Skip

_EVENT_ID = re.compile(r"^[\x21-\x7e]{1,200}$")


def event_id(platform: Platform, *parts: object) -> str:
    """The order event's id: readable when it can be, a digest when the parts are too long or
    not printable ASCII (the orders API's ``Identifier``)."""
    readable = ":".join([platform.value, *map(str, parts)])
    if _EVENT_ID.fullmatch(readable):
        return readable
    return f"{platform.value}:{hashlib.sha256(readable.encode()).hexdigest()[:40]}"


def dedupe_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def card_language(locale: object) -> str | None:
    """A platform's customer locale (``de-AT``, ``cs_CZ``) reduced to a language a card speaks;
    None lets the merchant's default apply."""
    if not isinstance(locale, str):
        return None
    language = re.split(r"[-_]", locale.strip(), maxsplit=1)[0].lower()
    return language if language in CARD_LANGUAGES else None


def status_for(
    key: str, defaults: Mapping[str, OrderStatus | None], overrides: Mapping[str, str]
) -> OrderStatus | Skip:
    """A platform status through the merchant's override, else the platform's table."""
    if key in overrides:
        return OrderStatus(overrides[key])
    if key not in defaults:
        return Skip(Outcome.unmappable, f"unknown status {key!r}: map it with connectors map")
    status = defaults[key]
    if status is None:
        return Skip(Outcome.ignored, f"status {key!r} is not shown on the card")
    return status


def parse_time(value: object) -> datetime | None:
    """A platform's timestamp (ISO 8601, with an offset, or naive meaning UTC), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def money(amount: object, currency: object) -> dict[str, str] | None:
    """A total as the orders API takes it, when the platform gave a usable one."""
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
        return None
    try:
        value = Decimal(str(amount)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return None
    return {"amount": str(value), "currency": currency}


def text(value: object, limit: int = 200) -> str | None:
    """A platform's free text fit for a card: one line, at most ``limit`` characters."""
    if not isinstance(value, str):
        return None
    line = re.sub(r"[\x00-\x1f\x7f\ud800-\udfff]+", " ", value).strip()
    return line[:limit] or None


def fields(value: object) -> dict[str, Any]:
    """A payload's object, or an empty one where the platform sent something else."""
    return value if isinstance(value, dict) else {}


def full_name(*parts: object) -> str | None:
    return text(" ".join(p for p in parts if isinstance(p, str) and p.strip()))


def items(lines: object, name: str = "name", quantity: str = "quantity") -> list[dict[str, Any]]:
    """Line items as the orders API takes them (a name and a whole quantity of at least 1)."""
    found: list[dict[str, Any]] = []
    for line in lines if isinstance(lines, list) else []:
        if not isinstance(line, dict) or (label := text(line.get(name))) is None:
            continue
        try:
            count = max(1, min(100_000, int(Decimal(str(line.get(quantity, 1))))))
        except (InvalidOperation, ValueError):
            count = 1
        found.append({"name": label, "quantity": count})
    return found[:200]


def http_url(value: object) -> str | None:
    if isinstance(value, str) and re.match(r"^https?://[^\s]+$", value) and len(value) <= 2000:
        return value
    return None


def order_event(event: str, occurred_at: datetime | None, order: dict[str, Any]) -> Mapped:
    """The order event a delivery makes, validated as the orders API validates one: what it
    refuses is unmappable, with the fields named."""
    if occurred_at is None:
        return Skip(Outcome.unmappable, "the payload says not when it happened")
    try:
        return OrderEventIn.model_validate(
            {"id": event, "occurred_at": occurred_at.isoformat(), "order": _pruned(order)}
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]
        )
        return Skip(Outcome.unmappable, f"not a valid order event: {problems}")


def _pruned(value: Any) -> Any:
    """Without the Nones a mapping leaves where a platform had nothing: the orders API keeps
    what an event leaves out."""
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in kept.items() if v != {}}
    return value

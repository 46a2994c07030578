"""The notification policy: whether a marketing message on a card notifies the customer now,
goes silently, waits for the end of the quiet hours, or is not shown at all.

One place, pure: the caller reads the clock and the card's recent marketing notifications and
passes them in. Order status notifications never come here: they always notify (the status
field's ``changeMessage``, Google's status messages), and they are never counted against the
marketing caps, which count only ``Card.marketing_notified``. Journeys (welcome, cart, refill
messages) ask the same question as offers, so the policy knows "a marketing message", not
offers.

Rules, in this order:
1. opted out -> skip ``opted_out`` (nothing on the card);
2. the message expires before it could be sent -> skip ``expired``;
3. the shop asked for no notification -> silent ``not_requested``;
4. the card had ``daily_cap`` marketing notifications on the customer's calendar day, or
   ``weekly_cap`` in the 7 days (168 hours) before now -> silent ``capped`` (the card is
   updated now: holding it back would not make it notify);
5. the card's order status notified less than ``STATUS_GAP`` ago -> defer until the gap has
   passed (a phone that fetches both versions at once would merge the two changed fields into
   Wallet's generic "card changed" and lose the status line: marketing never suppresses one);
6. now is within the quiet hours in the customer's zone -> defer to their end (the card
   changes then, and the rules are asked again);
7. otherwise notify.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.merchants.marketing import MarketingSettings

WEEK = timedelta(days=7)
STATUS_GAP = timedelta(minutes=15)
"""How long after a status notification a marketing one waits."""


@dataclass(frozen=True, slots=True)
class MarketingMessage:
    """What the policy needs of a message: whether the shop wants it to notify, and until when
    it means anything."""

    notify: bool
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Notify:
    action: Literal["notify"] = "notify"


@dataclass(frozen=True, slots=True)
class Silent:
    reason: Literal["capped", "not_requested"]
    action: Literal["silent"] = "silent"


@dataclass(frozen=True, slots=True)
class Defer:
    until: datetime
    reason: Literal["quiet_hours", "status_gap"] = "quiet_hours"
    action: Literal["defer"] = "defer"


@dataclass(frozen=True, slots=True)
class Skip:
    reason: Literal["opted_out", "expired"]
    action: Literal["skip"] = "skip"


Decision = Notify | Silent | Defer | Skip


def zone_of(name: str | None, fallback: str) -> ZoneInfo:
    """The customer's zone, else the merchant's, else UTC (an unknown name is not an error:
    it came from a shop's order event)."""
    for candidate in (name, fallback):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def decide(
    message: MarketingMessage,
    *,
    now: datetime,
    consent: bool,
    notified: Sequence[datetime],
    settings: MarketingSettings,
    zone: ZoneInfo,
    status_notified_at: datetime | None = None,
) -> Decision:
    """The decision for one marketing message on one card at ``now`` (see the module's rules).

    ``notified``: when the card's earlier marketing messages notified (the last 7 days do);
    ``status_notified_at``: when its order status last notified."""
    if not consent:
        return Skip("opted_out")
    if message.expires_at is not None and message.expires_at <= now:
        return Skip("expired")
    if not message.notify:
        return Silent("not_requested")
    if capped(now, notified, settings, zone):
        return Silent("capped")
    if status_notified_at is not None and now < status_notified_at + STATUS_GAP:
        return _held(message, status_notified_at + STATUS_GAP, "status_gap")
    end = quiet_hours_end(now, settings, zone)
    if end is not None:
        return _held(message, end, "quiet_hours")
    return Notify()


def _held(
    message: MarketingMessage, until: datetime, reason: Literal["quiet_hours", "status_gap"]
) -> Defer | Skip:
    """Held until ``until``, unless the message means nothing by then."""
    if message.expires_at is not None and message.expires_at <= until:
        return Skip("expired")
    return Defer(until, reason)


def capped(
    now: datetime, notified: Sequence[datetime], settings: MarketingSettings, zone: ZoneInfo
) -> bool:
    """The day's cap (the customer's calendar day) or the 7 days' cap is reached."""
    today = now.astimezone(zone).date()
    same_day = sum(1 for at in notified if at.astimezone(zone).date() == today)
    this_week = sum(1 for at in notified if now - WEEK < at <= now)
    return same_day >= settings.daily_cap or this_week >= settings.weekly_cap


def quiet_hours_end(now: datetime, settings: MarketingSettings, zone: ZoneInfo) -> datetime | None:
    """When the quiet hours ``now`` falls in end (UTC), or ``None`` outside them. Equal start
    and end mean no quiet hours."""
    start, end = settings.quiet_start, settings.quiet_end
    local = now.astimezone(zone)
    if start == end or not _within(local.time().replace(tzinfo=None), start, end):
        return None
    day = local.date() if local.time().replace(tzinfo=None) < end else local.date() + timedelta(1)
    return datetime.combine(day, end, tzinfo=zone).astimezone(UTC)


def _within(moment: time, start: time, end: time) -> bool:
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end


def recent(notified: Sequence[datetime], now: datetime) -> list[datetime]:
    """The notifications the caps still look at (the last 7 days), oldest first."""
    return sorted(at for at in notified if at > now - WEEK - timedelta(days=1))

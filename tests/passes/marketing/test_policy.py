"""The notification policy's rules, one by one, on times the test chooses."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.merchants.marketing import MarketingSettings
from services.passes.marketing.policy import (
    STATUS_GAP,
    Defer,
    MarketingMessage,
    Notify,
    Silent,
    Skip,
    decide,
    quiet_hours_end,
    zone_of,
)

DEFAULTS = MarketingSettings()
UTC_ZONE = ZoneInfo("UTC")
PRAGUE = ZoneInfo("Europe/Prague")
TOKYO = ZoneInfo("Asia/Tokyo")
NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OFFER = MarketingMessage(notify=True, expires_at=NOON + timedelta(days=30))


def _decide(
    now: datetime = NOON,
    *,
    notified: list[datetime] | None = None,
    zone: ZoneInfo = UTC_ZONE,
    consent: bool = True,
    message: MarketingMessage = OFFER,
    settings: MarketingSettings = DEFAULTS,
    status_notified_at: datetime | None = None,
) -> object:
    return decide(
        message,
        now=now,
        consent=consent,
        notified=notified or [],
        settings=settings,
        zone=zone,
        status_notified_at=status_notified_at,
    )


def test_a_first_offer_in_the_day_notifies() -> None:
    assert _decide() == Notify()


def test_one_a_day_in_the_customers_calendar_day() -> None:
    morning = NOON.replace(hour=8)
    assert _decide(notified=[morning]) == Silent("capped")
    # In Tokyo (UTC+9) 23:30 UTC is already the next day: the cap of the day before is spent.
    late = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
    assert _decide(late, notified=[morning], zone=TOKYO) == Notify()
    # In UTC it is the same day as the morning's notification.
    assert _decide(late, notified=[morning], zone=UTC_ZONE, settings=_no_quiet()) == Silent(
        "capped"
    )


def test_three_in_any_seven_days() -> None:
    three = [NOON - timedelta(days=d) for d in (1, 3, 6)]
    assert _decide(notified=three) == Silent("capped")
    # A week and a minute after the first of them, two remain in the window.
    older = [NOON - timedelta(days=7, minutes=1), NOON - timedelta(days=3), NOON - timedelta(1)]
    assert _decide(notified=older) == Notify()


def test_caps_follow_the_merchants_settings() -> None:
    generous = MarketingSettings(daily_cap=2, weekly_cap=5)
    assert _decide(notified=[NOON - timedelta(hours=1)], settings=generous) == Notify()
    assert _decide(notified=[NOON - timedelta(hours=h) for h in (1, 2)], settings=generous) == (
        Silent("capped")
    )


def test_quiet_hours_defer_to_their_end_in_the_customers_zone() -> None:
    # 21:30 in Prague (UTC+1 in December): held until 08:00 Prague, 07:00 UTC the next day.
    evening = datetime(2026, 12, 1, 20, 30, tzinfo=UTC)
    assert _decide(evening, zone=PRAGUE) == Defer(datetime(2026, 12, 2, 7, 0, tzinfo=UTC))
    # 05:00 Prague: held until 08:00 the same day.
    early = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
    assert _decide(early, zone=PRAGUE) == Defer(datetime(2026, 12, 2, 7, 0, tzinfo=UTC))
    # 08:00 sharp is no longer quiet; 20:59 not yet.
    assert _decide(datetime(2026, 12, 2, 7, 0, tzinfo=UTC), zone=PRAGUE) == Notify()
    assert _decide(datetime(2026, 12, 1, 19, 59, tzinfo=UTC), zone=PRAGUE) == Notify()


def test_quiet_hours_within_one_day_and_none() -> None:
    siesta = MarketingSettings(quiet_start=time(13, 0), quiet_end=time(15, 0))
    at = NOON.replace(hour=14)
    assert quiet_hours_end(at, siesta, UTC_ZONE) == NOON.replace(hour=15)
    assert quiet_hours_end(NOON, siesta, UTC_ZONE) is None
    assert _decide(NOON.replace(hour=23), settings=_no_quiet()) == Notify()


def test_a_capped_message_is_silent_now_rather_than_held() -> None:
    night = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
    assert _decide(night, notified=[NOON]) == Silent("capped")


def test_an_offer_that_ends_before_the_quiet_hours_do_is_not_sent() -> None:
    night = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
    ending = MarketingMessage(notify=True, expires_at=night + timedelta(hours=2))
    assert _decide(night, message=ending) == Skip("expired")
    assert _decide(night + timedelta(hours=3), message=ending) == Skip("expired")


def test_opted_out_gets_nothing_and_the_shop_may_ask_for_no_notification() -> None:
    assert _decide(consent=False) == Skip("opted_out")
    assert _decide(message=MarketingMessage(notify=False)) == Silent("not_requested")


def test_the_zone_falls_back_to_the_merchants_then_utc() -> None:
    assert zone_of("Asia/Tokyo", "Europe/Prague") == TOKYO
    assert zone_of(None, "Europe/Prague") == PRAGUE
    assert zone_of("Not/AZone", "Europe/Prague") == PRAGUE
    assert zone_of("../etc", "nowhere") == UTC_ZONE


def _no_quiet() -> MarketingSettings:
    return MarketingSettings(quiet_start=time(0, 0), quiet_end=time(0, 0))


def test_a_marketing_message_waits_a_while_after_a_status_notification() -> None:
    status_at = NOON - timedelta(minutes=5)
    assert _decide(status_notified_at=status_at) == Defer(
        status_at + STATUS_GAP, reason="status_gap"
    )
    assert _decide(status_notified_at=NOON - STATUS_GAP) == Notify()
    # Held into the quiet hours, it is asked again then, and held until morning.
    evening = datetime(2026, 12, 1, 20, 55, tzinfo=UTC)
    assert _decide(evening, status_notified_at=evening) == Defer(
        evening + STATUS_GAP, reason="status_gap"
    )
    assert _decide(evening + STATUS_GAP, status_notified_at=evening) == Defer(
        datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
    )

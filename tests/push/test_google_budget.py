"""Google's notification budget: 3 per object in 24 hours, as stored in ``notified_at``."""

from __future__ import annotations

from services.push.google import DAY_SECONDS, budget_spent, notification_allowed, notified

NOW = 1_700_000_000.0


def test_three_notifications_a_day_then_none_until_the_oldest_is_a_day_old() -> None:
    budget: list[float] = []
    for minute in range(3):
        assert notification_allowed(True, budget, NOW + 60 * minute)
        budget = notified(budget, NOW + 60 * minute)
    assert not notification_allowed(True, budget, NOW + 120)
    assert notification_allowed(True, budget, NOW + DAY_SECONDS)
    assert notified(budget, NOW + DAY_SECONDS + 60) == [NOW + 120, NOW + DAY_SECONDS + 60]


def test_a_plain_message_never_notifies() -> None:
    assert not notification_allowed(False, [], NOW)


def test_a_budget_google_says_is_spent_stays_spent_for_a_day() -> None:
    spent = budget_spent(NOW)
    assert not notification_allowed(True, spent, NOW + DAY_SECONDS - 1)
    assert notification_allowed(True, spent, NOW + DAY_SECONDS)
    assert all(isinstance(moment, float) for moment in spent), "the column's shape"


def test_marketing_notifies_only_into_a_day_without_notifications() -> None:
    assert notification_allowed(True, [], NOW, kind="marketing")
    assert not notification_allowed(True, [NOW - DAY_SECONDS + 1], NOW, kind="marketing")
    assert notification_allowed(True, [NOW - DAY_SECONDS], NOW, kind="marketing")
    assert not notification_allowed(False, [], NOW, kind="marketing")


def test_a_marketing_notification_leaves_statuses_two_slots() -> None:
    budget = notified([], NOW)  # the offer
    for minute in (1, 2):
        assert notification_allowed(True, budget, NOW + 60 * minute)
        budget = notified(budget, NOW + 60 * minute)
    assert not notification_allowed(True, budget, NOW + 180, kind="marketing")

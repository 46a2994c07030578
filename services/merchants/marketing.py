"""A merchant's marketing settings: how often its cards may notify offers, and when not.

They live in the tenant registry because two services read them: passes applies them per card
(the notification policy, ``services/passes/marketing/policy.py``) and ops set them through the
admin API and ``passpost merchants marketing``. Stored as one JSON column on ``merchants``
(``marketing``): NULL means every default, so a new setting needs no migration.
"""

from __future__ import annotations

import uuid
from datetime import time
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.text import TimeZoneName
from services.merchants.models import Merchant


def _whole_minutes(value: time) -> time:
    if value.second or value.microsecond or value.tzinfo is not None:
        raise ValueError("a local time in whole minutes, such as '21:00'")
    return value


DailyCap = Annotated[
    int, Field(strict=True, ge=0, le=10, description="Marketing notifications a day.")
]
WeeklyCap = Annotated[
    int, Field(strict=True, ge=0, le=70, description="Marketing notifications in 7 days.")
]
LocalTime = Annotated[
    time,
    AfterValidator(_whole_minutes),
    WithJsonSchema({"type": "string", "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9](:00)?$"}),
]
"""A wall-clock time in whole minutes (``21:00``), no zone: the customer's zone applies."""


class MarketingSettings(BaseModel):
    """Per-merchant limits of marketing notifications on a card; order statuses ignore them.

    ``daily_cap`` counts per calendar day in the customer's zone, ``weekly_cap`` in any 7 days.
    Quiet hours run from ``quiet_start`` to ``quiet_end`` in the customer's zone and may span
    midnight (the default, 21:00-08:00); equal times mean no quiet hours. A cap of 0 keeps
    offers on the card but never notifies them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    daily_cap: DailyCap = 1
    weekly_cap: WeeklyCap = 3
    quiet_start: LocalTime = time(21, 0)
    quiet_end: LocalTime = time(8, 0)
    time_zone: TimeZoneName = "UTC"

    @field_validator("weekly_cap")
    @classmethod
    def _weekly_holds_a_day(cls, value: int, info: ValidationInfo) -> int:
        daily = info.data.get("daily_cap")
        if daily is not None and value < daily:
            raise ValueError(f"at least the daily cap ({daily}): a week holds a day")
        return value

    @property
    def has_quiet_hours(self) -> bool:
        return self.quiet_start != self.quiet_end


class MarketingChange(BaseModel):
    """A change of some settings (admin PATCH, CLI): fields left out stay, ``null`` resets one
    to its default."""

    model_config = ConfigDict(extra="forbid")

    daily_cap: DailyCap | None = None
    weekly_cap: WeeklyCap | None = None
    quiet_start: LocalTime | None = None
    quiet_end: LocalTime | None = None
    time_zone: TimeZoneName | None = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


def quiet_hours(value: str) -> tuple[time, time]:
    """``21:00-08:00`` as (start, end): how the CLI takes quiet hours."""
    start, separator, end = value.partition("-")
    try:
        if not separator:
            raise ValueError(value)
        return time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
    except ValueError:
        raise ValueError("quiet hours as HH:MM-HH:MM, such as 21:00-08:00") from None


def stored(settings: MarketingSettings) -> dict[str, Any] | None:
    """What the ``merchants.marketing`` column holds: only what differs from the defaults, so a
    changed default reaches every merchant who never chose otherwise (NULL: all defaults)."""
    changed = settings.model_dump(mode="json", exclude_defaults=True)
    return changed or None


def settings_of(merchant: Merchant) -> MarketingSettings:
    return MarketingSettings.model_validate(merchant.marketing or {})


async def marketing_settings(session: AsyncSession, merchant_id: uuid.UUID) -> MarketingSettings:
    """The merchant's marketing settings (the defaults for a merchant that set none)."""
    value = await session.scalar(select(Merchant.marketing).where(Merchant.id == merchant_id))
    return MarketingSettings.model_validate(value or {})


async def update_marketing(
    session: AsyncSession, merchant: Merchant, changes: dict[str, Any]
) -> MarketingSettings:
    """Apply ``changes`` (field -> new value, ``None`` for the default) over the current
    settings.

    The merged whole is validated, so a weekly cap below a new daily cap is refused even when
    only one of them is sent; the pydantic error names the field (a 422 with its path).
    """
    merged = {**settings_of(merchant).model_dump(), **changes}
    merged = {name: value for name, value in merged.items() if value is not None}
    settings = MarketingSettings.model_validate(merged)
    merchant.marketing = stored(settings)
    await session.flush()
    return settings

"""A merchant's journeys: which triggered messages its cards carry, when, and in what words.

Registry data beside the marketing settings (``marketing.py``): the shop switches each journey
on or off, sets its delay, words it per locale and names the offer it brings; ops set them
through ``passpost journeys set`` and ``/admin/v1/merchants/{slug}/journeys``. Passes reads
them when a journey's step is scheduled and again when it is due. Stored as one JSON column,
``merchants.journeys``, of only what differs from the defaults (NULL: every default), so a
changed default reaches every merchant who never chose otherwise and a new journey needs no
migration.

Defaults, and why:
- ``welcome``, on, at once: a card issued at sign-up says hello when it first lands on a device.
- ``cart_abandoned``, on, 1 hour: long enough that the customer has really left, short enough
  that the cart is still on their mind (the usual first reminder of shop platforms).
- ``price_dropped``, on, at once: a watched product's price news is worth most when new.
- ``trial_ending``, on, 3 days before ``ends_at``: time to decide and pay without a rush.
- ``feedback``, on, 3 days after delivery: the parcel has been opened and tried.
- ``refill``, on, no extra delay: the product's own ``refill_after_days`` says when.
- ``loyalty`` (after the 3rd delivered order) and ``referral``: off until the shop gives their
  ``url``: there is nothing to invite to without the programme's link.
Every message stays on the card ``valid_days`` (then leaves quietly) unless its journey knows
better (a trial's reminder leaves when the trial ends).
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    TypeAdapter,
    ValidationError,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.text import Identifier, Locale, PlainText, plain_text
from services.merchants.models import Merchant

JourneyName = Literal[
    "welcome",
    "cart_abandoned",
    "price_dropped",
    "trial_ending",
    "feedback",
    "refill",
    "loyalty",
    "referral",
]
JOURNEYS: tuple[JourneyName, ...] = get_args(JourneyName)

MINUTES_A_DAY = 24 * 60


def _whole(value: object) -> object:
    """JSON's 3.0 is the integer 3 (JSON Schema says so); a string or a bool is no number."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_Whole = BeforeValidator(_whole)
"""After the constraints in an ``Annotated``: they stay in the JSON schema, and run after it."""
DelayMinutes = Annotated[
    int,
    Field(
        strict=True,
        ge=0,
        le=365 * MINUTES_A_DAY,
        description="Minutes after the trigger (``trial_ending``: before ``ends_at``).",
    ),
    _Whole,
]
RefillDays = Annotated[int, Field(strict=True, ge=1, le=730)]
"""Days after delivery a product's refill reminder is due (two years at most: further off is
a mistake, or a subscription's business)."""
_HTTP_URL = TypeAdapter(HttpUrl)
_PLACEHOLDER = re.compile(r"\{[a-z_]*\}")


def _link_template(value: str) -> str:
    """The url as the shop wrote it, placeholders in braces kept (``{customer_id}``, filled in
    per card by passes): an ``HttpUrl`` would percent-encode braces in the path."""
    try:
        _HTTP_URL.validate_python(_PLACEHOLDER.sub("x", value))
    except ValidationError:
        raise ValueError("an http(s) URL, optionally with {placeholders}") from None
    return value


LinkTemplate = Annotated[
    str,
    AfterValidator(plain_text),
    Field(max_length=2048, pattern=r"^https?://[^\s\x00-\x1f\x7f]+$"),
    AfterValidator(_link_template),
]
"""A journey's link: an http(s) URL of at most 2048 characters, as every link on a card
(``card_view.MAX_LINK_LENGTH``), whose ``{order_id}``, ``{customer_id}``, ... passes fills in
for each card (``passes/journeys/links.py`` says which)."""
ValidDays = Annotated[
    int,
    Field(strict=True, ge=1, le=90, description="Days the message stays on the card."),
    _Whole,
]
AfterOrders = Annotated[int, Field(strict=True, ge=1, le=100), _Whole]
OfferDays = Annotated[int, Field(strict=True, ge=1, le=90), _Whole]


class JourneyText(BaseModel):
    """The shop's own wording of a journey's message in one language. Placeholders in braces
    (``{name}``, ``{product}``, ``{price}``, ``{shop}``) are filled in; unknown ones are kept."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: Annotated[PlainText, Field(min_length=1, max_length=60)]
    text: Annotated[PlainText, Field(min_length=1, max_length=300)]


def _keyed_by_pattern(schema: dict[str, Any]) -> None:
    """The keys' pattern (a locale's, a product id's) belongs to the keys (``propertyNames``):
    as a pattern property, a key matching no pattern would be documented as allowed."""
    ((pattern, value),) = schema.pop("patternProperties").items()
    schema["propertyNames"] = {**schema.get("propertyNames", {}), "pattern": pattern}
    schema["additionalProperties"] = value


LocaleTexts = Annotated[
    dict[Locale, JourneyText], Field(max_length=20, json_schema_extra=_keyed_by_pattern)
]
"""The shop's own words of a journey, per locale (at most 20 languages)."""
Enabled = Annotated[bool, Field(strict=True)]
ProductDays = Annotated[
    dict[Identifier, RefillDays], Field(max_length=1000, json_schema_extra=_keyed_by_pattern)
]
"""refill: a product's days after delivery, by the shop's product id."""


class OfferTemplate(BaseModel):
    """The offer a journey's message brings: a coupon code, valid this many days."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: Annotated[Identifier, Field(max_length=64)]
    valid_days: OfferDays = 7


class JourneySettings(BaseModel):
    """One journey of one merchant. ``texts`` per locale win over passpost's own words;
    ``url`` is the journey's link (a survey, the loyalty programme, a referral template; the
    shop's own link in an event wins where the event has one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    delay_minutes: DelayMinutes = 0
    valid_days: ValidDays = 7
    texts: Annotated[dict[Locale, JourneyText], Field(max_length=20)] = Field(default_factory=dict)
    offer: OfferTemplate | None = None
    url: LinkTemplate | None = None
    after_orders: AfterOrders | None = Field(
        default=None, description="loyalty: the invitation after this many delivered orders."
    )
    products: ProductDays = Field(
        default_factory=dict,
        description="refill: days after delivery per product id, for the items of an order"
        " that carry no refill_after_days.",
    )


DEFAULTS: dict[JourneyName, JourneySettings] = {
    "welcome": JourneySettings(valid_days=14),
    "cart_abandoned": JourneySettings(delay_minutes=60, valid_days=3),
    "price_dropped": JourneySettings(),
    "trial_ending": JourneySettings(delay_minutes=3 * MINUTES_A_DAY),
    "feedback": JourneySettings(delay_minutes=3 * MINUTES_A_DAY, valid_days=14),
    "refill": JourneySettings(valid_days=14),
    "loyalty": JourneySettings(enabled=False, after_orders=3, valid_days=30),
    "referral": JourneySettings(enabled=False, valid_days=30),
}


class JourneyChange(BaseModel):
    """A change of one journey (admin PATCH, CLI): fields left out stay, ``null`` resets one
    to its default."""

    model_config = ConfigDict(extra="forbid")

    enabled: Enabled | None = None
    delay_minutes: DelayMinutes | None = None
    valid_days: ValidDays | None = None
    texts: LocaleTexts | None = None
    offer: OfferTemplate | None = None
    url: LinkTemplate | None = None
    after_orders: AfterOrders | None = None
    products: ProductDays | None = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


class JourneyRead(BaseModel):
    """A journey as ops and the CLI see it: its name and its settings, defaults filled in."""

    journey: JourneyName
    settings: JourneySettings


def journeys_of(merchant: Merchant) -> dict[JourneyName, JourneySettings]:
    """Every journey's settings of the merchant, in the order of ``JOURNEYS``."""
    return {name: _settings(name, merchant.journeys) for name in JOURNEYS}


def _settings(name: JourneyName, stored: dict[str, Any] | None) -> JourneySettings:
    own = (stored or {}).get(name) or {}
    return JourneySettings.model_validate({**DEFAULTS[name].model_dump(mode="json"), **own})


async def journey_settings(
    session: AsyncSession, merchant_id: uuid.UUID, name: JourneyName
) -> JourneySettings:
    """One journey's settings (the defaults for a merchant that set none)."""
    stored = await session.scalar(select(Merchant.journeys).where(Merchant.id == merchant_id))
    return _settings(name, stored)


async def update_journey(
    session: AsyncSession, merchant: Merchant, name: JourneyName, changes: dict[str, Any]
) -> JourneySettings:
    """Apply ``changes`` (field -> new value, ``None`` for the default) to one journey.

    Only what differs from the journey's defaults is stored; a field the change resets is
    dropped. A pydantic error names the field (a 422 with its path)."""
    own = dict(((merchant.journeys or {}).get(name)) or {})
    own.update(changes)
    own = {field: value for field, value in own.items() if value is not None}
    merged = JourneySettings.model_validate({**DEFAULTS[name].model_dump(mode="json"), **own})
    stored = _differences(name, merged)
    journeys = {k: v for k, v in (merchant.journeys or {}).items() if k != name}
    if stored:
        journeys[name] = stored
    merchant.journeys = journeys or None
    await session.flush()
    return merged


def _differences(name: JourneyName, settings: JourneySettings) -> dict[str, Any]:
    default = DEFAULTS[name].model_dump(mode="json")
    current = settings.model_dump(mode="json")
    return {field: value for field, value in current.items() if value != default[field]}


def parse_text(value: str) -> tuple[str, JourneyText]:
    """``sk=Title|Text`` as (locale, text): how the CLI takes a journey's words."""
    locale, separator, words = value.partition("=")
    title, bar, body = words.partition("|")
    if not separator or not bar:
        raise ValueError(
            "a text as LOCALE=TITLE|TEXT, such as 'sk=Vitajte|Ďakujeme za registráciu'"
        )
    try:
        return locale.strip(), JourneyText(title=title.strip(), text=body.strip())
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"]) from None

"""Pass designs and cards at the edge (CLI, admin API, links)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from services.core.text import PlainText
from services.merchants.schemas import Locale

HEX_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")
PHONE = re.compile(r"^\+?[0-9 ()./-]{3,30}$")
TEMPLATE_FIELDS = frozenset({"order_id", "order_number", "customer_id", "tracking_number"})


def _color(value: str) -> str:
    if not HEX_COLOR.fullmatch(value):
        raise ValueError("a color as #RRGGBB")
    return value.upper()


def _phone(value: str) -> str:
    if not PHONE.fullmatch(value):
        raise ValueError("a phone number such as +421 2 1234 5678")
    return value


_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
TemplatePart = tuple[str, str | None]
"""Literal text, then the placeholder that follows it (``None`` after the last literal)."""


def template_parts(
    template: str, fields: frozenset[str] = TEMPLATE_FIELDS
) -> tuple[TemplatePart, ...]:
    """A link template as literal text and placeholders, or ValueError saying what is wrong.

    Only the documented placeholders, exactly as ``{order_id}``: no format spec, no conversion,
    no attribute or index (``str.format`` would run them all). ``{{`` and ``}}`` are braces.
    """
    parts: list[TemplatePart] = []
    literal: list[str] = []
    position = 0
    for match in _TEMPLATE_TOKEN.finditer(template):
        literal.append(template[position : match.start()])
        position = match.end()
        token, name = match.group(), match.group(1)
        if token in ("{{", "}}"):
            literal.append(token[0])
        elif name in fields:
            parts.append(("".join(literal), name))
            literal = []
        elif name is None:
            raise ValueError("a lone brace: write {{ or }} for a brace in the URL")
        elif re.split(r"[:!.\[]", name, maxsplit=1)[0] in fields:
            plain = re.split(r"[:!.\[]", name, maxsplit=1)[0]
            raise ValueError(
                f"{{{plain}}} takes no format spec, conversion, attribute or index: "
                f"write {{{plain}}} alone"
            )
        else:
            raise ValueError(f"unknown placeholder {name!r}; use {', '.join(sorted(fields))}")
    literal.append(template[position:])
    parts.append(("".join(literal), None))
    return tuple(parts)


def _link_template(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError("an http(s) URL, optionally with {order_id}, {order_number}, ...")
    template_parts(value)
    return value


LINK_TEMPLATE_SCHEMA = {
    "pattern": "^https?://(?:[^{}]|\\{\\{|\\}\\}|\\{(?:"
    + "|".join(sorted(TEMPLATE_FIELDS))
    + ")\\})*$"
}
"""``_link_template`` as the OpenAPI description says it: braces doubled, or around a field."""

Color = Annotated[
    str, AfterValidator(_color), Field(json_schema_extra={"pattern": HEX_COLOR.pattern})
]
Phone = Annotated[str, AfterValidator(_phone), Field(json_schema_extra={"pattern": PHONE.pattern})]
LinkTemplate = Annotated[
    str,
    Field(max_length=1024, json_schema_extra=LINK_TEMPLATE_SCHEMA),
    AfterValidator(_link_template),
]
PASS_TYPE_ID = r"^pass(\.[A-Za-z0-9-]+)+$"  # noqa: S105  (a pattern)
TEAM_ID = r"^[A-Z0-9]{10}$"


class AppleSettings(BaseModel):
    pass_type_identifier: Annotated[str, Field(pattern=PASS_TYPE_ID, max_length=255)]
    team_identifier: Annotated[str, Field(pattern=TEAM_ID)]
    certificate_path: PlainText = Field(min_length=1, max_length=1024)
    key_path: PlainText = Field(min_length=1, max_length=1024)
    wwdr_path: PlainText = Field(min_length=1, max_length=1024)


REQUIRED_BRANDING = (
    "organization_name",
    "description",
    "foreground_color",
    "background_color",
    "label_color",
)
"""Branding every card needs (NOT NULL in ``pass_designs``)."""


def _required_not_nullable(schema: dict[str, Any]) -> None:
    """The OpenAPI description of ``Branding``: each of ``REQUIRED_BRANDING`` may be left out,
    never null (``_not_null``), so its schema is the value's alone."""
    for name in REQUIRED_BRANDING:
        field = schema["properties"][name]
        value = next(option for option in field.pop("anyOf") if option.get("type") != "null")
        field.update(value)
        field.pop("default", None)


class Branding(BaseModel):
    """A partial update of how the card looks and what its back links to."""

    model_config = ConfigDict(json_schema_extra=_required_not_nullable)

    organization_name: PlainText | None = Field(default=None, min_length=1, max_length=200)
    description: PlainText | None = Field(default=None, min_length=1, max_length=200)
    logo_text: PlainText | None = Field(default=None, max_length=60)
    foreground_color: Color | None = None
    background_color: Color | None = None
    label_color: Color | None = None
    support_phone: Phone | None = None
    order_url_template: LinkTemplate | None = None
    tracking_url_template: LinkTemplate | None = None
    returns_url_template: LinkTemplate | None = None
    account_url_template: LinkTemplate | None = None
    review_url_template: LinkTemplate | None = Field(
        default=None, description="Where a rating of 9-10 is invited to a review (order filled in)."
    )
    survey_url_template: LinkTemplate | None = Field(
        default=None, description='The "talk to us" page a rating of 0-6 is offered.'
    )

    @field_validator(*REQUIRED_BRANDING, mode="after")
    @classmethod
    def _not_null(cls, value: str | None) -> str:
        """Every card needs these: left out they stay as they are, and null cannot clear them
        (a null where an optional field is allowed clears that field)."""
        if value is None:
            raise ValueError(
                "required: leave it out to keep the current value, null cannot clear it"
            )
        return value


MAX_LOCATIONS = 10
"""Apple Wallet takes at most 10 ``locations`` per pass, Google 10 ``merchantLocations`` per
object."""
RelevantText = Annotated[PlainText, Field(min_length=1, max_length=100)]


class StoreLocation(BaseModel):
    """A store: near it, the card comes up on the lock screen with ``relevant_text``."""

    model_config = ConfigDict(extra="forbid")

    latitude: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False, strict=True)]
    longitude: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False, strict=True)]
    relevant_text: dict[Locale, RelevantText] = Field(
        default_factory=dict,
        max_length=20,
        json_schema_extra={"additionalProperties": False},
        description='Per language, e.g. {"en": "Our store on Main Street is nearby"}. While an '
        "offer is on the card, its title is shown instead.",
    )


class StoreLocations(BaseModel):
    model_config = ConfigDict(extra="forbid")

    locations: list[StoreLocation] = Field(max_length=MAX_LOCATIONS)


class CardIssue(BaseModel):
    customer_id: PlainText = Field(min_length=1, max_length=200)
    customer_name: PlainText | None = Field(default=None, max_length=200)
    locale: Locale | None = None

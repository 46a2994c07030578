"""Text a caller sends us: refused at the edge if no database or wallet could keep it.

PostgreSQL refuses NUL in text (``invalid byte sequence for encoding "UTF8": 0x00``): accepted,
it failed later, in a worker, on every retry. Other control characters have no place in a name,
a number or a label on a card, and no UTF-8 encoder takes a lone surrogate. ``PlainText``
refuses all of them, so an edge answers a 422 naming the field.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from typing import Annotated

from pydantic import AfterValidator, Field

_UNFIT = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def plain_text(value: str) -> str:
    """``value`` unchanged, unless it has a control character or a lone surrogate in it."""
    if _UNFIT.search(value):
        raise ValueError("control characters (such as NUL or a line break) are not allowed")
    return value


PLAIN_TEXT_SCHEMA = {"pattern": "^[^\\u0000-\\u001f\\u007f]*$"}
"""What the OpenAPI description says of it (JSON has no lone surrogates to speak of)."""

PlainText = Annotated[str, AfterValidator(plain_text), Field(json_schema_extra=PLAIN_TEXT_SCHEMA)]
"""A one-line string of printable characters: every free-text field at an edge is one."""


IDENTIFIER_PATTERN = r"^[\x21-\x7e]+$"
"""Printable ASCII without spaces: an id of the shop's (order, customer, offer), in a body or
in a path."""
Identifier = Annotated[str, Field(min_length=1, max_length=200, pattern=IDENTIFIER_PATTERN)]


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _time_zone(value: str) -> str:
    """An IANA zone the system knows (``Europe/Prague``): a customer's quiet hours and calendar
    days are counted in it."""
    if value not in _time_zones():
        raise ValueError("an IANA time zone name, such as Europe/Prague or UTC")
    return value


TimeZoneName = Annotated[
    str,
    Field(max_length=64, json_schema_extra={"enum": sorted(zoneinfo.available_timezones())}),
    AfterValidator(_time_zone),
]
"""An IANA time zone name, the one type of every zone the edges take (order events, merchant
settings); the OpenAPI description lists the names the system knows."""


_UNFIT_IN_LINES = re.compile(r"[\x00-\x09\x0b-\x1f\x7f\ud800-\udfff]")


def multiline_text(value: str) -> str:
    """``value`` with its line breaks as ``\\n``, unless another control character or a lone
    surrogate is in it: a customer's own words may come in paragraphs."""
    value = value.replace("\r\n", "\n")
    if _UNFIT_IN_LINES.search(value):
        raise ValueError("control characters other than line breaks (such as NUL) are not allowed")
    return value


MultilineText = Annotated[
    str,
    AfterValidator(multiline_text),
    Field(json_schema_extra={"pattern": "^[^\\u0000-\\u0009\\u000b-\\u001f\\u007f]*$"}),
]
"""Free text in paragraphs (a customer's comment): ``PlainText`` with line breaks allowed."""
LOCALE_PATTERN = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")


def normalize_locale(value: str) -> str:
    """``sk``, ``sk-SK`` and ``sk_SK`` all name Slovak; we keep the language part lowercased."""
    if not LOCALE_PATTERN.fullmatch(value):
        raise ValueError("a language tag such as 'en', 'sk' or 'de-AT'")
    return value.split("-")[0].split("_")[0].lower()


Locale = Annotated[
    str,
    Field(max_length=35, json_schema_extra={"pattern": LOCALE_PATTERN.pattern}),
    AfterValidator(normalize_locale),
]
"""A language tag at any edge (``sk-SK``), kept as its language (``sk``)."""

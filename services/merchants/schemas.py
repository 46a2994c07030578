"""What merchants look like at the edge (CLI and admin API)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import Path as PathParam
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.core.text import PlainText

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
LOCALE_PATTERN = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")


def _slug(value: str) -> str:
    if not SLUG_PATTERN.fullmatch(value):
        raise ValueError("lowercase letters, digits and inner hyphens, at most 64 characters")
    return value


def normalize_locale(value: str) -> str:
    """``sk``, ``sk-SK`` and ``sk_SK`` all name Slovak; we keep the language part lowercased."""
    if not LOCALE_PATTERN.fullmatch(value):
        raise ValueError("a language tag such as 'en', 'sk' or 'de-AT'")
    return value.split("-")[0].split("_")[0].lower()


Slug = Annotated[
    str, AfterValidator(_slug), Field(json_schema_extra={"pattern": SLUG_PATTERN.pattern})
]
SlugPath = Annotated[str, PathParam(pattern=SLUG_PATTERN.pattern)]
"""A merchant's slug in a path: anything else is a 422, never a query with NUL in it."""
Locale = Annotated[
    str,
    Field(max_length=35, json_schema_extra={"pattern": LOCALE_PATTERN.pattern}),
    AfterValidator(normalize_locale),
]


class MerchantCreate(BaseModel):
    slug: Slug
    name: PlainText = Field(min_length=1, max_length=200)
    default_locale: Locale = "en"


class MerchantRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    slug: str
    name: str
    default_locale: str
    created_at: datetime


class MerchantCreated(BaseModel):
    merchant: MerchantRead
    api_key: str = Field(description="Shown once; only its hash is kept.")

"""What merchants look like at the edge (CLI and admin API).

``Locale`` and ``normalize_locale`` live in the kernel (``core/text.py``), every edge's language
tag; they are named here too, where the registry's edges have always found them.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import Path as PathParam
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.core.text import LOCALE_PATTERN as LOCALE_PATTERN
from services.core.text import Locale as Locale
from services.core.text import PlainText
from services.core.text import normalize_locale as normalize_locale

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def _slug(value: str) -> str:
    if not SLUG_PATTERN.fullmatch(value):
        raise ValueError("lowercase letters, digits and inner hyphens, at most 64 characters")
    return value


Slug = Annotated[
    str, AfterValidator(_slug), Field(json_schema_extra={"pattern": SLUG_PATTERN.pattern})
]
SlugPath = Annotated[str, PathParam(pattern=SLUG_PATTERN.pattern)]
"""A merchant's slug in a path: anything else is a 422, never a query with NUL in it."""


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

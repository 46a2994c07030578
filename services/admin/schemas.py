"""What the admin API takes and answers; secrets appear only in the answer that makes them."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StrictBool

from services.core.text import PlainText
from services.merchants.schemas import Locale, MerchantRead, Slug
from services.passes.schemas import AppleSettings, Branding


class MerchantOnboard(BaseModel):
    slug: Slug
    name: PlainText = Field(min_length=1, max_length=200)
    default_locale: Locale = "en"
    apple: AppleSettings | None = Field(
        default=None, description="Required in production; development makes a local one."
    )
    branding: Branding | None = None


class MerchantOnboarded(BaseModel):
    merchant: MerchantRead
    api_key: str = Field(description="Shown once; only its hash is kept.")
    pass_type_identifier: str


class ApiKeyCreate(BaseModel):
    revoke_others: StrictBool = False


class ApiKeyCreated(BaseModel):
    api_key: str = Field(description="Shown once.")
    revoked: int


class SigningSecret(BaseModel):
    signing_secret: str | None = Field(description="Shown once; null when switched off.")


class SigningSecretChange(BaseModel):
    enabled: StrictBool = True


ORIGIN_SCHEMA = {
    "pattern": "^(?:https://|http://localhost|http://127\\.0\\.0\\.1)[^\\u0000-\\u001f\\u007f]*$"
}
"""What ``merchants.google_wallet.configure`` takes as an origin, as the OpenAPI says it."""
Origin = Annotated[PlainText, Field(json_schema_extra=ORIGIN_SCHEMA)]


class GoogleSettings(BaseModel):
    issuer_id: str = Field(pattern=r"^[0-9]{1,32}$")
    service_account_file: PlainText = Field(min_length=1, max_length=1024)
    origins: list[Origin] = Field(default_factory=list, max_length=20)


class GoogleSettingsRead(BaseModel):
    """The key file's place is not returned: configuration, like keys, goes one way."""

    issuer_id: str
    origins: list[str]
    cards_announced: int

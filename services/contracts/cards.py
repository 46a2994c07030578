"""A customer's card as every service may name it: its derived identity and its links.

The serial number and link token are an HMAC of (merchant, customer) under the installation's
secret key, so the orders API can answer a shop with the card's links at once, and whoever
issues the card first (the ``order.changed`` consumer, the CLI, the admin API) gives it the same
identity, without asking another service. The key must never change once cards exist.
"""

from __future__ import annotations

import base64
import hmac
import re
import uuid
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel

LINK_PATH = "/c"
LINK_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")


@dataclass(frozen=True, slots=True)
class CardIdentity:
    serial_number: str
    link_token: str


class Identified(Protocol):
    """A card or its identity: anything that knows its serial number and link token."""

    @property
    def serial_number(self) -> str: ...

    @property
    def link_token(self) -> str: ...


def card_identity(secret_key: bytes, merchant_id: uuid.UUID, customer_id: str) -> CardIdentity:
    """A customer's card serial number and link, derived rather than stored: without the secret
    key neither can be guessed."""

    def derive(purpose: str) -> bytes:
        message = f"{purpose}\x00{merchant_id}\x00{customer_id}".encode()
        return hmac.digest(secret_key, message, "sha256")

    return CardIdentity(
        serial_number=derive("serial").hex()[:32],
        link_token=base64.urlsafe_b64encode(derive("link")[:24]).decode(),
    )


class CardLinks(BaseModel):
    """The links a shop puts on its thank-you page; ``google_save_url`` once Google Wallet is
    configured for the merchant."""

    serial_number: str
    apple_pass_url: str
    google_save_url: str | None
    landing_url: str


def card_links(card: Identified, base_url: str, *, google_save_url: str | None = None) -> CardLinks:
    landing = f"{base_url}{LINK_PATH}/{card.link_token}"
    return CardLinks(
        serial_number=card.serial_number,
        apple_pass_url=f"{landing}/pass.pkpass",
        landing_url=landing,
        google_save_url=google_save_url,
    )

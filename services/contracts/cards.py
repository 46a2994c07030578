"""A customer's card as every service may name it: its derived identity and its links.

The serial number is an HMAC of (merchant, customer) under the installation's secret key, and
the link carries (merchant, customer) sealed under a key derived from it (``seal_customer``):
deterministic AES-SIV, so the same customer always gets the same link, nobody without the key
can read one or make one, and the passes service can open a link it has no card for yet and
issue that card on demand. So the orders API answers a shop with the card's links at once,
whoever issues the card first (a customer following its link, the ``order.changed`` consumer,
the CLI, the admin API) gives it the same identity, and no service asks another. The key must
never change once cards exist.

Cards issued before links were sealed keep the HMAC link they were handed out with
(``Card.link_token``); it is looked up before any link is opened.
"""

from __future__ import annotations

import base64
import hmac
import re
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from pydantic import BaseModel

LINK_PATH = "/c"
GOOGLE_LINK_SUFFIX = "/google"
"""``/c/{link}/google``: passpost's own "Save to Google Wallet" link (``CardLinks``)."""

MAX_CUSTOMER_ID_BYTES = 800
"""A shop's customer id is at most 200 characters (``CardIssue``), so at most 800 bytes."""
_SEAL_BLOCK = 16
"""The sealed customer id is padded to a multiple of this, so a link hardly tells its length."""
_SEAL_LABEL = b"passpost card link seal v1"
MAX_LINK_TOKEN_LENGTH = 1120
"""The longest sealed link: tag, merchant id, length and the longest customer id, padded,
in unpadded base64url (``Card.link_token`` holds it)."""
LINK_TOKEN = re.compile(rf"[A-Za-z0-9_-]{{16,{MAX_LINK_TOKEN_LENGTH}}}")


@dataclass(frozen=True, slots=True)
class CardIdentity:
    serial_number: str
    link_token: str


@dataclass(frozen=True, slots=True)
class CardCustomer:
    """Whose card a sealed link is for."""

    merchant_id: uuid.UUID
    customer_id: str


class Identified(Protocol):
    """A card or its identity: anything that knows its serial number and link token."""

    @property
    def serial_number(self) -> str: ...

    @property
    def link_token(self) -> str: ...


def card_identity(secret_key: bytes, merchant_id: uuid.UUID, customer_id: str) -> CardIdentity:
    """A customer's card serial number and link, derived rather than stored: without the secret
    key neither can be guessed."""
    message = f"serial\x00{merchant_id}\x00{customer_id}".encode()
    return CardIdentity(
        serial_number=hmac.digest(secret_key, message, "sha256").hex()[:32],
        link_token=seal_customer(secret_key, merchant_id, customer_id),
    )


@lru_cache(maxsize=8)
def _sealer(secret_key: bytes) -> AESSIV:
    """AES-256-SIV under a key of its own purpose, derived from the installation's key."""
    return AESSIV(hmac.digest(secret_key, _SEAL_LABEL, "sha512"))


def seal_customer(secret_key: bytes, merchant_id: uuid.UUID, customer_id: str) -> str:
    """The customer's link token: (merchant, customer) sealed, the same every time."""
    customer = customer_id.encode()
    if len(customer) > MAX_CUSTOMER_ID_BYTES:
        raise ValueError(f"a customer id is at most {MAX_CUSTOMER_ID_BYTES} bytes")
    padding = b"\x00" * (-len(customer) % _SEAL_BLOCK)
    plain = merchant_id.bytes + len(customer).to_bytes(2, "big") + customer + padding
    sealed = _sealer(secret_key).encrypt(plain, [_SEAL_LABEL])
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def open_link(secret_key: bytes, link_token: str) -> CardCustomer | None:
    """Whose card a link is for, or ``None`` for a link this key did not seal (forged,
    mistyped, sealed under another key, or an HMAC link of a card issued before sealing)."""
    if not LINK_TOKEN.fullmatch(link_token):
        return None
    try:
        sealed = base64.urlsafe_b64decode(link_token + "=" * (-len(link_token) % 4))
        if base64.urlsafe_b64encode(sealed).decode().rstrip("=") != link_token:
            return None  # another spelling of the same bytes: one link per card, not several
        plain = _sealer(secret_key).decrypt(sealed, [_SEAL_LABEL])
    except (InvalidTag, ValueError):  # binascii.Error is a ValueError
        return None
    length = int.from_bytes(plain[16:18], "big")
    try:
        customer_id = plain[18 : 18 + length].decode()
    except UnicodeDecodeError:  # sealed by us, so never; kept as a refusal, not a 500
        return None
    return CardCustomer(uuid.UUID(bytes=plain[:16]), customer_id)


class CardLinks(BaseModel):
    """The links a shop puts on its thank-you page; ``google_save_url`` once Google Wallet is
    configured for the merchant."""

    serial_number: str
    apple_pass_url: str
    google_save_url: str | None
    landing_url: str


def card_links(card: Identified, base_url: str, *, google: bool = False) -> CardLinks:
    """The card's links, all passpost's own, working from the moment they are made (the
    passes service issues the card on demand); ``google``: with the Google save link."""
    landing = f"{base_url}{LINK_PATH}/{card.link_token}"
    return CardLinks(
        serial_number=card.serial_number,
        apple_pass_url=f"{landing}/pass.pkpass",
        landing_url=landing,
        google_save_url=f"{landing}{GOOGLE_LINK_SUFFIX}" if google else None,
    )


def customer_links(
    secret_key: bytes, merchant_id: uuid.UUID, customer_id: str, base_url: str, *, google: bool
) -> CardLinks:
    """The links of a customer's card whether or not it exists yet: what the orders API answers
    an order event with, and what any other shop event about a customer answers."""
    return card_links(card_identity(secret_key, merchant_id, customer_id), base_url, google=google)

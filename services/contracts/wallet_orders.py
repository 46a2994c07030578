"""An order's Apple Wallet order as every service may name it: its identity and its links.

Like a card's (``contracts.cards``), a Wallet order's identity is derived, not stored: the
order identifier, the web service's authentication token and the package's unguessable link
are HMACs of (merchant, order) under the installation's secret key, each under a label of its
own. So the orders service answers a shop's order event with the Wallet order (and the Apple
Pay order details a payment sheet takes) without asking passes, and passes, which builds and
serves the package, derives the same values. Nobody without the key can guess one from
another: the token a device sends is not the link a customer was sent.
"""

from __future__ import annotations

import hmac
import re
import uuid
from dataclasses import dataclass

from pydantic import BaseModel, Field

WALLET_ORDERS_PATH = "/wallet-orders"
"""The Wallet Orders web service's base (``webServiceURL``); Apple's calls are under ``/v1``."""
PACKAGE_PATH = f"{WALLET_ORDERS_PATH}/packages"
"""``{PACKAGE_PATH}/{orderIdentifier}/{link}``: the customer's download of the package."""
MEDIA_TYPE = "application/vnd.apple.finance.order"
"""The package's content type (Apple: "Retrieve the latest version of an order")."""

_IDENTIFIER_LABEL = b"passpost wallet order identifier v1"
_TOKEN_LABEL = b"passpost wallet order authentication token v1"
_LINK_LABEL = b"passpost wallet order link v1"
ORDER_IDENTIFIER = re.compile(r"[0-9a-f]{32}")
LINK = re.compile(r"[0-9a-f]{32}")
TOKEN_LENGTH = 40
"""Apple asks at least 16 characters of an ``authenticationToken``."""


@dataclass(frozen=True, slots=True)
class WalletOrderIdentity:
    order_identifier: str
    authentication_token: str
    link: str


def _mac(secret_key: bytes, label: bytes, *parts: str) -> str:
    return hmac.digest(
        secret_key, b"\x00".join([label, *(p.encode() for p in parts)]), "sha256"
    ).hex()


def order_identifier(secret_key: bytes, merchant_id: uuid.UUID, order_id: str) -> str:
    """The Wallet order's ``orderIdentifier``: never shown, unique per merchant and order."""
    return _mac(secret_key, _IDENTIFIER_LABEL, str(merchant_id), order_id)[:32]


def authentication_token(secret_key: bytes, identifier: str) -> str:
    """What Wallet sends back as ``Authorization: AppleOrder <token>`` for this order."""
    return _mac(secret_key, _TOKEN_LABEL, identifier)[:TOKEN_LENGTH]


def package_link(secret_key: bytes, identifier: str) -> str:
    """The secret part of the package's download link (not the token: links get shared)."""
    return _mac(secret_key, _LINK_LABEL, identifier)[:32]


def wallet_order_identity(
    secret_key: bytes, merchant_id: uuid.UUID, order_id: str
) -> WalletOrderIdentity:
    identifier = order_identifier(secret_key, merchant_id, order_id)
    return WalletOrderIdentity(
        order_identifier=identifier,
        authentication_token=authentication_token(secret_key, identifier),
        link=package_link(secret_key, identifier),
    )


def token_matches(secret_key: bytes, identifier: str, given: str) -> bool:
    """``given`` is the order's token (constant time; nothing is read to know it)."""
    return hmac.compare_digest(
        given.encode(), authentication_token(secret_key, identifier).encode()
    )


def link_matches(secret_key: bytes, identifier: str, given: str) -> bool:
    return hmac.compare_digest(given.encode(), package_link(secret_key, identifier).encode())


class ApplePayOrderDetails(BaseModel):
    """Apple Pay on the web's ``ApplePayPaymentOrderDetails``: a shop taking Apple Pay passes
    this to the payment sheet, and Wallet fetches the order from our web service."""

    order_type_identifier: str = Field(alias="orderTypeIdentifier")
    order_identifier: str = Field(alias="orderIdentifier")
    web_service_url: str = Field(alias="webServiceURL")
    authentication_token: str = Field(alias="authenticationToken")

    model_config = {"populate_by_name": True, "serialize_by_alias": True}


class WalletOrderLinks(BaseModel):
    """The order in Apple Wallet: ``url`` serves the signed package (per order, unguessable)."""

    url: str
    apple_pay: ApplePayOrderDetails


def web_service_url(base_url: str) -> str:
    return f"{base_url}{WALLET_ORDERS_PATH}"


def wallet_order_links(
    secret_key: bytes,
    merchant_id: uuid.UUID,
    order_id: str,
    order_type_identifier: str,
    base_url: str,
) -> WalletOrderLinks:
    """What the orders API answers of an order whose merchant has Wallet Orders on."""
    identity = wallet_order_identity(secret_key, merchant_id, order_id)
    return WalletOrderLinks(
        url=f"{base_url}{PACKAGE_PATH}/{identity.order_identifier}/{identity.link}",
        apple_pay=ApplePayOrderDetails(
            order_type_identifier=order_type_identifier,
            order_identifier=identity.order_identifier,
            web_service_url=web_service_url(base_url),
            authentication_token=identity.authentication_token,
        ),
    )

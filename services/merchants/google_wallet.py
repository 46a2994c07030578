"""A merchant's Google Wallet settings, and the save links they sign.

They live in the tenant registry because two services need them: the orders API answers a shop
with the card's links (with the Google one whenever the merchant's key can sign), and passes
builds the card's object under the merchant's issuer and signs it into the save link.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.cards import CardLinks, Identified, card_links
from services.core.errors import InvalidInput, NotConfigured, named_by_caller
from services.integrations.google_wallet.auth import InvalidServiceAccount, ServiceAccount
from services.integrations.google_wallet.client import object_id
from services.integrations.google_wallet.jwt import SaveUrlTooLong, save_url
from services.merchants.models import Merchant

log = logging.getLogger(__name__)

CLASS_SUFFIX = "customer-card"


def load_service_account(merchant: Merchant, path: Path) -> ServiceAccount:
    try:
        return ServiceAccount.from_file(path)
    except (InvalidServiceAccount, OSError, ValueError) as exc:
        raise NotConfigured(
            f"merchant {merchant.slug!r}: google.service_account_file ({path}): {exc}",
            setting="google.service_account_file",
            path=str(path),
        ) from None


def checked_service_account_path(merchant: Merchant, path: Path) -> str:
    load_service_account(merchant, path)
    return str(path.resolve())


async def configure(
    session: AsyncSession,
    merchant: Merchant,
    *,
    issuer_id: str,
    service_account_file: Path,
    origins: list[str],
) -> Merchant:
    """Store a merchant's Google settings once the key file is known to be usable."""
    if not issuer_id.isdigit() or len(issuer_id) > 32:
        raise InvalidInput("google.issuer_id: the digits of the issuer id from the Pay console")
    for origin in origins:
        if not origin.startswith(("https://", "http://localhost", "http://127.0.0.1")):
            raise InvalidInput(f"google.origins: {origin!r} is not an https origin")
    with named_by_caller():
        merchant.google_service_account_path = checked_service_account_path(
            merchant, service_account_file
        )
    merchant.google_issuer_id = issuer_id
    merchant.google_origins = origins
    await session.flush()
    return merchant


async def issuer_is_ours(session: AsyncSession, issuer_id: str) -> bool:
    """Whether a merchant here acts as Google issuer ``issuer_id``: Google signs the callbacks
    of every issuer with the same keys, so a valid signature alone says nothing about whose."""
    found = await session.scalar(
        select(Merchant.id).where(Merchant.google_issuer_id == issuer_id).limit(1)
    )
    return found is not None


def enabled(merchant: Merchant) -> bool:
    return bool(merchant.google_issuer_id and merchant.google_service_account_path)


def class_id(merchant: Merchant) -> str:
    return object_id(str(merchant.google_issuer_id), CLASS_SUFFIX)


def card_object_id(merchant: Merchant, serial_number: str) -> str:
    return object_id(str(merchant.google_issuer_id), serial_number)


def signing_account(merchant: Merchant) -> ServiceAccount | None:
    """The service account that signs the merchant's save links.

    None without Google Wallet, and while its key file is gone or broken: the order event is
    still accepted and the landing page still shown, without the Google button, and the
    problem is logged once per state of the key file (``passpost check`` names it too).
    """
    if not enabled(merchant):
        return None
    path = Path(str(merchant.google_service_account_path))
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = -1
    try:
        return _account(path, mtime)
    except (OSError, ValueError) as exc:  # unreadable or invalid key
        _unusable(merchant.slug, mtime, f"{type(exc).__name__}: {exc}"[:300])
        return None


def save_link(merchant: Merchant, card_object: Mapping[str, Any]) -> str | None:
    """``https://pay.google.com/gp/v/save/<jwt>`` carrying the card's whole object, so that
    Google can create it on save even before push has inserted it (Google keeps an object it
    has already and ignores the copy in the link).

    None while the merchant's key cannot sign (``signing_account``) or the link would be
    longer than browsers carry (``SaveUrlTooLong``: too many or too long origins).
    """
    account = signing_account(merchant)
    if account is None:
        return None
    origins = tuple(merchant.google_origins or ())
    try:
        return save_url(account, card_object, origins=origins)
    except SaveUrlTooLong:
        _unusable(merchant.slug, hash(origins), "google.origins: the save link is too long")
        return None


def links_at(merchant: Merchant, card: Identified, base_url: str) -> CardLinks:
    """A card's links as a shop and a customer get them; with Google Wallet, passpost's own
    save link (``/c/{link}/google``), whenever the merchant's key can sign. The orders API
    answers with these before the card exists; the passes service shows the same ones."""
    return card_links(card, base_url, google=signs_save_links(merchant))


def signs_save_links(merchant: Merchant) -> bool:
    """Whether the merchant's cards get a Google save link (``signing_account``)."""
    return signing_account(merchant) is not None


@lru_cache(maxsize=256)
def _unusable(slug: str, _state: int, error: str) -> None:
    """Log an unusable Google setup once per merchant and state of its key file (or origins)."""
    log.warning(
        "Google save links cannot be signed; cards are linked without them",
        extra={"merchant": slug, "setting": "google.service_account_file", "error": error},
    )


@lru_cache(maxsize=256)
def _account(path: Path, _mtime: int) -> ServiceAccount:
    """Read once per state of the key file."""
    return ServiceAccount.from_file(path)

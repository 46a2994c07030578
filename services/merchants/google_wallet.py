"""A merchant's Google Wallet settings, and the save link they sign.

They live in the tenant registry because two services need them: the orders API answers a shop
with the card's save link (signed with the merchant's service account key), and passes builds
the card's object under the merchant's issuer.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.cards import CardLinks, Identified, card_links
from services.core.errors import InvalidInput, NotConfigured, named_by_caller
from services.integrations.google_wallet.auth import InvalidServiceAccount, ServiceAccount
from services.integrations.google_wallet.client import object_id
from services.integrations.google_wallet.jwt import save_url
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


def save_link(merchant: Merchant, serial_number: str) -> str | None:
    """``https://pay.google.com/gp/v/save/<jwt>`` naming the card's object by its id.

    None without Google Wallet, and while the merchant's Google settings cannot sign one (the
    key file gone or broken, origins that make the link too long): the order event is still
    accepted and the landing page still shown, without the Google button, and the problem is
    logged once per state of the key file (``passpost check`` names it too).
    """
    if not enabled(merchant):
        return None
    path = Path(str(merchant.google_service_account_path))
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = -1
    try:
        return _save_link(
            merchant.slug,
            path,
            mtime,
            card_object_id(merchant, serial_number),
            tuple(merchant.google_origins or ()),
        )
    except (OSError, ValueError) as exc:  # unreadable or invalid key, SaveUrlTooLong
        _unusable(merchant.slug, mtime, f"{type(exc).__name__}: {exc}"[:300])
        return None


def links_at(merchant: Merchant, card: Identified, base_url: str) -> CardLinks:
    """A card's links as a shop and a customer get them: the derived ones, and with Google
    Wallet the save link signed with the merchant's key. The orders API answers with these
    before the card exists; the passes service shows the same ones for the card it made."""
    google_save_url = save_link(merchant, card.serial_number)
    return card_links(card, base_url, google_save_url=google_save_url)


@lru_cache(maxsize=256)
def _unusable(slug: str, _mtime: int, error: str) -> None:
    """Log an unusable Google setup once per merchant and state of its key file."""
    log.warning(
        "Google save links cannot be signed; cards are linked without them",
        extra={"merchant": slug, "setting": "google.service_account_file", "error": error},
    )


@lru_cache(maxsize=4096)
def _save_link(slug: str, path: Path, _mtime: int, object_id: str, origins: tuple[str, ...]) -> str:
    """Signing takes a millisecond; the link never expires, so sign once per card and key."""
    return save_url(ServiceAccount.from_file(path), object_id, origins=list(origins))

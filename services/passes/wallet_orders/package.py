"""A Wallet order's signed package: order.json, the merchant's logo, each language's
order.strings, manifest.json (SHA-256 of every file) and the detached PKCS#7 signature by the
Order Type ID certificate's key with the WWDR intermediate and the signing time. Built at most
once per version and kept in the database, like a card's bundle (``passes.bundles``)."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.contracts.wallet_orders import authentication_token, web_service_url
from services.core.errors import NotConfigured
from services.core.models import utcnow
from services.core.settings import Settings
from services.merchants.models import Merchant
from services.passes.apple import ziparchive
from services.passes.apple.signing import SigningMaterial
from services.passes.designs import get_design
from services.passes.models import Card, DesignImage, WalletOrder, WalletOrderPackage
from services.passes.wallet_orders.document import LOGO, order_document, order_strings
from services.passes.wallet_orders.settings import OrderSignerCache, management_url

log = logging.getLogger(__name__)

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_MANIFEST = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def build_package(
    document: Mapping[str, Any],
    strings: Mapping[str, bytes],
    images: Mapping[str, bytes],
    signer: SigningMaterial,
) -> bytes:
    """Serialise, hash (SHA-256, as Wallet Orders ask), sign and zip one version."""
    files = {
        "order.json": _JSON.encode(document).encode("utf-8"),
        **images,
        **{f"{locale}.lproj/order.strings": data for locale, data in strings.items()},
    }
    manifest = _MANIFEST.encode(
        {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    ).encode("utf-8")
    return ziparchive.archive(
        [
            *(
                ziparchive.Entry.stored(name, data)
                if name.endswith(".png")
                else ziparchive.Entry.deflated(name, data)
                for name, data in files.items()
            ),
            ziparchive.Entry.deflated("manifest.json", manifest),
            ziparchive.Entry.deflated("signature", signer.sign(manifest)),
        ]
    )


@dataclass(frozen=True, slots=True)
class SignedOrder:
    content: bytes
    version: int
    changed_at: datetime


_CACHED = select(WalletOrderPackage.content).where(
    WalletOrderPackage.wallet_order_id == bindparam("id"),
    WalletOrderPackage.version == bindparam("version"),
)


async def cached_package(
    connection: AsyncConnection, wallet_order_id: uuid.UUID, version: int
) -> bytes | None:
    """The package built for exactly this version, if any."""
    content: bytes | None = await connection.scalar(
        _CACHED, {"id": wallet_order_id, "version": version}
    )
    return content


class OrderPackageBuilder:
    """Builds a Wallet order's package at most once per version (``app.state``)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._signers = OrderSignerCache()

    async def signed_order(self, session: AsyncSession, order: WalletOrder) -> SignedOrder:
        kept = await session.get(WalletOrderPackage, order.id)
        if kept is not None and kept.version == order.version:
            return SignedOrder(kept.content, order.version, order.changed_at)
        content = await self._build(session, order)
        if kept is None:
            try:
                async with session.begin_nested():
                    session.add(
                        WalletOrderPackage(
                            wallet_order_id=order.id, version=order.version, content=content
                        )
                    )
            except IntegrityError:
                pass  # built at once by another request: the same version
        elif kept.version < order.version:
            kept.version, kept.content, kept.built_at = order.version, content, utcnow()
        return SignedOrder(content, order.version, order.changed_at)

    async def _build(self, session: AsyncSession, order: WalletOrder) -> bytes:
        merchant = await session.get_one(Merchant, order.merchant_id)
        design = await get_design(session, merchant)
        try:
            signer = self._signers.get(merchant, design, order.order_type_identifier)
        except NotConfigured as exc:
            log.error(
                "cannot sign a Wallet order: %s", exc.message, extra={"merchant": merchant.slug}
            )
            raise NotConfigured(
                f"Wallet orders of merchant {merchant.slug!r} cannot be signed now: its Order "
                "Type ID material is unusable and its operator has been told; try again later",
                merchant=merchant.slug,
            ) from None
        card = await session.get_one(Card, order.card_id)
        logo = await session.get(DesignImage, (design.id, LOGO))
        base = self._settings.base_url()
        secret = self._settings.resolved_secret_key()
        document = order_document(
            order.content,
            order_type_identifier=order.order_type_identifier,
            order_identifier=order.order_identifier,
            authentication_token=authentication_token(secret, order.order_identifier),
            web_service_url=web_service_url(base),
            management_url=management_url(design, order.content, card, base),
            merchant_name=design.organization_name,
            merchant_identifier=str(design.apple_merchant_identifier),
            merchant_url=None,
            created_at=order.created_at,
            updated_at=order.updated_at,
            has_logo=logo is not None,
        )
        images = {LOGO: logo.content} if logo is not None else {}
        return build_package(document, order_strings(design.texts), images, signer)

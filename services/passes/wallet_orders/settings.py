"""A merchant's Wallet Orders settings: switching them on with an Order Type ID certificate.

The switch and the Order Type ID are the merchant's (``merchants.models.Merchant``), so the
orders service can answer an event with the Wallet order without asking passes; the
certificate, its key and the Apple Merchant ID shown in order.json are the pass design's, next
to the pass type certificate and the WWDR intermediate they share. Both are checked like pass
certificates (``apple.signing``) before anything is saved.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.cards import card_links
from services.core.errors import Conflict, InvalidInput, NotConfigured, named_by_caller
from services.merchants.models import Merchant
from services.passes.apple.signing import SigningFiles, SigningMaterial, load_signing_material
from services.passes.card_view import back_links
from services.passes.models import Card, PassDesign, WalletOrder

ORDER_TYPE_ID = re.compile(r"order(?:\.[A-Za-z0-9-]+)+")
MERCHANT_ID = re.compile(r"merchant(?:\.[A-Za-z0-9-]+)+")
MAX_IDENTIFIER_LENGTH = 255


def order_signing_files(merchant: Merchant, design: PassDesign, order_type: str) -> SigningFiles:
    if not (design.order_certificate_path and design.order_key_path):
        raise NotConfigured(
            f"merchant {merchant.slug!r} has no Order Type ID certificate "
            f"(passpost designs apple-orders --merchant {merchant.slug} ...)",
            merchant=merchant.slug,
            setting="apple_orders.certificate_path",
        )
    return SigningFiles(
        merchant=merchant.slug,
        pass_type_identifier=order_type,
        team_identifier=design.team_identifier,
        certificate_path=Path(design.order_certificate_path),
        key_path=Path(design.order_key_path),
        wwdr_path=Path(design.wwdr_path),
        kind="order type",
        section="apple_orders",
        identifier_setting="apple_orders.order_type_identifier",
    )


class OrderSignerCache:
    """The Order Type ID material per design, loaded again when a file or the design changes."""

    def __init__(self) -> None:
        self._entries: dict[uuid.UUID, tuple[tuple[object, ...], SigningMaterial]] = {}

    def get(self, merchant: Merchant, design: PassDesign, order_type: str) -> SigningMaterial:
        files = order_signing_files(merchant, design, order_type)
        key = (
            design.updated_at,
            order_type,
            *(_mtime(p) for p in (files.certificate_path, files.key_path, files.wwdr_path)),
        )
        cached = self._entries.get(design.id)
        if cached is not None and cached[0] == key:
            return cached[1]
        material = load_signing_material(files)
        self._entries[design.id] = (key, material)
        return material


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


def management_url(design: PassDesign, order: dict[str, Any], card: Card, base_url: str) -> str:
    """order.json's ``orderManagementURL``: the shop's link to the order (its own, or its
    template's), else the card's page, which always exists."""
    return back_links(design, card, order).get("order") or card_links(card, base_url).landing_url


def default_merchant_identifier(order_type: str) -> str:
    """Apple's naming habit: ``order.com.shop`` beside ``merchant.com.shop``."""
    return "merchant." + order_type.removeprefix("order.")


@dataclass(frozen=True, slots=True)
class WalletOrdersSettings:
    order_type_identifier: str
    certificate_path: Path
    key_path: Path
    merchant_identifier: str | None = None

    def checked(self) -> WalletOrdersSettings:
        if len(self.order_type_identifier) > MAX_IDENTIFIER_LENGTH or not ORDER_TYPE_ID.fullmatch(
            self.order_type_identifier
        ):
            raise InvalidInput(
                "apple_orders.order_type_identifier: an Order Type ID such as order.com.shop",
                field="order_type_identifier",
            )
        identifier = self.merchant_identifier or default_merchant_identifier(
            self.order_type_identifier
        )
        if len(identifier) > MAX_IDENTIFIER_LENGTH or not MERCHANT_ID.fullmatch(identifier):
            raise InvalidInput(
                "apple_orders.merchant_identifier: an Apple Merchant ID such as merchant.com.shop",
                field="merchant_identifier",
            )
        return WalletOrdersSettings(
            self.order_type_identifier,
            self.certificate_path.resolve(),
            self.key_path.resolve(),
            identifier,
        )


async def configure(
    session: AsyncSession,
    merchant: Merchant,
    design: PassDesign,
    given: WalletOrdersSettings,
    *,
    enable: bool | None,
) -> None:
    """Set the merchant's Order Type ID material (checked first) and, if asked, the switch.

    Devices know a Wallet order by its order type id, so it cannot change once orders exist
    (renew the certificate of the same order type instead).
    """
    wanted = given.checked()
    if wanted.order_type_identifier != merchant.order_type_identifier and await session.scalar(
        select(WalletOrder.id).where(WalletOrder.merchant_id == merchant.id).limit(1)
    ):
        raise Conflict(
            f"merchant {merchant.slug!r} has Wallet orders of "
            f"{merchant.order_type_identifier!r}: its order type id cannot change"
        )
    candidate = PassDesign(
        merchant_id=design.merchant_id,
        team_identifier=design.team_identifier,
        wwdr_path=design.wwdr_path,
        order_certificate_path=str(wanted.certificate_path),
        order_key_path=str(wanted.key_path),
    )
    with named_by_caller():
        load_signing_material(
            order_signing_files(merchant, candidate, wanted.order_type_identifier)
        )
    design.order_certificate_path = str(wanted.certificate_path)
    design.order_key_path = str(wanted.key_path)
    design.apple_merchant_identifier = wanted.merchant_identifier
    merchant.order_type_identifier = wanted.order_type_identifier
    if enable is not None:
        merchant.wallet_orders_enabled = enable


def switch(merchant: Merchant, design: PassDesign, *, enable: bool) -> None:
    """Turn Wallet Orders on (only with usable material) or off."""
    if enable:
        if merchant.order_type_identifier is None:
            raise NotConfigured(
                f"merchant {merchant.slug!r} has no Order Type ID: pass --order-type-id, "
                "--certificate and --key",
                merchant=merchant.slug,
            )
        with named_by_caller():
            load_signing_material(
                order_signing_files(merchant, design, merchant.order_type_identifier)
            )
    merchant.wallet_orders_enabled = enable

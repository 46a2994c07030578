"""Whether a merchant's orders go to Apple Wallet as Wallet orders, and what the orders API
answers of one (derived: ``contracts.wallet_orders``, so no service asks passes)."""

from __future__ import annotations

from services.contracts.wallet_orders import WalletOrderLinks, wallet_order_links
from services.core.settings import Settings
from services.merchants.models import Merchant


def enabled(merchant: Merchant) -> bool:
    """Switched on, with an Order Type ID (``passpost designs apple-orders ... --enable``)."""
    return bool(merchant.wallet_orders_enabled and merchant.order_type_identifier)


def wallet_order_of(
    merchant: Merchant, order_id: str, settings: Settings
) -> WalletOrderLinks | None:
    """The order's Wallet order as a shop hands it on (a link, Apple Pay's order details), or
    ``None`` while the merchant has Wallet Orders off."""
    if not enabled(merchant) or merchant.order_type_identifier is None:
        return None
    return wallet_order_links(
        settings.resolved_secret_key(),
        merchant.id,
        order_id,
        merchant.order_type_identifier,
        settings.base_url(),
    )

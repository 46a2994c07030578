"""Bringing a merchant on board: the merchant, its first API key, and its pass design.

A flow across two domains (merchants, passes), kept apart from either's CRUD.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from services.core.errors import NotConfigured, named_by_caller
from services.core.settings import Environment, Settings
from services.merchants.models import Merchant
from services.merchants.schemas import MerchantCreate
from services.merchants.service import create_merchant
from services.passes.apple.devchain import (
    ensure_dev_chain,
    ensure_order_type_certificate,
    ensure_pass_type_certificate,
)
from services.passes.designs import create_design, get_design
from services.passes.models import PassDesign
from services.passes.schemas import AppleSettings, Branding
from services.passes.wallet_orders.settings import WalletOrdersSettings, configure

DEV_TEAM_IDENTIFIER = "PASSPOST42"


@dataclass(frozen=True, slots=True)
class Onboarded:
    merchant: Merchant
    design: PassDesign
    api_key: str


def development_apple_settings(settings: Settings, slug: str, organization: str) -> AppleSettings:
    """Apple settings backed by the local development chain (never in production)."""
    if settings.environment == Environment.production:
        raise NotConfigured(
            "production merchants need real Apple settings: pass type id, team id, certificate, "
            "key and WWDR G4 files"
        )
    pass_type = f"pass.dev.passpost.{slug}"
    chain = ensure_dev_chain(settings.keys_dir)
    files = ensure_pass_type_certificate(
        settings.keys_dir, pass_type, DEV_TEAM_IDENTIFIER, organization
    )
    return AppleSettings(
        pass_type_identifier=pass_type,
        team_identifier=DEV_TEAM_IDENTIFIER,
        certificate_path=str(files.certificate.resolve()),
        key_path=str(files.key.resolve()),
        wwdr_path=str(chain.wwdr_certificate.resolve()),
    )


async def onboard_merchant(
    session: AsyncSession,
    settings: Settings,
    data: MerchantCreate,
    apple: AppleSettings | None = None,
    branding: Branding | None = None,
) -> Onboarded:
    merchant, api_key = await create_merchant(session, data)
    if apple is None:
        apple = development_apple_settings(settings, data.slug, data.name)
        design = await create_design(session, merchant, apple, branding)
    else:
        with named_by_caller():  # the caller's files: unusable ones are its mistake, a 422
            design = await create_design(session, merchant, apple, branding)
    return Onboarded(merchant=merchant, design=design, api_key=api_key)


async def development_wallet_orders(
    session: AsyncSession, settings: Settings, merchant: Merchant
) -> None:
    """Wallet Orders on, with an Order Type ID certificate from the development chain (the
    demo merchant's, so ``make run`` shows "Track in Apple Wallet")."""
    order_type = f"order.dev.passpost.{merchant.slug}"
    files = ensure_order_type_certificate(
        settings.keys_dir, order_type, DEV_TEAM_IDENTIFIER, merchant.name
    )
    design = await get_design(session, merchant)
    await configure(
        session,
        merchant,
        design,
        WalletOrdersSettings(order_type, files.certificate, files.key),
        enable=True,
    )
    await session.flush()

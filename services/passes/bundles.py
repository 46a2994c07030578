"""A card's signed pass bundle: built at most once per version of the card and kept in the
database, so a device's download of an unchanged card never signs again."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.core import metrics
from services.core.errors import NotConfigured
from services.core.models import utcnow
from services.core.settings import Settings
from services.merchants.models import Merchant
from services.passes.apple.document import pass_document, pass_strings_for
from services.passes.apple.pkpass import build_pkpass
from services.passes.designs import DesignAssetCache, design_problems, get_design
from services.passes.journeys.referral import referral_link
from services.passes.models import Card, PassBundle
from services.passes.wallet_orders.settings import OrderSignerCache

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SignedPass:
    content: bytes
    version: int
    changed_at: datetime


_CACHED_CONTENT = select(PassBundle.content).where(
    PassBundle.card_id == bindparam("card_id"), PassBundle.version == bindparam("version")
)


async def cached_content(
    connection: AsyncConnection, card_id: uuid.UUID, version: int
) -> bytes | None:
    """The bundle built for exactly this version of a card, if any, without loading the card."""
    content: bytes | None = await connection.scalar(
        _CACHED_CONTENT, {"card_id": card_id, "version": version}
    )
    return content


class PassBuilder:
    """Builds a card's signed bundle at most once per version and keeps it in the database."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._assets = DesignAssetCache()
        self._orders = OrderSignerCache()

    async def broken_merchants(self, session: AsyncSession) -> list[NotConfigured]:
        """The merchants whose passes cannot be signed now (``designs.design_problems``)."""
        return await design_problems(session, self._assets, self._orders)

    async def signed_pass(self, session: AsyncSession, card: Card) -> SignedPass:
        bundle = await session.get(PassBundle, card.id)
        if bundle is not None and bundle.version == card.version:
            return SignedPass(bundle.content, card.version, card.changed_at)
        merchant = await session.get_one(Merchant, card.merchant_id)
        design = await get_design(session, merchant)
        try:
            assets = await self._assets.get(session, merchant, design)
        except NotConfigured as exc:
            log.error("cannot sign a pass: %s", exc.message, extra={"merchant": merchant.slug})
            raise NotConfigured(
                f"passes of merchant {merchant.slug!r} cannot be signed now: its signing "
                "material is unusable and its operator has been told; try again later",
                merchant=merchant.slug,
            ) from None
        with metrics.PASS_BUILD_SECONDS.time():
            content = build_pkpass(
                pass_document(
                    design, card, self._settings, referral=referral_link(merchant, design, card)
                ),
                pass_strings_for(design, card),
                assets.static,
                assets.signer,
            )
        metrics.PASSES_BUILT.inc()
        if bundle is None:
            try:
                async with session.begin_nested():
                    session.add(PassBundle(card_id=card.id, version=card.version, content=content))
            except IntegrityError:
                pass  # built concurrently by another request: same version, same pass
        elif bundle.version < card.version:
            bundle.version, bundle.content, bundle.built_at = card.version, content, utcnow()
        return SignedPass(content, card.version, card.changed_at)

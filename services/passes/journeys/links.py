"""A journey's link: the shop's url (``JourneySettings.url``) as a template, the card's values
filled in (``{order_id}``, ``{order_number}``, ``{customer_id}``, ``{product_id}``), each
percent-encoded, as the card's back links are (``card_view.fill_template``)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.passes.card_view import fill_template
from services.passes.models import PassDesign
from services.passes.schemas import TEMPLATE_FIELDS

JOURNEY_FIELDS = TEMPLATE_FIELDS | {"product_id"}
"""What a journey's link may name: a back link's fields and the product a refill is about."""


def journey_link(
    design: PassDesign, journey: str, url: str | None, values: Mapping[str, str | None]
) -> str | None:
    """The link, or None without a url, while a value it names is missing, or when the url
    is not a usable template (logged once)."""
    if url is None:
        return None
    return fill_template(design, f"journey.{journey}", url, values, fields=JOURNEY_FIELDS)


async def design_of(session: AsyncSession, merchant_id: uuid.UUID) -> PassDesign:
    design = await session.scalar(select(PassDesign).where(PassDesign.merchant_id == merchant_id))
    assert design is not None, "a card exists only for a merchant with a design"
    return design

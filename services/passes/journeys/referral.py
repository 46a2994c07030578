"""``referral``: while the merchant's referral journey is on with a link (``url``, a template
with ``{customer_id}``), every card carries the customer's own referral link on its back
(``card_view.back_links``); a change of it reaches each card with its next version."""

from __future__ import annotations

from services.merchants.journeys import journeys_of
from services.merchants.models import Merchant
from services.passes.journeys.links import journey_link
from services.passes.models import Card, PassDesign


def referral_link(merchant: Merchant, design: PassDesign, card: Card) -> str | None:
    settings = journeys_of(merchant)["referral"]
    if not settings.enabled:
        return None
    return journey_link(design, "referral", settings.url, {"customer_id": card.customer_id})

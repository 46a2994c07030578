"""The card's marketing slot: the offers a card shows, as ``Card.content["offers"]`` keeps
them (the last to arrive first), and how each wallet words them in the customer's language.

``content["notice"]`` names the offer whose arrival the card's current version announces: only
that version gives the front field a ``changeMessage``, so an offer notifies once, a silent
version carries no ``changeMessage``, and an offer leaving the card never brings one back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Set
from datetime import datetime
from typing import Any

from services.contracts.cards import card_links
from services.contracts.messages import GoogleMessage
from services.passes.models import Card

Offer = dict[str, Any]
"""An ``OfferView`` as JSON, as the card keeps it."""


def shown_offers(content: dict[str, Any]) -> list[Offer]:
    offers: list[Offer] = list(content.get("offers") or [])
    return offers


def with_offer(content: dict[str, Any], offer: Offer) -> dict[str, Any]:
    """``content`` showing ``offer`` too (once), first: the newest on a card is the one that
    arrived last (an offer held for quiet hours arrives after a later one shown silently, and
    the field that announces it must be the one on the front)."""
    offers = [offer, *(o for o in shown_offers(content) if o["id"] != offer["id"])]
    return {**content, "offers": offers}


def without_offers(content: dict[str, Any], offer_ids: Set[str]) -> dict[str, Any]:
    offers = [o for o in shown_offers(content) if o["id"] not in offer_ids]
    return {**content, "offers": offers}


def announced(card: Card, offer_id: str) -> None:
    """The card's current version announces ``offer_id`` (its front field notifies)."""
    card.content = {**card.content, "notice": {"offer": offer_id, "version": card.version}}


def notifying_offer(card: Card) -> str | None:
    """The offer the card's current version announces, if any."""
    notice = card.content.get("notice") or {}
    return notice.get("offer") if notice.get("version") == card.version else None


def status_notified(card: Card, at: datetime) -> None:
    """The card's order status notified at ``at`` (a marketing message waits a while)."""
    card.content = {**card.content, "status_notified_at": at.isoformat()}


def status_notified_at(card: Card) -> datetime | None:
    at = card.content.get("status_notified_at")
    return datetime.fromisoformat(at) if at else None


def marketing_url(card: Card, base_url: str) -> str:
    """The customer's own page to say no (or yes again) to offers on the card: the "No offers,
    thanks" link on the back of the Apple pass and on the Google object."""
    return f"{card_links(card, base_url).landing_url}/marketing"


def offer_key(offer_id: str) -> str:
    """A short stable name for an offer in field keys and message ids (ids are the shop's)."""
    return hashlib.sha256(offer_id.encode()).hexdigest()[:12]


def message_id(offer_id: str) -> str:
    """The Google message that carries an offer (taken off again by this id)."""
    return f"offer-{offer_key(offer_id)}"


def words(offer: Offer, locale: str) -> tuple[str, str]:
    """The offer's title and text in ``locale``: the shop's own wording for it wins."""
    own = (offer.get("texts") or {}).get(locale)
    if own:
        return str(own["title"]), str(own["text"])
    return str(offer["title"]), str(offer["text"])


def coupon_offer(content: dict[str, Any]) -> Offer | None:
    """The newest shown offer with a coupon code: the card's barcode carries its code."""
    return next((o for o in shown_offers(content) if o.get("coupon_code")), None)


def google_message(offer: Offer, locale: str, *, notifies: bool) -> GoogleMessage:
    """The offer as a message on the Google object, shown until it is no longer valid."""
    title, body = words(offer, locale)
    return GoogleMessage(
        id=message_id(offer["id"]),
        header=title,
        body=body,
        important=notifies,
        kind="marketing",
        display_until=offer["valid_until"],
    )

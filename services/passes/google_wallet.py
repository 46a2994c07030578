"""A merchant's cards in Google Wallet: the class, each card's object and its messages.

The passes service decides what the object shows and what a message says (in the customer's
language); the push service makes the calls (``card.updated`` carries the object), so no
request to Google ever runs inside a database transaction here.
"""

from __future__ import annotations

from typing import Any

from services.contracts.messages import GoogleMessage
from services.core.settings import Settings
from services.integrations.google_wallet.callbacks import CALLBACK_PATH
from services.integrations.google_wallet.objects import (
    CardLink,
    CardText,
    GoogleCardView,
    GoogleClassView,
    loyalty_class,
    loyalty_object,
)
from services.merchants.google_wallet import card_object_id, class_id
from services.merchants.models import Merchant
from services.passes.card_view import (
    back_links,
    current_order,
    idle_status,
    is_open,
    order_number,
    status_sentence,
    store_locations,
)
from services.passes.journeys.referral import referral_link
from services.passes.marketing.slot import (
    coupon_offer,
    marketing_url,
    offer_key,
    shown_offers,
    words,
)
from services.passes.models import Card, PassDesign
from services.passes.texts import LOCALES, text

IMPORTANT_STATUSES = frozenset(
    {"shipped", "out_for_delivery", "delivered", "delivery_issue", "cancelled"}
)
"""What earns one of Google's 3 notifications a day; other changes arrive as plain messages."""


def class_body(merchant: Merchant, design: PassDesign, settings: Settings) -> dict[str, Any]:
    default = merchant.default_locale
    return loyalty_class(
        GoogleClassView(
            class_id=class_id(merchant),
            shop_name=design.organization_name,
            program_name=text("card.title", default, design.texts),
            logo_uri=f"{settings.base_url()}/assets/{merchant.slug}/logo@3x.png",
            locale=default,
            hex_background_color=design.background_color,
            callback_url=f"{settings.base_url()}{CALLBACK_PATH}",
            translated_program_names={
                locale: text("card.title", locale, design.texts)
                for locale in LOCALES
                if locale != default
            },
        )
    )


def object_body(
    merchant: Merchant, design: PassDesign, card: Card, base_url: str
) -> dict[str, Any]:
    """The card as Google shows it, worded in the customer's language: with the offers as
    text modules (newest first), their links, the "No offers, thanks" link to the customer's
    own page (as on the back of the Apple pass), the newest coupon code in the barcode while
    one is shown (as on the Apple pass), and the merchant's stores."""
    locale, own = card.locale, design.texts
    order = current_order(card.content)
    shipping = (order or {}).get("shipping") or {}
    status_key = f"status.{order['status']}" if order else idle_status(card.content)
    eta = shipping.get("estimated_delivery") if is_open(order) else None
    links = [
        CardLink(id=key, uri=url, description=text(f"back.{key}", locale, own))
        for key, url in back_links(
            design, card, order, referral=referral_link(merchant, design, card)
        ).items()
    ]
    offers: list[tuple[str, CardText]] = []
    for offer in shown_offers(card.content):
        title, body = words(offer, locale)
        if offer.get("coupon_code"):
            body = f"{body}\n{text('back.coupon', locale, own)}: {offer['coupon_code']}"
        offers.append((f"offer_{offer_key(offer['id'])}", CardText(title, body)))
        if offer.get("url"):
            links.append(
                CardLink(id=f"offer_{offer_key(offer['id'])}", uri=offer["url"], description=title)
            )
    links.append(
        CardLink(
            id="no_offers",
            uri=marketing_url(card, base_url),
            description=text("back.no_offers", locale, own),
        )
    )
    coupon = coupon_offer(card.content)
    return loyalty_object(
        GoogleCardView(
            object_id=card_object_id(merchant, card.serial_number),
            class_id=class_id(merchant),
            status=CardText(
                header=text("label.order", locale, own)
                + (f" {order_number(order)}" if order else ""),
                body=text(status_key, locale, own),
            ),
            barcode_value=str(coupon["coupon_code"]) if coupon else card.serial_number,
            barcode_text=str(coupon["coupon_code"]) if coupon else card.serial_number[:12].upper(),
            account_id=card.customer_id,
            account_name=card.customer_name,
            estimated_delivery=CardText(text("label.eta", locale, own), eta) if eta else None,
            carrier=CardText(text("label.carrier", locale, own), shipping["carrier"])
            if shipping.get("carrier")
            else None,
            links=links,
            support_phone=design.support_phone,
            support_label=text("back.support", locale, own),
            offers=offers,
            locations=[(lat, lon) for lat, lon, _ in store_locations(design, card)],
        )
    )


def status_message(design: PassDesign, card: Card) -> GoogleMessage | None:
    """The message for the status the card shows now, and whether it deserves a notification."""
    order = current_order(card.content)
    if order is None:
        return None
    return GoogleMessage(
        id=f"v{card.version}",
        header=text(f"status.{order['status']}", card.locale, design.texts),
        body=status_sentence(order, card.locale, design.texts),
        important=order["status"] in IMPORTANT_STATUSES,
    )

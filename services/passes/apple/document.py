"""What a card shows in Apple Wallet: pass.json and its per-card pass.strings.

The card shows the customer's most recent open order (or, once all are done, the last one):
header "Order 1001", the status as the primary field with a ``changeMessage`` (so the lock
screen says "Your order 1001: On its way"), the estimated delivery and the customer, the
carrier and tracking number, and on the back the items, total, links and support phone.

The marketing slot (``marketing/slot.py``): the newest offer's title is one field, ``offer``,
in the auxiliary row while the front has room (Apple's storeCard with a QR code shows at most
4 secondary and auxiliary fields), else first on the back. It is the only field with an
``offer.change`` message, and only in the version that announces the offer: an offer that
notifies changes exactly one field with a ``changeMessage``; a silent one, or one leaving the
card, changes none. Every shown offer's text, validity, coupon code and link are on the back,
then the "No offers, thanks" link. While an offer with a coupon is shown, the barcode carries
the newest coupon code (a cashier scans it); otherwise the card's serial number.

The merchant's stores are the pass's ``locations`` (``card_view.store_locations``): near one,
Wallet shows the card on the lock screen with its ``relevantText``.
"""

from __future__ import annotations

from typing import Any

from services.core.settings import Settings
from services.passes.apple.pkpass import MAX_SECONDARY_AND_AUXILIARY, check_field_limits, rgb
from services.passes.card_view import (
    back_links,
    current_order,
    idle_status,
    is_open,
    order_number,
    store_locations,
)
from services.passes.marketing.slot import (
    coupon_offer,
    marketing_url,
    notifying_offer,
    offer_key,
    shown_offers,
    words,
)
from services.passes.models import Card, PassDesign
from services.passes.texts import LOCALES, pass_strings

LINK_DETECTOR = ["PKDataDetectorTypeLink"]


def web_service_url(settings: Settings) -> str:
    return f"{settings.base_url()}/passkit"


def pass_strings_for(design: PassDesign, card: Card) -> dict[str, bytes]:
    number = order_number(current_order(card.content))
    return {locale: pass_strings(locale, design.texts, {"number": number}) for locale in LOCALES}


def pass_document(
    design: PassDesign, card: Card, settings: Settings, *, referral: str | None = None
) -> dict[str, Any]:
    """pass.json for the card as it is now. Labels and status values are pass.strings keys.
    ``referral``: the customer's referral link, while the merchant has one."""
    order = current_order(card.content)
    store_card = _front(card, order)
    store_card["backFields"] = _back(design, card, order, referral)
    _marketing_slot(card, store_card, consent_url=marketing_url(card, settings.base_url()))
    check_field_limits(store_card)
    document: dict[str, Any] = {
        "formatVersion": 1,
        "passTypeIdentifier": card.pass_type_identifier,
        "serialNumber": card.serial_number,
        "teamIdentifier": design.team_identifier,
        "organizationName": design.organization_name,
        "description": design.description,
        "webServiceURL": web_service_url(settings),
        "authenticationToken": card.authentication_token,
        "foregroundColor": rgb(design.foreground_color),
        "backgroundColor": rgb(design.background_color),
        "labelColor": rgb(design.label_color),
        "sharingProhibited": True,
        "barcodes": [_barcode(card)],
        "storeCard": store_card,
    }
    if design.logo_text:
        document["logoText"] = design.logo_text
    if locations := _locations(design, card):
        document["locations"] = locations
    return document


def _locations(design: PassDesign, card: Card) -> list[dict[str, Any]]:
    """pass.json ``locations``: latitude, longitude and, when there is one, ``relevantText``."""
    found = []
    for latitude, longitude, said in store_locations(design, card):
        entry: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
        if said is not None:
            entry["relevantText"] = said
        found.append(entry)
    return found


def _front(card: Card, order: dict[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    status = f"status.{order['status']}" if order else idle_status(card.content)
    front: dict[str, list[dict[str, Any]]] = {
        "headerFields": [],
        "primaryFields": [
            {
                "key": "status",
                "label": "label.status",
                "value": status,
                "changeMessage": "status.change",
            }
        ],
        "secondaryFields": [],
        "auxiliaryFields": [],
    }
    shipping = (order or {}).get("shipping") or {}
    if order:
        front["headerFields"].append(
            {"key": "order", "label": "label.order", "value": order_number(order)}
        )
    if is_open(order) and shipping.get("estimated_delivery"):
        front["secondaryFields"].append(
            {
                "key": "eta",
                "label": "label.eta",
                # Noon UTC shown as UTC: the shop's date, whatever the phone's time zone.
                "value": f"{shipping['estimated_delivery']}T12:00:00Z",
                "dateStyle": "PKDateStyleMedium",
                "timeStyle": "PKDateStyleNone",
                "ignoresTimeZone": True,
            }
        )
    if card.customer_name:
        front["secondaryFields"].append(
            {"key": "customer", "label": "label.customer", "value": card.customer_name}
        )
    if shipping.get("carrier"):
        front["auxiliaryFields"].append(
            {"key": "carrier", "label": "label.carrier", "value": shipping["carrier"]}
        )
    if shipping.get("tracking_number"):
        front["auxiliaryFields"].append(
            {"key": "tracking", "label": "label.tracking", "value": shipping["tracking_number"]}
        )
    return front


def _back(
    design: PassDesign, card: Card, order: dict[str, Any] | None, referral: str | None
) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = []
    order = order or {}
    if order.get("items"):
        lines = [f"{item.get('quantity', 1)}× {item['name']}" for item in order["items"]]
        fields.append({"key": "items", "label": "back.items", "value": "\n".join(lines)})
    total = order.get("total")
    if total:
        fields.append(
            {
                "key": "total",
                "label": "back.total",
                "value": float(total["amount"]),
                "currencyCode": total["currency"],
            }
        )
    for key, url in back_links(design, card, order, referral=referral).items():
        fields.append(
            {
                "key": f"link_{key}",
                "label": f"back.{key}",
                "value": url,
                "dataDetectorTypes": LINK_DETECTOR,
            }
        )
    if design.support_phone:
        fields.append(
            {
                "key": "support_phone",
                "label": "back.support",
                "value": design.support_phone,
                "dataDetectorTypes": ["PKDataDetectorTypePhoneNumber"],
            }
        )
    fields.append({"key": "about", "label": "back.about", "value": "about.text"})
    return fields


def _barcode(card: Card) -> dict[str, str]:
    """The newest shown coupon code while there is one (what a cashier scans), else the
    card's serial number. Latin-1 where it fits (what every scanner reads), else UTF-8."""
    coupon = coupon_offer(card.content)
    value = str(coupon["coupon_code"]) if coupon else card.serial_number
    try:
        value.encode("iso-8859-1")
        encoding = "iso-8859-1"
    except UnicodeEncodeError:
        encoding = "utf-8"
    return {
        "format": "PKBarcodeFormatQR",
        "message": value,
        "messageEncoding": encoding,
        "altText": value if coupon else card.serial_number[:12].upper(),
    }


def _marketing_slot(
    card: Card, store_card: dict[str, list[dict[str, Any]]], *, consent_url: str
) -> None:
    """The offers' fields on the front and back (see the module's docstring)."""
    offers = shown_offers(card.content)
    back = store_card["backFields"]
    details: list[dict[str, Any]] = []
    for offer in offers:
        key = f"offer_{offer_key(offer['id'])}"
        heading, body = words(offer, card.locale)
        details.append({"key": key, "label": heading, "value": body})
        details.append(
            {
                "key": f"{key}_until",
                "label": "back.offer_until",
                "value": offer["valid_until"],
                "dateStyle": "PKDateStyleMedium",
                "timeStyle": "PKDateStyleShort",
            }
        )
        if offer.get("coupon_code"):
            details.append(
                {"key": f"{key}_code", "label": "back.coupon", "value": offer["coupon_code"]}
            )
        if offer.get("url"):
            details.append(
                {
                    "key": f"{key}_link",
                    "label": "back.offer_link",
                    "value": offer["url"],
                    "dataDetectorTypes": LINK_DETECTOR,
                }
            )
    details.append(
        {
            "key": "no_offers",
            "label": "back.no_offers",
            "value": consent_url,
            "dataDetectorTypes": LINK_DETECTOR,
        }
    )
    about = len(back) - 1  # the offers go before "about this card", which stays last
    back[about:about] = details
    if not offers:
        return
    newest = offers[0]
    title: dict[str, Any] = {
        "key": "offer",
        "label": "label.offer",
        "value": words(newest, card.locale)[0],
    }
    if notifying_offer(card) == newest["id"]:
        title["changeMessage"] = "offer.change"
    front = len(store_card["secondaryFields"]) + len(store_card["auxiliaryFields"])
    if front < MAX_SECONDARY_AND_AUXILIARY:
        store_card["auxiliaryFields"].append(title)
    else:
        back.insert(0, title)

"""Loyalty class and object bodies for the Wallet API, built from plain values.

Field names are walletobjects v1's (the tests check every body against Google's discovery
document). The class is the merchant's: shop name, card title, logo, colour, callback URL and the
title's translations. The object is one customer's card, its texts already in their language.
Note that a LoyaltyObject has no colour of its own: the class's ``hexBackgroundColor`` applies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

HEX_COLOR = re.compile(r"#(?:[0-9A-Fa-f]{3}){1,2}")
PHONE_SEPARATORS = re.compile(r"[\s().-]")
PHONE_NUMBER = re.compile(r"\+?[0-9]+")


@dataclass(frozen=True, slots=True)
class GoogleClassView:
    """What the merchant's Loyalty class shows; ``program_name`` is the card's title."""

    class_id: str
    shop_name: str
    program_name: str
    logo_uri: str
    locale: str
    hex_background_color: str | None = None
    callback_url: str | None = None
    # Translations by language tag ("sk", "de", ...); ``locale`` holds the default wording.
    translated_program_names: Mapping[str, str] = field(default_factory=dict)
    translated_shop_names: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CardText:
    """A text module: a label and its value, both in the customer's language."""

    header: str
    body: str


@dataclass(frozen=True, slots=True)
class CardLink:
    """A link module entry; the stable ``id`` ("order", "tracking", ...) names it across updates."""

    id: str
    uri: str
    description: str


@dataclass(frozen=True, slots=True)
class GoogleCardView:
    """One customer's card as the Loyalty object shows it."""

    object_id: str
    class_id: str
    status: CardText
    barcode_value: str
    barcode_text: str | None = None
    account_id: str | None = None
    account_name: str | None = None
    estimated_delivery: CardText | None = None
    carrier: CardText | None = None
    links: Sequence[CardLink] = ()
    support_phone: str | None = None
    support_label: str = "Customer support"
    offers: Sequence[tuple[str, CardText]] = ()
    """Text modules of the offers on the card (stable id, title and text), newest first."""
    locations: Sequence[tuple[float, float]] | None = None
    """The merchant's stores (latitude, longitude), at most 10: ``merchantLocations``. An empty
    list takes them off the object (a PATCH keeps a field it does not name)."""


@dataclass(frozen=True, slots=True)
class WalletMessage:
    """A message on the card; Google does not deduplicate by ``id``, it only labels it.

    ``display_until`` ends its ``displayInterval``: Google shows it from when it is added until
    then (without an end, indefinitely), so an offer's message leaves the card when it expires.
    """

    id: str
    header: str
    body: str
    display_until: datetime | None = None


def loyalty_class(view: GoogleClassView) -> dict[str, Any]:
    """The LoyaltyClass body for insert and patch.

    ``reviewStatus`` is always UNDER_REVIEW: Google approves it automatically, and an approved
    class is updated by sending UNDER_REVIEW again.
    """
    body: dict[str, Any] = {
        "id": view.class_id,
        "issuerName": view.shop_name,
        "programName": view.program_name,
        "programLogo": {
            "sourceUri": {"uri": view.logo_uri},
            "contentDescription": _localized(view.locale, view.shop_name, {}),
        },
        "reviewStatus": "UNDER_REVIEW",
    }
    if view.hex_background_color is not None:
        if not HEX_COLOR.fullmatch(view.hex_background_color):
            raise ValueError("the background colour is not a hex colour such as #1f2937")
        body["hexBackgroundColor"] = view.hex_background_color
    if view.callback_url is not None:
        body["callbackOptions"] = {"url": view.callback_url}
    if view.translated_program_names:
        body["localizedProgramName"] = _localized(
            view.locale, view.program_name, view.translated_program_names
        )
    if view.translated_shop_names:
        body["localizedIssuerName"] = _localized(
            view.locale, view.shop_name, view.translated_shop_names
        )
    return body


def loyalty_object(view: GoogleCardView) -> dict[str, Any]:
    """The LoyaltyObject body for insert and patch.

    Text and link modules are always sent whole (PATCH replaces a list as a whole), so a
    value that disappears from the card disappears from the object too.
    """
    texts = [("status", view.status)]
    if view.estimated_delivery is not None:
        texts.append(("delivery", view.estimated_delivery))
    if view.carrier is not None:
        texts.append(("carrier", view.carrier))
    texts.extend(view.offers)
    links = [
        {"id": link.id, "uri": link.uri, "description": link.description} for link in view.links
    ]
    if view.support_phone:
        links.append(
            {"id": "support", "uri": tel_uri(view.support_phone), "description": view.support_label}
        )
    barcode: dict[str, Any] = {"type": "QR_CODE", "value": view.barcode_value}
    if view.barcode_text:
        barcode["alternateText"] = view.barcode_text
    body: dict[str, Any] = {
        "id": view.object_id,
        "classId": view.class_id,
        "state": "ACTIVE",
        "barcode": barcode,
        "textModulesData": [
            {"id": key, "header": text.header, "body": text.body} for key, text in texts
        ],
        "linksModuleData": {"uris": links},
    }
    if view.account_id:
        body["accountId"] = view.account_id
    if view.account_name:
        body["accountName"] = view.account_name
    if view.locations is not None:
        body["merchantLocations"] = [
            {"latitude": latitude, "longitude": longitude} for latitude, longitude in view.locations
        ]
    return body


def add_message_request(message: WalletMessage, *, notify: bool) -> dict[str, Any]:
    """An AddMessageRequest: TEXT_AND_NOTIFY notifies the phone, TEXT only adds the message."""
    body: dict[str, Any] = {
        "id": message.id,
        "header": message.header,
        "body": message.body,
        "messageType": "TEXT_AND_NOTIFY" if notify else "TEXT",
    }
    if message.display_until is not None:
        body["displayInterval"] = {"end": {"date": rfc3339(message.display_until)}}
    return {"message": body}


def rfc3339(moment: datetime) -> str:
    """An aware time as Google's ``DateTime.date`` takes it: ISO 8601 in UTC with ``Z`` (an
    absolute instant, the same moment wherever the customer is)."""
    if moment.tzinfo is None:
        raise ValueError("an aware time: a naive one would be read in the customer's zone")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def tel_uri(phone: str) -> str:
    """``tel:`` URI (RFC 3966, global number) of a phone number written for people."""
    number = PHONE_SEPARATORS.sub("", phone)
    if not PHONE_NUMBER.fullmatch(number):
        raise ValueError("a support phone number holds digits, an optional + and separators")
    return f"tel:{number}"


def _localized(locale: str, default: str, translations: Mapping[str, str]) -> dict[str, Any]:
    """A LocalizedString: ``default`` in ``locale``, plus the other languages' wording."""
    localized: dict[str, Any] = {"defaultValue": {"language": locale, "value": default}}
    others = [
        {"language": language, "value": value}
        for language, value in sorted(translations.items())
        if language != locale
    ]
    if others:
        localized["translatedValues"] = others
    return localized

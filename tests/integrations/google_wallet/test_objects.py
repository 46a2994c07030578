"""Loyalty class and object bodies: Google's field names, and what the Apple card carries."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.integrations.google_wallet.client import object_id
from services.integrations.google_wallet.objects import (
    CardLink,
    CardText,
    GoogleCardView,
    GoogleClassView,
    WalletMessage,
    add_message_request,
    loyalty_class,
    loyalty_object,
    tel_uri,
)
from tests.integrations.google_wallet.conftest import ISSUER_ID
from tests.integrations.google_wallet.schema import validate

CLASS_ID = f"{ISSUER_ID}.shop-card"


def class_view(**changes: object) -> GoogleClassView:
    values: dict[str, object] = {
        "class_id": CLASS_ID,
        "shop_name": "Shop",
        "program_name": "Your orders",
        "logo_uri": "https://passpost.test/static/shop/logo.png",
        "locale": "en",
        "hex_background_color": "#1f2937",
        "callback_url": "https://passpost.test/google/callbacks",
        "translated_program_names": {"en": "Your orders", "sk": "Vaše objednávky"},
    }
    values.update(changes)
    return GoogleClassView(**values)  # type: ignore[arg-type]


def card_view(**changes: object) -> GoogleCardView:
    values: dict[str, object] = {
        "object_id": object_id(ISSUER_ID, "0f3c9a7e5b1d4c2a8e6f"),
        "class_id": CLASS_ID,
        "status": CardText("Stav", "Odoslaná"),
        "barcode_value": "0f3c9a7e5b1d4c2a8e6f",
        "barcode_text": "0F3C9A7E5B1D",
        "account_id": "C-1001",
        "account_name": "Jana Nováková",
        "estimated_delivery": CardText("Doručenie", "štvrtok 12. 6."),
        "carrier": CardText("Dopravca", "Packeta"),
        "links": (
            CardLink("order", "https://shop.test/orders/1001", "Detail objednávky"),
            CardLink("tracking", "https://tracking.test/Z123", "Sledovať zásielku"),
        ),
        "support_phone": "+421 900 123 456",
        "support_label": "Zákaznícka podpora",
    }
    values.update(changes)
    return GoogleCardView(**values)  # type: ignore[arg-type]


def test_class_body_fits_googles_schema() -> None:
    body = loyalty_class(class_view())
    validate("LoyaltyClass", body)
    assert body["id"] == CLASS_ID
    assert body["issuerName"] == "Shop"
    assert body["programName"] == "Your orders"
    assert body["programLogo"]["sourceUri"] == {"uri": "https://passpost.test/static/shop/logo.png"}
    assert body["hexBackgroundColor"] == "#1f2937"
    assert body["reviewStatus"] == "UNDER_REVIEW"
    assert body["callbackOptions"] == {"url": "https://passpost.test/google/callbacks"}
    assert body["localizedProgramName"] == {
        "defaultValue": {"language": "en", "value": "Your orders"},
        "translatedValues": [{"language": "sk", "value": "Vaše objednávky"}],
    }
    assert "localizedIssuerName" not in body


def test_class_without_options_leaves_them_out() -> None:
    body = loyalty_class(
        class_view(
            hex_background_color=None,
            callback_url=None,
            translated_program_names={},
            translated_shop_names={"de": "Laden"},
        )
    )
    validate("LoyaltyClass", body)
    assert {"hexBackgroundColor", "callbackOptions", "localizedProgramName"}.isdisjoint(body)
    assert body["localizedIssuerName"]["translatedValues"] == [{"language": "de", "value": "Laden"}]


@pytest.mark.parametrize("color", ["1f2937", "#1f29", "#gggggg", "red"])
def test_class_refuses_what_is_not_a_hex_colour(color: str) -> None:
    with pytest.raises(ValueError, match="hex colour"):
        loyalty_class(class_view(hex_background_color=color))


def test_object_body_fits_googles_schema_and_carries_the_card() -> None:
    body = loyalty_object(card_view())
    validate("LoyaltyObject", body)
    assert body["id"] == f"{ISSUER_ID}.0f3c9a7e5b1d4c2a8e6f"
    assert body["classId"] == CLASS_ID
    assert body["state"] == "ACTIVE"
    assert body["accountId"] == "C-1001"
    assert body["accountName"] == "Jana Nováková"
    assert body["barcode"] == {
        "type": "QR_CODE",
        "value": "0f3c9a7e5b1d4c2a8e6f",
        "alternateText": "0F3C9A7E5B1D",
    }
    assert body["textModulesData"] == [
        {"id": "status", "header": "Stav", "body": "Odoslaná"},
        {"id": "delivery", "header": "Doručenie", "body": "štvrtok 12. 6."},
        {"id": "carrier", "header": "Dopravca", "body": "Packeta"},
    ]
    assert body["linksModuleData"]["uris"] == [
        {"id": "order", "uri": "https://shop.test/orders/1001", "description": "Detail objednávky"},
        {"id": "tracking", "uri": "https://tracking.test/Z123", "description": "Sledovať zásielku"},
        {"id": "support", "uri": "tel:+421900123456", "description": "Zákaznícka podpora"},
    ]


def test_a_bare_card_still_sends_its_modules_so_a_patch_clears_old_ones() -> None:
    body = loyalty_object(
        card_view(
            barcode_text=None,
            account_id=None,
            account_name=None,
            estimated_delivery=None,
            carrier=None,
            links=(),
            support_phone=None,
        )
    )
    validate("LoyaltyObject", body)
    assert body["textModulesData"] == [{"id": "status", "header": "Stav", "body": "Odoslaná"}]
    assert body["linksModuleData"] == {"uris": []}
    assert body["barcode"] == {"type": "QR_CODE", "value": "0f3c9a7e5b1d4c2a8e6f"}
    assert {"accountId", "accountName"}.isdisjoint(body)


@pytest.mark.parametrize(("notify", "message_type"), [(True, "TEXT_AND_NOTIFY"), (False, "TEXT")])
def test_message_request_fits_googles_schema(notify: bool, message_type: str) -> None:
    body = add_message_request(WalletMessage("v7", "Shipped", "On its way"), notify=notify)
    validate("AddMessageRequest", body)
    assert body == {
        "message": {
            "id": "v7",
            "header": "Shipped",
            "body": "On its way",
            "messageType": message_type,
        }
    }


def test_a_message_with_an_end_is_displayed_until_then() -> None:
    ends = datetime(2026, 12, 24, 23, 0, tzinfo=timezone(timedelta(hours=1)))
    body = add_message_request(WalletMessage("offer-x", "20 % off", "Today", ends), notify=True)
    validate("AddMessageRequest", body)
    assert body["message"]["displayInterval"] == {"end": {"date": "2026-12-24T22:00:00Z"}}
    with pytest.raises(ValueError, match="aware"):
        add_message_request(
            WalletMessage("offer-x", "h", "b", datetime(2026, 12, 24)),
            notify=False,
        )


@pytest.mark.parametrize(
    ("phone", "uri"),
    [
        ("+421 900 123 456", "tel:+421900123456"),
        ("+1 (555) 010-0199", "tel:+15550100199"),
        ("0800.123.456", "tel:0800123456"),
    ],
)
def test_support_phone_becomes_a_tel_uri(phone: str, uri: str) -> None:
    assert tel_uri(phone) == uri


@pytest.mark.parametrize("phone", ["", "call us", "+421 900 123 456 ext. 7", "++421"])
def test_what_is_not_a_phone_number_is_refused(phone: str) -> None:
    with pytest.raises(ValueError, match="phone"):
        tel_uri(phone)


def test_object_ids_keep_to_googles_characters() -> None:
    assert object_id(ISSUER_ID, "card_1.v-2") == f"{ISSUER_ID}.card_1.v-2"
    for suffix in ("", "a b", "a/b", "ä", "a?b"):
        with pytest.raises(ValueError, match="suffix"):
            object_id(ISSUER_ID, suffix)
    with pytest.raises(ValueError, match="issuer id"):
        object_id("issuer", "card")

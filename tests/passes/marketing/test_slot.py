"""The marketing slot on the Apple pass: where the title goes, which field notifies and when,
the barcode, and the wording (the shop's own texts for its offer, the merchant's overrides)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import OfferText, OfferView
from services.core.settings import Settings
from services.passes.apple.document import pass_document
from services.passes.marketing import slot
from services.passes.texts import check_override, pass_strings, text
from tests.factories import create_card, create_merchant

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BUSY_ORDER = {
    "id": "A-1",
    "revision": 1,
    "status": "shipped",
    "placed_at": "2026-11-30T10:00:00+00:00",
    "number": "1001",
    "shipping": {"carrier": "DPD", "tracking_number": "01234", "estimated_delivery": "2026-12-03"},
}


def _offer(offer_id: str, minutes: int, **fields: object) -> dict[str, object]:
    view = OfferView.model_validate(
        {
            "id": offer_id,
            "title": f"Offer {offer_id}",
            "text": "Something nice.",
            "valid_until": NOON + timedelta(days=3),
            "created_at": NOON + timedelta(minutes=minutes),
            **fields,
        }
    )
    return view.model_dump(mode="json")


async def test_a_full_front_puts_the_title_first_on_the_back(
    session: AsyncSession, settings: Settings
) -> None:
    shop = await create_merchant(session, settings)
    card = await create_card(session, shop, name="Jana")
    card.content = slot.with_offer({"orders": {"A-1": BUSY_ORDER}}, _offer("a", 0))
    slot.announced(card, "a")
    document = pass_document(shop.design, card, settings)
    front = document["storeCard"]
    assert len(front["secondaryFields"]) + len(front["auxiliaryFields"]) == 4, (
        "eta, name, carrier, tracking"
    )
    title = front["backFields"][0]
    assert (title["key"], title["value"], title["changeMessage"]) == (
        "offer",
        "Offer a",
        "offer.change",
    )
    assert "offer" not in {f["key"] for f in front["auxiliaryFields"]}


async def test_the_newest_offer_is_on_the_front_and_notifies_only_in_its_version(
    session: AsyncSession, settings: Settings
) -> None:
    shop = await create_merchant(session, settings)
    card = await create_card(session, shop, name=None)
    content = slot.with_offer({}, _offer("old", 0, coupon_code="OLD5"))
    card.content = slot.with_offer(content, _offer("new", 5))
    slot.announced(card, "new")
    document = pass_document(shop.design, card, settings)
    [title] = document["storeCard"]["auxiliaryFields"]
    assert (title["value"], title["changeMessage"]) == ("Offer new", "offer.change")
    backs = [f["label"] for f in document["storeCard"]["backFields"]]
    assert backs.index("Offer new") < backs.index("Offer old"), "every valid offer on the back"
    assert backs[-2:] == ["back.no_offers", "back.about"]
    assert document["barcodes"][0]["message"] == "OLD5", "the newest offer with a coupon"
    card.version += 1  # the next version (a status change, a silent offer...)
    document = pass_document(shop.design, card, settings)
    assert "changeMessage" not in document["storeCard"]["auxiliaryFields"][0]


async def test_the_shops_own_wording_wins_and_a_coupon_outside_latin_1_scans(
    session: AsyncSession, settings: Settings
) -> None:
    shop = await create_merchant(session, settings)
    card = await create_card(session, shop, locale="de", name=None)
    texts = {"de": OfferText(title="Tee -10 %", text="Jeder Tee.").model_dump()}
    card.content = slot.with_offer({}, _offer("a", 0, texts=texts, coupon_code="ЧАЙ10"))
    document = pass_document(shop.design, card, settings)
    assert document["storeCard"]["auxiliaryFields"][0]["value"] == "Tee -10 %"
    barcode = document["barcodes"][0]
    assert (barcode["message"], barcode["messageEncoding"], barcode["altText"]) == (
        "ЧАЙ10",
        "utf-8",
        "ЧАЙ10",
    )


def test_marketing_texts_in_every_language_and_the_merchants_own() -> None:
    for key in ("label.offer", "offer.change", "back.no_offers", "marketing.on", "marketing.off"):
        assert {text(key, locale) for locale in ("en", "sk", "cs", "pl", "ru", "de")} != {
            text(key, "en")
        }, key
    own = {"cs": {"offer.change": "Pro vás máme: %@"}}
    assert b'"offer.change" = "Pro v\xc3\xa1s m\xc3\xa1me: %@";' in pass_strings("cs", own, {})
    with pytest.raises(ValueError, match=r"offer\.change must contain %@"):
        check_override("cs", "offer.change", "Pro vás máme něco")

"""The add-to-wallet page behind a card's link: server-rendered, no JavaScript, one card only.

The phone's platform (from its User-Agent) decides which button comes first; a desktop browser
also gets a QR code of the page, to open it on the phone. Once an order is delivered, the page
asks how it was (``feedback/form.py``; the form posts to ``/c/{link}/feedback``).
"""

from __future__ import annotations

import html
import io
from functools import cache
from importlib import resources
from string import Template
from typing import Literal

import segno

from services.merchants.models import Merchant
from services.passes.card_view import current_order, idle_status, status_sentence
from services.passes.feedback.form import FORM_STYLE, feedback_form
from services.passes.models import Card, PassDesign
from services.passes.texts import LOCALES, text

Platform = Literal["ios", "android", "desktop"]

PAGE_TEXTS: dict[str, dict[str, str]] = {
    "page.intro": {
        "en": "Keep this card in your wallet: it shows your order and tells you when it moves.",
        "sk": "Uložte si túto kartu do peňaženky: ukáže vašu objednávku a dá vedieť, keď sa pohne.",
        "cs": "Uložte si tuto kartu do peněženky: ukáže vaši objednávku a dá vědět, když se pohne.",
        "pl": "Zachowaj tę kartę w portfelu: pokaże Twoje zamówienie i da znać, gdy się ruszy.",
        "ru": "Сохраните эту карту в кошельке: она покажет ваш заказ и сообщит о каждом шаге.",
        "de": "Legen Sie diese Karte in Ihre Wallet: Sie zeigt Ihre Bestellung und meldet jeden "
        "Schritt.",
    },
    "page.preparing": {
        "en": "Your card is being prepared: your order shows on it in a moment. You can add it "
        "to your wallet now.",
        "sk": "Vašu kartu pripravujeme: objednávka sa na nej o chvíľu zobrazí. Do peňaženky si "
        "ju môžete pridať už teraz.",
        "cs": "Vaši kartu připravujeme: objednávka se na ní za chvíli zobrazí. Do peněženky si "
        "ji můžete přidat už teď.",
        "pl": "Przygotowujemy Twoją kartę: zamówienie pojawi się na niej za chwilę. Możesz już "
        "dodać ją do portfela.",
        "ru": "Мы готовим вашу карту: заказ появится на ней через минуту. Добавить её в кошелёк "
        "можно уже сейчас.",
        "de": "Ihre Karte wird vorbereitet: Ihre Bestellung erscheint gleich darauf. Sie können "
        "sie schon jetzt in Ihre Wallet legen.",
    },
    "page.apple": {
        "en": "Add to Apple Wallet",
        "sk": "Pridať do Apple Wallet",
        "cs": "Přidat do Apple Wallet",
        "pl": "Dodaj do Apple Wallet",
        "ru": "Добавить в Apple Wallet",
        "de": "Zu Apple Wallet hinzufügen",
    },
    "page.order": {
        "en": "Track in Apple Wallet",
        "sk": "Sledovať v Apple Wallet",
        "cs": "Sledovat v Apple Wallet",
        "pl": "Śledź w Apple Wallet",
        "ru": "Отслеживать в Apple Wallet",
        "de": "In Apple Wallet verfolgen",
    },
    "page.google": {
        "en": "Save to Google Wallet",
        "sk": "Uložiť do Peňaženky Google",
        "cs": "Uložit do Peněženky Google",
        "pl": "Zapisz w Portfelu Google",
        "ru": "Сохранить в Google Кошельке",
        "de": "In Google Wallet speichern",
    },
    "page.qr": {
        "en": "On a computer? Scan this with your phone.",
        "sk": "Ste na počítači? Naskenujte kód telefónom.",
        "cs": "Jste na počítači? Naskenujte kód telefonem.",
        "pl": "Jesteś na komputerze? Zeskanuj kod telefonem.",
        "ru": "Вы за компьютером? Отсканируйте код телефоном.",
        "de": "Am Computer? Scannen Sie den Code mit dem Telefon.",
    },
}
APPLE_ICON = (
    '<svg viewBox="0 0 24 24" aria-hidden="true"><rect x="3" y="5" width="18" height="14" rx="3"'
    ' fill="#fff"/><rect x="3" y="8" width="18" height="3" fill="#34c759"/><rect x="3" y="11"'
    ' width="18" height="3" fill="#ff9500"/></svg>'
)
GOOGLE_ICON = (
    '<svg viewBox="0 0 24 24" aria-hidden="true"><rect x="3" y="5" width="18" height="14" rx="3"'
    ' fill="#4285f4"/><rect x="3" y="9" width="18" height="3" fill="#34a853"/><rect x="3"'
    ' y="12" width="18" height="3" fill="#fbbc04"/></svg>'
)


def platform_of(user_agent: str) -> Platform:
    if any(device in user_agent for device in ("iPhone", "iPad", "iPod")):
        return "ios"
    if "Android" in user_agent:
        return "android"
    return "desktop"


def locale_of(accept_language: str) -> str | None:
    """The first of the visitor's languages (``Accept-Language``, in the order given) that
    cards are worded in; ``None`` when there is none."""
    for item in accept_language.split(",")[:20]:
        language = item.split(";", 1)[0].strip().split("-", 1)[0].lower()
        if language in LOCALES:
            return language
    return None


def _page_text(key: str, locale: str) -> str:
    values = PAGE_TEXTS[key]
    return values.get(locale, values["en"])


@cache
def _template() -> Template:
    source = resources.files("services.passes").joinpath("templates/landing.html")
    return Template(source.read_text(encoding="utf-8"))


def _qr_svg(url: str) -> str:
    buffer = io.BytesIO()
    segno.make_qr(url, error="m").save(
        buffer, kind="svg", xmldecl=False, svgns=True, border=2, scale=1, omitsize=True
    )
    return buffer.getvalue().decode()


NOT_FOUND_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    "<title>No card here</title></head><body><h1>No card here</h1>"
    "<p>This link leads to no card. Please check the link the shop sent you.</p>"
    "</body></html>"
)
"""What a browser shows for a ``/c/{link}`` that leads to no card (the shop's name is unknown)."""


def render(
    merchant: Merchant,
    design: PassDesign,
    card: Card,
    *,
    page_url: str,
    apple_url: str,
    google_url: str | None,
    logo_url: str,
    platform: Platform,
    order_url: str | None = None,
) -> str:
    """The page; ``order_url``: the latest order's Wallet order, offered beside the card on
    an iPhone (Wallet Orders need iOS 16; elsewhere the card is what a visitor can add)."""
    locale = card.locale if card.locale in LOCALES else merchant.default_locale
    own = design.texts
    order = current_order(card.content)
    if order is not None:
        status = status_sentence(order, locale, own)
    elif idle_status(card.content) == "status.preparing":
        status = _page_text("page.preparing", locale)
    else:
        status = text("status.welcome", locale, own)
    apple = _button("apple", apple_url, _page_text("page.apple", locale), APPLE_ICON)
    buttons = [apple]
    if order_url and platform == "ios":
        label = _page_text("page.order", locale)
        buttons.append(_button("apple-order", order_url, label, APPLE_ICON))
    if google_url:
        google = _button("google", google_url, _page_text("page.google", locale), GOOGLE_ICON)
        buttons = [google, *buttons] if platform == "android" else [*buttons, google]
    escape = html.escape
    return _template().substitute(
        lang=escape(locale),
        title=escape(f"{design.organization_name} · {text('card.title', locale, own)}"),
        background=escape(design.background_color),
        foreground=escape(design.foreground_color),
        platform=platform,
        logo=escape(logo_url),
        shop=escape(design.organization_name),
        status=escape(status),
        card_title=escape(text("card.title", locale, own)),
        intro=escape(_page_text("page.intro", locale)),
        buttons="\n".join(buttons),
        qr_hint=escape(_page_text("page.qr", locale)),
        qr=_qr_svg(page_url) if platform == "desktop" else "",
        no_offers_url=escape(f"{page_url}/marketing"),
        no_offers=escape(text("back.no_offers", locale, own)),
        form_style=FORM_STYLE,
        feedback=feedback_form(design, card, locale),
    )


def _button(name: str, url: str, label: str, icon: str) -> str:
    return (
        f'    <a class="wallet {name}" id="{name}" href="{html.escape(url)}" rel="nofollow">'
        f"{icon}<span>{html.escape(label)}</span></a>"
    )

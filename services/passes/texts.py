"""The card's words in each language we ship; every language carries the same keys."""

from __future__ import annotations

LOCALES = ("en", "sk", "cs", "pl", "ru", "de")

TEXTS: dict[str, dict[str, str]] = {
    "label.status": {
        "en": "Status",
        "sk": "Stav",
        "cs": "Stav",
        "pl": "Status",
        "ru": "Статус",
        "de": "Status",
    },
    "status.welcome": {
        "en": "Welcome",
        "sk": "Vitajte",
        "cs": "Vítejte",
        "pl": "Witamy",
        "ru": "Добро пожаловать",
        "de": "Willkommen",
    },
    "status.change": {
        "en": "%@",
        "sk": "%@",
        "cs": "%@",
        "pl": "%@",
        "ru": "%@",
        "de": "%@",
    },
    "label.customer": {
        "en": "Customer",
        "sk": "Zákazník",
        "cs": "Zákazník",
        "pl": "Klient",
        "ru": "Клиент",
        "de": "Kunde",
    },
    "back.order": {
        "en": "Order details",
        "sk": "Detail objednávky",
        "cs": "Detail objednávky",
        "pl": "Szczegóły zamówienia",
        "ru": "Детали заказа",
        "de": "Bestelldetails",
    },
    "back.tracking": {
        "en": "Track your parcel",
        "sk": "Sledovať zásielku",
        "cs": "Sledovat zásilku",
        "pl": "Śledź przesyłkę",
        "ru": "Отследить посылку",
        "de": "Sendung verfolgen",
    },
    "back.returns": {
        "en": "Returns and complaints",
        "sk": "Vrátenie a reklamácie",
        "cs": "Vrácení a reklamace",
        "pl": "Zwroty i reklamacje",
        "ru": "Возвраты и претензии",
        "de": "Rücksendungen und Reklamationen",
    },
    "back.account": {
        "en": "Your account",
        "sk": "Váš účet",
        "cs": "Váš účet",
        "pl": "Twoje konto",
        "ru": "Ваш аккаунт",
        "de": "Ihr Konto",
    },
    "back.support": {
        "en": "Customer support",
        "sk": "Zákaznícka podpora",
        "cs": "Zákaznická podpora",
        "pl": "Obsługa klienta",
        "ru": "Служба поддержки",
        "de": "Kundenservice",
    },
    "back.about": {
        "en": "About this card",
        "sk": "O tejto karte",
        "cs": "O této kartě",
        "pl": "O tej karcie",
        "ru": "Об этой карте",
        "de": "Über diese Karte",
    },
    "about.text": {
        "en": "This card shows your latest order and updates itself as it moves.",
        "sk": "Táto karta ukazuje vašu poslednú objednávku a sama sa aktualizuje.",
        "cs": "Tato karta ukazuje vaši poslední objednávku a sama se aktualizuje.",
        "pl": "Ta karta pokazuje Twoje ostatnie zamówienie i sama się aktualizuje.",
        "ru": "Эта карта показывает ваш последний заказ и обновляется сама.",
        "de": "Diese Karte zeigt Ihre letzte Bestellung und aktualisiert sich selbst.",
    },
}


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def pass_strings(locale: str) -> bytes:
    """``pass.strings`` for one language (UTF-8, which Wallet reads as it reads UTF-16)."""
    lines = [f'"{_escape(key)}" = "{_escape(values[locale])}";' for key, values in TEXTS.items()]
    return ("\n".join(lines) + "\n").encode("utf-8")


def text(key: str, locale: str) -> str:
    """One string in ``locale``, falling back to English."""
    values = TEXTS[key]
    return values.get(locale, values["en"])

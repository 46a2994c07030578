"""The card's words in each language we ship; every language carries the same keys.

Labels and status values in pass.json are keys of these texts; Wallet shows them in the
phone's language. A merchant may override any text per language (``PassDesign.texts``).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from services.contracts.orders import CARD_LANGUAGES

LOCALES = CARD_LANGUAGES


def _t(en: str, sk: str, cs: str, pl: str, ru: str, de: str) -> dict[str, str]:
    return {"en": en, "sk": sk, "cs": cs, "pl": pl, "ru": ru, "de": de}


TEXTS: dict[str, dict[str, str]] = {
    "card.title": _t(
        "Customer card",
        "Zákaznícka karta",
        "Zákaznická karta",
        "Karta klienta",
        "Карта клиента",
        "Kundenkarte",
    ),
    "label.status": _t("Status", "Stav", "Stav", "Status", "Статус", "Status"),
    "label.order": _t("Order", "Objednávka", "Objednávka", "Zamówienie", "Заказ", "Bestellung"),
    "label.eta": _t("Arrives", "Doručenie", "Doručení", "Dostawa", "Доставка", "Zustellung"),
    "label.carrier": _t("Carrier", "Dopravca", "Dopravce", "Przewoźnik", "Перевозчик", "Versand"),
    "label.tracking": _t(
        "Tracking number",
        "Číslo zásielky",
        "Číslo zásilky",
        "Numer przesyłki",
        "Трек-номер",
        "Sendungsnummer",
    ),
    "label.customer": _t("Customer", "Zákazník", "Zákazník", "Klient", "Клиент", "Kunde"),
    "status.welcome": _t(
        "Welcome", "Vitajte", "Vítejte", "Witamy", "Добро пожаловать", "Willkommen"
    ),
    "status.preparing": _t(
        "Being prepared",
        "Pripravujeme",
        "Připravujeme",
        "Przygotowujemy",
        "Готовим",
        "Wird vorbereitet",
    ),
    "status.placed": _t(
        "Order received",
        "Objednávka prijatá",
        "Objednávka přijata",
        "Zamówienie przyjęte",
        "Заказ принят",
        "Bestellung eingegangen",
    ),
    "status.confirmed": _t(
        "Confirmed", "Potvrdená", "Potvrzena", "Potwierdzone", "Подтверждён", "Bestätigt"
    ),
    "status.processing": _t(
        "Being packed", "Balíme", "Balíme", "Pakujemy", "Собираем", "Wird verpackt"
    ),
    "status.shipped": _t("On its way", "Na ceste", "Na cestě", "W drodze", "В пути", "Unterwegs"),
    "status.out_for_delivery": _t(
        "Out for delivery", "U kuriéra", "U kurýra", "U kuriera", "У курьера", "In Zustellung"
    ),
    "status.delivered": _t(
        "Delivered", "Doručená", "Doručena", "Dostarczone", "Доставлен", "Zugestellt"
    ),
    "status.ready_for_pickup": _t(
        "Ready for pickup",
        "Pripravená na vyzdvihnutie",
        "Připravena k vyzvednutí",
        "Gotowe do odbioru",
        "Готов к выдаче",
        "Abholbereit",
    ),
    "status.picked_up": _t(
        "Picked up", "Vyzdvihnutá", "Vyzvednuta", "Odebrane", "Получен", "Abgeholt"
    ),
    "status.delivery_issue": _t(
        "Delivery problem",
        "Problém s doručením",
        "Problém s doručením",
        "Problem z dostawą",
        "Проблема с доставкой",
        "Zustellproblem",
    ),
    "status.cancelled": _t("Cancelled", "Zrušená", "Zrušena", "Anulowane", "Отменён", "Storniert"),
    "status.returned": _t(
        "Returned", "Vrátená", "Vrácena", "Zwrócone", "Возвращён", "Zurückgesendet"
    ),
    "status.refunded": _t(
        "Refunded",
        "Peniaze vrátené",
        "Peníze vráceny",
        "Pieniądze zwrócone",
        "Деньги возвращены",
        "Erstattet",
    ),
    "status.change": _t(
        "Your order {number}: %@",
        "Vaša objednávka {number}: %@",
        "Vaše objednávka {number}: %@",
        "Twoje zamówienie {number}: %@",
        "Ваш заказ {number}: %@",
        "Ihre Bestellung {number}: %@",
    ),
    "label.offer": _t("For you", "Pre vás", "Pro vás", "Dla Ciebie", "Для вас", "Für Sie"),
    "offer.change": _t(
        "New for you: %@",
        "Novinka pre vás: %@",
        "Novinka pro vás: %@",
        "Nowość dla Ciebie: %@",
        "Новое для вас: %@",
        "Neu für Sie: %@",
    ),
    "back.offer_until": _t(
        "Valid until", "Platí do", "Platí do", "Ważne do", "Действует до", "Gültig bis"
    ),
    "back.coupon": _t(
        "Coupon code", "Kód kupónu", "Kód kupónu", "Kod kuponu", "Промокод", "Gutscheincode"
    ),
    "back.offer_link": _t(
        "See the offer",
        "Pozrieť ponuku",
        "Zobrazit nabídku",
        "Zobacz ofertę",
        "Посмотреть предложение",
        "Zum Angebot",
    ),
    "back.no_offers": _t(
        "No offers, thanks",
        "Ponuky nie, ďakujem",
        "Nabídky ne, děkuji",
        "Bez ofert, dziękuję",
        "Без предложений, спасибо",
        "Keine Angebote, danke",
    ),
    "marketing.title": _t(
        "Offers on your card",
        "Ponuky na vašej karte",
        "Nabídky na vaší kartě",
        "Oferty na Twojej karcie",
        "Предложения на вашей карте",
        "Angebote auf Ihrer Karte",
    ),
    "marketing.on": _t(
        "This card may show you offers: at most one notification a day, never at night.",
        "Táto karta vám môže ukázať ponuky: najviac jedno upozornenie denne, nikdy v noci.",
        "Tato karta vám může ukázat nabídky: nejvýš jedno upozornění denně, nikdy v noci.",
        "Ta karta może pokazywać oferty: najwyżej jedno powiadomienie dziennie, nigdy w nocy.",
        "Эта карта может показывать предложения: не больше одного уведомления в день, "
        "никогда ночью.",
        "Diese Karte kann Ihnen Angebote zeigen: höchstens eine Mitteilung am Tag, nie nachts.",
    ),
    "marketing.off": _t(
        "This card shows you no offers. Your order updates still arrive.",
        "Táto karta vám neukazuje ponuky. Správy o objednávkach chodia ďalej.",
        "Tato karta vám neukazuje nabídky. Zprávy o objednávkách chodí dál.",
        "Ta karta nie pokazuje ofert. Informacje o zamówieniach nadal przychodzą.",
        "Эта карта не показывает предложений. Новости о заказах приходят как прежде.",
        "Diese Karte zeigt Ihnen keine Angebote. Bestellneuigkeiten kommen weiter.",
    ),
    "marketing.opt_in": _t(
        "Show me offers again",
        "Ukážte mi ponuky znova",
        "Ukažte mi nabídky znovu",
        "Pokazuj mi znowu oferty",
        "Снова показывать предложения",
        "Angebote wieder zeigen",
    ),
    "marketing.done_off": _t(
        "Done: no more offers on this card.",
        "Hotovo: žiadne ďalšie ponuky na tejto karte.",
        "Hotovo: žádné další nabídky na této kartě.",
        "Gotowe: koniec ofert na tej karcie.",
        "Готово: больше никаких предложений на этой карте.",
        "Erledigt: keine Angebote mehr auf dieser Karte.",
    ),
    "marketing.done_on": _t(
        "Done: offers are welcome on this card again.",
        "Hotovo: ponuky sú na tejto karte opäť vítané.",
        "Hotovo: nabídky jsou na této kartě zase vítány.",
        "Gotowe: oferty znów są mile widziane na tej karcie.",
        "Готово: предложения снова появятся на этой карте.",
        "Erledigt: Angebote sind auf dieser Karte wieder willkommen.",
    ),
    "back.review": _t(
        "Enjoyed it? Leave a review",
        "Páčilo sa vám? Napíšte recenziu",
        "Líbilo se vám? Napište recenzi",
        "Podobało się? Wystaw opinię",
        "Понравилось? Оставьте отзыв",
        "Gefallen? Schreiben Sie eine Bewertung",
    ),
    "back.sorry": _t(
        "We're sorry: talk to us",
        "Mrzí nás to: ozvite sa nám",
        "Mrzí nás to: ozvěte se nám",
        "Przykro nam: porozmawiaj z nami",
        "Нам жаль: расскажите нам",
        "Das tut uns leid: sprechen Sie mit uns",
    ),
    "feedback.title": _t(
        "How was your order {number}?",
        "Ako ste boli spokojní s objednávkou {number}?",
        "Jak jste byli spokojeni s objednávkou {number}?",
        "Jak oceniasz zamówienie {number}?",
        "Как вам заказ {number}?",
        "Wie war Ihre Bestellung {number}?",
    ),
    "feedback.question": _t(
        "How likely are you to recommend us to a friend? 0: not at all, 10: definitely.",
        "Aká je šanca, že nás odporučíte známemu? 0: vôbec, 10: určite.",
        "Jaká je šance, že nás doporučíte známému? 0: vůbec, 10: určitě.",
        "Jak bardzo prawdopodobne jest, że polecisz nas znajomym? 0: wcale, 10: na pewno.",
        "Насколько вероятно, что вы порекомендуете нас друзьям? 0: ни за что, 10: обязательно.",
        "Wie wahrscheinlich empfehlen Sie uns weiter? 0: gar nicht, 10: ganz sicher.",
    ),
    "feedback.comment": _t(
        "Anything you would like to tell us? (optional)",
        "Chcete nám niečo odkázať? (nepovinné)",
        "Chcete nám něco vzkázat? (nepovinné)",
        "Chcesz nam coś przekazać? (opcjonalnie)",
        "Хотите что-нибудь добавить? (необязательно)",
        "Möchten Sie uns etwas sagen? (optional)",
    ),
    "feedback.send": _t("Send", "Odoslať", "Odeslat", "Wyślij", "Отправить", "Senden"),
    "feedback.thanks": _t(
        "Thank you for your rating.",
        "Ďakujeme za vaše hodnotenie.",
        "Děkujeme za vaše hodnocení.",
        "Dziękujemy za Twoją ocenę.",
        "Спасибо за вашу оценку.",
        "Danke für Ihre Bewertung.",
    ),
    "feedback.review_invite": _t(
        "We are glad you liked it. Would you share it with others in a review?",
        "Teší nás, že ste spokojní. Podelíte sa o to s ostatnými v recenzii?",
        "Těší nás, že jste spokojeni. Podělíte se o to s ostatními v recenzi?",
        "Cieszymy się, że jesteś zadowolony. Podzielisz się tym z innymi w opinii?",
        "Мы рады, что вам понравилось. Поделитесь впечатлением в отзыве?",
        "Schön, dass es Ihnen gefallen hat. Teilen Sie es anderen in einer Bewertung mit?",
    ),
    "feedback.sorry_text": _t(
        "We are sorry it was not better. Tell us what went wrong and we will put it right.",
        "Mrzí nás, že to nebolo lepšie. Povedzte nám, čo sa pokazilo, a napravíme to.",
        "Mrzí nás, že to nebylo lepší. Řekněte nám, co se pokazilo, a napravíme to.",
        "Przykro nam, że nie było lepiej. Powiedz nam, co poszło nie tak, a to naprawimy.",
        "Нам жаль, что всё прошло не лучшим образом. Расскажите, что не так, и мы исправим.",
        "Es tut uns leid, dass es nicht besser war. Sagen Sie uns, was schiefging, wir "
        "bringen es in Ordnung.",
    ),
    "feedback.nothing": _t(
        "Once an order of yours is delivered, you can rate it here.",
        "Keď vám doručíme objednávku, môžete ju tu ohodnotiť.",
        "Až vám doručíme objednávku, můžete ji tu ohodnotit.",
        "Gdy dostarczymy Twoje zamówienie, możesz je tu ocenić.",
        "Когда заказ будет доставлен, здесь можно будет его оценить.",
        "Sobald Ihre Bestellung zugestellt ist, können Sie sie hier bewerten.",
    ),
    "back.items": _t("Items", "Položky", "Položky", "Produkty", "Товары", "Artikel"),
    "back.total": _t("Total", "Spolu", "Celkem", "Razem", "Итого", "Gesamt"),
    "back.order": _t(
        "Order details",
        "Detail objednávky",
        "Detail objednávky",
        "Szczegóły zamówienia",
        "Детали заказа",
        "Bestelldetails",
    ),
    "back.tracking": _t(
        "Track your parcel",
        "Sledovať zásielku",
        "Sledovat zásilku",
        "Śledź przesyłkę",
        "Отследить посылку",
        "Sendung verfolgen",
    ),
    "back.returns": _t(
        "Returns and complaints",
        "Vrátenie a reklamácie",
        "Vrácení a reklamace",
        "Zwroty i reklamacje",
        "Возвраты и претензии",
        "Rücksendungen und Reklamationen",
    ),
    "back.account": _t(
        "Your account", "Váš účet", "Váš účet", "Twoje konto", "Ваш аккаунт", "Ihr Konto"
    ),
    "back.referral": _t(
        "Invite a friend",
        "Pozvite priateľa",
        "Pozvěte přítele",
        "Zaproś znajomego",
        "Пригласить друга",
        "Freunde einladen",
    ),
    "back.support": _t(
        "Customer support",
        "Zákaznícka podpora",
        "Zákaznická podpora",
        "Obsługa klienta",
        "Служба поддержки",
        "Kundenservice",
    ),
    "back.about": _t(
        "About this card",
        "O tejto karte",
        "O této kartě",
        "O tej karcie",
        "Об этой карте",
        "Über diese Karte",
    ),
    "about.text": _t(
        "This card shows your latest order and updates itself as it moves.",
        "Táto karta ukazuje vašu poslednú objednávku a sama sa aktualizuje.",
        "Tato karta ukazuje vaši poslední objednávku a sama se aktualizuje.",
        "Ta karta pokazuje Twoje ostatnie zamówienie i sama się aktualizuje.",
        "Эта карта показывает ваш последний заказ и обновляется сама.",
        "Diese Karte zeigt Ihre letzte Bestellung und aktualisiert sich selbst.",
    ),
}

CHANGE_MESSAGES = frozenset({"status.change", "offer.change"})
"""Texts Wallet shows on the lock screen with the changed field's value in ``%@``."""

Overrides = Mapping[str, Mapping[str, str]]
"""A merchant's own texts: locale -> key -> text."""


def check_override(locale: str, key: str, value: str) -> None:
    if locale not in LOCALES:
        raise ValueError(f"locale must be one of {', '.join(LOCALES)}")
    if key not in TEXTS:
        raise ValueError(f"unknown text key {key!r}")
    if key in CHANGE_MESSAGES and "%@" not in value:
        raise ValueError(f"{key} must contain %@ (Wallet puts the new value there)")
    if not 0 < len(value) <= 200:
        raise ValueError("a text is 1 to 200 characters")


def text(key: str, locale: str, overrides: Overrides | None = None) -> str:
    """One text in ``locale`` (the merchant's own first), falling back to English."""
    own = (overrides or {}).get(locale, {}).get(key)
    if own is not None:
        return own
    values = TEXTS[key]
    return values.get(locale, values["en"])


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def pass_strings(locale: str, overrides: Overrides | None, values: Mapping[str, str]) -> bytes:
    """``pass.strings`` for one language (UTF-8, which Wallet reads as it reads UTF-16).

    ``values`` fill the ``{placeholders}`` some texts carry (the order number). Cached: every
    card of a design with the same order number shares them.
    """
    frozen_overrides = tuple(
        (code, tuple(sorted(entries.items())))
        for code, entries in sorted((overrides or {}).items())
    )
    return _pass_strings(locale, frozen_overrides, tuple(sorted(values.items())))


@lru_cache(maxsize=4096)
def _pass_strings(
    locale: str,
    frozen_overrides: tuple[tuple[str, tuple[tuple[str, str], ...]], ...],
    values: tuple[tuple[str, str], ...],
) -> bytes:
    lines = []
    for key, line in _escaped(locale, frozen_overrides):
        if "{" in line:
            # Escaping maps character by character, so escaped values fit the escaped text.
            for name, value in values:
                line = (
                    line.replace(f"{{{name}}}", _escape(value))
                    if value
                    else line.replace(f" {{{name}}}", "")
                )
        lines.append(f'"{key}" = "{line}";')
    return ("\n".join(lines) + "\n").encode("utf-8")


@lru_cache(maxsize=256)
def _escaped(
    locale: str, frozen_overrides: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
) -> tuple[tuple[str, str], ...]:
    """Every key and its text in ``locale``, escaped: once per design's texts, not per number."""
    overrides = {code: dict(entries) for code, entries in frozen_overrides}
    return tuple((_escape(key), _escape(text(key, locale, overrides))) for key in TEXTS)

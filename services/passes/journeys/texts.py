"""passpost's own words for the journeys' messages, in every language a card speaks; a
merchant's own per locale (``JourneySettings.texts``) win. Placeholders in braces are filled
in by the engine (``{shop}``) and the journey (``{product}``, ``{price}``, ...); one a
journey does not know is left as it is, never an error."""

from __future__ import annotations

from collections.abc import Mapping

from services.merchants.journeys import JourneySettings

Words = tuple[str, str]
"""A message's title and text."""

DEFAULT_TEXTS: dict[str, dict[str, Words]] = {
    "welcome": {
        "en": (
            "Welcome to {shop}",
            "Your card is ready: your orders and our offers will show up here.",
        ),
        "sk": (
            "Vitajte v {shop}",
            "Vaša karta je pripravená: objednávky a naše ponuky uvidíte tu.",
        ),
        "cs": (
            "Vítejte v {shop}",
            "Vaše karta je připravená: objednávky a naše nabídky uvidíte zde.",
        ),
        "pl": (
            "Witamy w {shop}",
            "Twoja karta jest gotowa: tu zobaczysz zamówienia i nasze oferty.",
        ),
        "ru": (
            "Добро пожаловать в {shop}",
            "Ваша карта готова: здесь появятся заказы и наши предложения.",
        ),
        "de": (
            "Willkommen bei {shop}",
            "Ihre Karte ist bereit: Hier sehen Sie Ihre Bestellungen und unsere Angebote.",
        ),
    },
    "cart_abandoned": {
        "en": ("Your cart is waiting", "We saved your cart. Pick up where you left off."),
        "sk": ("Váš košík na vás čaká", "Košík sme vám odložili. Pokračujte, kde ste skončili."),
        "cs": ("Váš košík na vás čeká", "Košík jsme vám schovali. Pokračujte, kde jste skončili."),
        "pl": ("Twój koszyk czeka", "Zachowaliśmy Twój koszyk. Dokończ zakupy jednym kliknięciem."),
        "ru": ("Ваша корзина ждёт", "Мы сохранили вашу корзину. Продолжите, где остановились."),
        "de": ("Ihr Warenkorb wartet", "Wir haben Ihren Warenkorb gespeichert. Machen Sie weiter."),
    },
    "price_dropped": {
        "en": ("{product} is now {price}", "The price you watch dropped from {old_price}."),
        "sk": ("{product} teraz za {price}", "Cena, ktorú sledujete, klesla z {old_price}."),
        "cs": ("{product} nyní za {price}", "Cena, kterou sledujete, klesla z {old_price}."),
        "pl": ("{product} teraz za {price}", "Obserwowana cena spadła z {old_price}."),
        "ru": ("{product} теперь за {price}", "Цена, за которой вы следите, была {old_price}."),
        "de": ("{product} jetzt für {price}", "Der beobachtete Preis lag bei {old_price}."),
    },
    "trial_ending": {
        "en": ("Your trial ends {ends}", "Keep what you set up: choose a plan before it ends."),
        "sk": ("Skúšobná doba končí {ends}", "Zachovajte si nastavenia: vyberte si plán včas."),
        "cs": ("Zkušební doba končí {ends}", "Zachovejte si nastavení: vyberte si plán včas."),
        "pl": ("Okres próbny kończy się {ends}", "Zachowaj ustawienia: wybierz plan na czas."),
        "ru": ("Пробный период до {ends}", "Сохраните настройки: выберите тариф заранее."),
        "de": (
            "Ihr Test endet am {ends}",
            "Behalten Sie alles: Wählen Sie rechtzeitig einen Tarif.",
        ),
    },
    "feedback": {
        "en": ("How was your order {number}?", "Tell us in a minute: it helps us a lot."),
        "sk": (
            "Ako ste spokojní s objednávkou {number}?",
            "Povedzte nám to za minútu, veľmi nám to pomôže.",
        ),
        "cs": (
            "Jak jste spokojeni s objednávkou {number}?",
            "Řekněte nám to za minutu, moc nám to pomůže.",
        ),
        "pl": ("Jak oceniasz zamówienie {number}?", "Powiedz nam w minutę, bardzo nam to pomoże."),
        "ru": ("Как вам заказ {number}?", "Расскажите нам за минуту, это очень поможет."),
        "de": (
            "Wie war Ihre Bestellung {number}?",
            "Sagen Sie es uns in einer Minute, das hilft uns sehr.",
        ),
    },
    "refill": {
        "en": ("Running low on {product}?", "Order it again in a tap."),
        "sk": ("Dochádza vám {product}?", "Objednajte si znova jedným ťuknutím."),
        "cs": ("Dochází vám {product}?", "Objednejte si znovu jedním klepnutím."),
        "pl": ("Kończy się {product}?", "Zamów ponownie jednym dotknięciem."),
        "ru": ("{product} заканчивается?", "Закажите снова в одно касание."),
        "de": ("Geht {product} zur Neige?", "Mit einem Tipp nachbestellen."),
    },
    "loyalty": {
        "en": (
            "Thanks for being a regular!",
            "Join the {shop} loyalty club: perks on every order.",
        ),
        "sk": (
            "Ďakujeme, že ste s nami!",
            "Pridajte sa do vernostného klubu {shop}: výhody pri každom nákupe.",
        ),
        "cs": (
            "Děkujeme, že jste s námi!",
            "Přidejte se do věrnostního klubu {shop}: výhody u každého nákupu.",
        ),
        "pl": (
            "Dziękujemy, że jesteś z nami!",
            "Dołącz do klubu lojalnościowego {shop}: korzyści przy każdym zamówieniu.",
        ),
        "ru": (
            "Спасибо, что вы с нами!",
            "Вступайте в клуб лояльности {shop}: бонусы за каждый заказ.",
        ),
        "de": (
            "Danke für Ihre Treue!",
            "Werden Sie Mitglied im {shop} Treueclub: Vorteile bei jeder Bestellung.",
        ),
    },
}
"""Every journey with behaviour has words here in all of ``LOCALES``
(``tests/passes/test_journey_texts.py`` holds them to it)."""


PRODUCT_IN_TITLE = 40
"""Characters of a product's name in a message's title (the rest is cut with an ellipsis)."""


def title_sized(name: str) -> str:
    """A product's name as a title holds it."""
    return name if len(name) <= PRODUCT_IN_TITLE else name[: PRODUCT_IN_TITLE - 1] + "…"


class _Kept(dict[str, str]):
    """A placeholder no one filled in stays as written."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(template: str, values: Mapping[str, str]) -> str:
    try:
        return template.format_map(_Kept(values))
    except (ValueError, IndexError, AttributeError):  # braces that are no placeholder
        return template


def words(journey: str, locale: str, settings: JourneySettings, values: Mapping[str, str]) -> Words:
    """The message's title and text in ``locale``: the merchant's own wording for it wins,
    then ours, then ours in English (a locale we do not ship)."""
    own = settings.texts.get(locale)
    if own is not None:
        title, body = own.title, own.text
    else:
        ours = DEFAULT_TEXTS[journey]
        title, body = ours.get(locale) or ours["en"]
    return fill(title, values), fill(body, values)

"""The journeys' own words: every journey with behaviour speaks every language a card does,
and a merchant's words win."""

from __future__ import annotations

from services.merchants.journeys import DEFAULTS, JourneySettings, JourneyText
from services.passes.journeys.catalogue import JOURNEYS
from services.passes.journeys.texts import DEFAULT_TEXTS, fill, words
from services.passes.texts import LOCALES


def test_every_journey_with_behaviour_has_words_in_every_locale() -> None:
    for journey in JOURNEYS:
        assert set(DEFAULT_TEXTS[journey.name]) == set(LOCALES), journey.name
        for title, text in DEFAULT_TEXTS[journey.name].values():
            assert 0 < len(title) <= 60
            assert 0 < len(text) <= 300


def test_the_merchants_words_win_and_unknown_placeholders_stay() -> None:
    own = DEFAULTS["welcome"].model_copy(
        update={"texts": {"de": JourneyText(title="Hallo {name}", text="{x} bei {shop}")}}
    )
    assert words("welcome", "de", own, {"name": "Eva", "shop": "Tee"}) == (
        "Hallo Eva",
        "{x} bei Tee",
    )
    assert words("welcome", "ja", JourneySettings(), {"shop": "Tee"})[0] == "Welcome to Tee"
    assert fill("{unbalanced", {}) == "{unbalanced"

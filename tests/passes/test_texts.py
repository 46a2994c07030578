"""pass.strings: the texts escaped, the order number filled in (and escaped) per card."""

from __future__ import annotations

from services.passes.texts import TEXTS, pass_strings


def test_the_order_number_is_escaped_like_the_texts() -> None:
    overrides = {"en": {"back.about": 'Say "hi" to {number}'}}
    strings = pass_strings("en", overrides, {"number": 'A"1\\2\n'}).decode()
    assert '"status.change" = "Your order A\\"1\\\\2\\n: %@";' in strings
    assert '"back.about" = "Say \\"hi\\" to A\\"1\\\\2\\n";' in strings
    assert strings.count("\n") == len(TEXTS)  # one line per text, newlines only escaped


def test_without_a_number_the_placeholder_goes_with_its_space() -> None:
    strings = pass_strings("de", None, {"number": ""}).decode()
    assert '"status.change" = "Ihre Bestellung: %@";' in strings
    assert "{number}" not in strings


def test_each_design_and_number_gets_its_own_texts() -> None:
    plain = pass_strings("sk", None, {"number": "1001"})
    assert pass_strings("sk", None, {"number": "1002"}) != plain
    own = pass_strings("sk", {"sk": {"status.shipped": "Už letí"}}, {"number": "1001"})
    assert b'"status.shipped" = "U\xc5\xbe let\xc3\xad";' in own
    assert b'"status.shipped" = "Na ceste";' in plain

"""The feedback form as HTML, for the landing page and the feedback page alike: a 0-10 scale
of radio buttons, an optional comment and a submit button, posting to ``/c/{link}/feedback``
(no JavaScript: the browser's own ``required`` and ``maxlength`` are all it needs)."""

from __future__ import annotations

from html import escape

from services.contracts.cards import LINK_PATH
from services.passes.card_view import order_number
from services.passes.feedback.card import current_score, rateable_order
from services.passes.models import Card, PassDesign
from services.passes.texts import text

MAX_TEXT = 2000
"""A comment's longest (the offers API keeps as much)."""
SCORES = range(11)

FORM_STYLE = """
  form.feedback { margin-top: 1.75rem; background: #fff; border-radius: 1rem; padding: 1rem; }
  form.feedback h2 { font-size: 1.1rem; margin: 0 0 .5rem; }
  .scores { display: flex; flex-wrap: wrap; gap: .3rem; border: 0; padding: 0; margin: .75rem 0; }
  .scores label { flex: 1 0 2.2rem; }
  .scores input { position: absolute; opacity: 0; }
  .scores span { display: block; text-align: center; padding: .55rem 0; border-radius: .5rem;
                 border: 1px solid #d1d5db; font-weight: 600; }
  .scores input:checked + span { background: #111827; color: #fff; border-color: #111827; }
  .scores input:focus-visible + span { outline: 3px solid #2563eb; outline-offset: 2px; }
  form.feedback textarea { width: 100%; margin: .35rem 0 .75rem; font: inherit; padding: .5rem;
                           border-radius: .5rem; border: 1px solid #d1d5db; }
  form.feedback button { width: 100%; min-height: 3rem; border: 0; border-radius: .75rem;
                         background: #000; color: #fff; font-weight: 600; font-size: 1rem; }
"""


def action(card: Card) -> str:
    return f"{LINK_PATH}/{card.link_token}/feedback"


def feedback_form(design: PassDesign, card: Card, locale: str) -> str:
    """The form for the card's latest received order (its score so far chosen); empty when
    the card has no such order."""
    order = rateable_order(card)
    if order is None:
        return ""
    own = design.texts
    chosen = current_score(card, order["id"])
    scores = "".join(
        f'<label><input type="radio" name="score" value="{score}" id="score-{score}" required'
        f"{' checked' if score == chosen else ''}><span>{score}</span></label>"
        for score in SCORES
    )
    title = text("feedback.title", locale, own).replace("{number}", order_number(order))
    return (
        f'  <form class="feedback" id="feedback" method="post" action="{escape(action(card))}">\n'
        f"    <h2>{escape(title)}</h2>\n"
        f"    <p>{escape(text('feedback.question', locale, own))}</p>\n"
        f'    <input type="hidden" name="order_id" value="{escape(order["id"])}">\n'
        f'    <fieldset class="scores">{scores}</fieldset>\n'
        f'    <label for="feedback-text">{escape(text("feedback.comment", locale, own))}</label>\n'
        f'    <textarea id="feedback-text" name="text" rows="3" maxlength="{MAX_TEXT}">'
        "</textarea>\n"
        f'    <button type="submit" id="send-feedback">'
        f"{escape(text('feedback.send', locale, own))}</button>\n"
        "  </form>"
    )

"""``/c/{link}/feedback``: the customer rates their latest received order, and the thank-you
page follows the score up (9-10: the merchant's review invitation; 0-6: "we're sorry: talk to
us", the merchant's survey or else its support phone).

GET shows the form, the POST rates (a link preview changes nothing). The unguessable link is
the capability, as for the card itself; the page posts to itself only and never sends the
link on as a referrer (the review site is another origin).
"""

from __future__ import annotations

import html
from functools import cache
from importlib import resources
from string import Template
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.contracts.cards import LINK_PATH
from services.contracts.messages import FeedbackGiven
from services.core.clock import clock
from services.core.db import Session
from services.core.errors import InvalidInput
from services.core.queue import publish
from services.core.text import multiline_text
from services.integrations.google_wallet.objects import tel_uri
from services.merchants.models import Merchant
from services.passes.card_view import feedback_link, followup_key
from services.passes.designs import get_design
from services.passes.feedback.card import rate, rateable_order
from services.passes.feedback.form import FORM_STYLE, MAX_TEXT, SCORES, feedback_form
from services.passes.links import LinkedCard
from services.passes.marketing.page import NO_CARD, PAGE_HEADERS
from services.passes.models import Card, PassDesign
from services.passes.texts import LOCALES, text

router = APIRouter(prefix=LINK_PATH, tags=["customer links"])

FORM_SCHEMA = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string", "minLength": 1, "maxLength": 200},
        "score": {"type": "string", "enum": [str(score) for score in SCORES]},
        "text": {"type": "string", "maxLength": MAX_TEXT},
    },
    "required": ["order_id", "score"],
}


@cache
def _template() -> Template:
    source = resources.files("services.passes").joinpath("templates/feedback.html")
    return Template(source.read_text(encoding="utf-8"))


@router.get(
    "/{link_token}/feedback",
    response_class=HTMLResponse,
    responses={200: {"description": "The form to rate the latest received order"}, **NO_CARD},
)
async def feedback_page(card: LinkedCard, session: Session) -> HTMLResponse:
    design, locale = await _design_and_locale(session, card)
    body = feedback_form(design, card, locale) or (
        f'  <p id="nothing">{html.escape(text("feedback.nothing", locale, design.texts))}</p>'
    )
    return _page(design, locale, body)


@router.post(
    "/{link_token}/feedback",
    response_class=HTMLResponse,
    responses={
        200: {"description": "The rating, recorded, and its follow-up"},
        **NO_CARD,
        **InvalidInput.openapi("No such received order on the card, or no score 0-10"),
    },
    openapi_extra={
        "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": FORM_SCHEMA}}}
    },
)
async def give_feedback(card: LinkedCard, request: Request, session: Session) -> HTMLResponse:
    """Rate the order: offers keeps the rating (``feedback.given``), the card's back shows
    the follow-up, and the page says thank you with it."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    # Locked and read again: what the card shows may have moved since the link was opened.
    await session.refresh(card, with_for_update=True)
    order_id, score, comment = _rating(card, form)
    now = clock.now()
    await rate(session, card, order_id, score, now)
    given = FeedbackGiven(
        merchant_id=card.merchant_id,
        customer_id=card.customer_id,
        order_id=order_id,
        score=score,
        text=comment,
        at=now,
    )
    publish(session, given, key=card.customer_id)
    design, locale = await _design_and_locale(session, card)
    return _page(design, locale, _thanks(design, card, score, locale))


def _rating(card: Card, form: dict[str, list[str]]) -> tuple[str, int, str | None]:
    """The form's order, score and comment, or a 422 naming the field."""

    def one(name: str) -> str:
        return (form.get(name) or [""])[0]

    order = rateable_order(card)
    if order is None or one("order_id") != order["id"]:
        raise _invalid("order_id", "the card's latest received order")
    if one("score") not in {str(score) for score in SCORES}:
        raise _invalid("score", "a whole number from 0 to 10")
    comment = one("text").strip() or None
    if comment is not None:
        try:
            comment = multiline_text(comment)
        except ValueError as exc:
            raise _invalid("text", str(exc)) from None
        if len(comment) > MAX_TEXT:
            raise _invalid("text", f"at most {MAX_TEXT} characters")
    return order["id"], int(one("score")), comment


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", errors=[{"loc": ["body", field], "msg": message}])


def _thanks(design: PassDesign, card: Card, score: int, locale: str) -> str:
    own, escape = design.texts, html.escape
    parts = [f'  <p class="done" id="done">{escape(text("feedback.thanks", locale, own))}</p>']
    key = followup_key(score)
    link = feedback_link(design, card)
    url = link[1] if link is not None else None
    if key == "sorry" and url is None and design.support_phone:
        url = tel_uri(design.support_phone)
    if key is not None and url is not None:
        said = "feedback.review_invite" if key == "review" else "feedback.sorry_text"
        parts.append(f"  <p>{escape(text(said, locale, own))}</p>")
        parts.append(
            f'  <a class="followup" id="{key}" href="{escape(url)}" rel="nofollow noreferrer">'
            f"{escape(text(f'back.{key}', locale, own))}</a>"
        )
    return "\n".join(parts)


async def _design_and_locale(session: Session, card: Card) -> tuple[PassDesign, str]:
    merchant = await session.get_one(Merchant, card.merchant_id)
    design = await get_design(session, merchant)
    return design, card.locale if card.locale in LOCALES else merchant.default_locale


def _page(design: PassDesign, locale: str, body: str) -> HTMLResponse:
    page = _template().substitute(
        lang=html.escape(locale),
        title=html.escape(design.organization_name),
        shop=html.escape(design.organization_name),
        form_style=FORM_STYLE,
        body=body,
    )
    return HTMLResponse(page, headers=PAGE_HEADERS)

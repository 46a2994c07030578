"""The customer's own page behind the card's link: "No offers, thanks", and yes again.

``GET /c/{link}/marketing`` only shows the choice with a confirm button; the button POSTs it,
so a link preview or a prefetch (GETs) never changes anything. The unguessable link is the
capability (as for the card itself); no cookie is involved, so there is nothing for another
site to ride on, and the page allows forms to post to itself only.
"""

from __future__ import annotations

import html
from functools import cache
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.contracts.cards import LINK_PATH
from services.core.clock import clock
from services.core.db import Session
from services.core.errors import InvalidInput
from services.merchants.models import Merchant
from services.passes.designs import get_design
from services.passes.links import LinkedCard
from services.passes.marketing.consent import consent_of, set_consent
from services.passes.models import Card
from services.passes.texts import LOCALES, text

router = APIRouter(prefix=LINK_PATH, tags=["customer links"])

PAGE_HEADERS = {
    "Cache-Control": "private, no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
}
CHOICES = {"no": False, "yes": True}
NO_CARD: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "No card behind this link",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
}


@cache
def _template() -> Template:
    source = resources.files("services.passes").joinpath("templates/marketing.html")
    return Template(source.read_text(encoding="utf-8"))


@router.get(
    "/{link_token}/marketing",
    response_class=HTMLResponse,
    responses={200: {"description": "The customer's choice about offers"}, **NO_CARD},
)
async def marketing_page(card: LinkedCard, session: Session) -> HTMLResponse:
    """Whether the card shows offers, and a button to change that (nothing changes here but
    the card itself, made now if its shop's event has not made it yet, like any link of ours)."""
    consent = await consent_of(session, card.merchant_id, card.customer_id)
    return await _page(session, card, consent, done=None)


@router.post(
    "/{link_token}/marketing",
    response_class=HTMLResponse,
    responses={
        200: {"description": "The choice, recorded"},
        **NO_CARD,
        **InvalidInput.openapi("consent is neither yes nor no"),
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {"consent": {"type": "string", "enum": ["yes", "no"]}},
                        "required": ["consent"],
                    }
                }
            }
        }
    },
)
async def set_marketing(card: LinkedCard, request: Request, session: Session) -> HTMLResponse:
    """The customer's choice: no offers (the current ones leave the card) or offers again."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    choice = (form.get("consent") or [""])[0]
    if choice not in CHOICES:
        raise InvalidInput(
            "consent must be yes or no", errors=[{"loc": ["body", "consent"], "msg": "yes or no"}]
        )
    consent = CHOICES[choice]
    await set_consent(session, card.merchant_id, card.customer_id, consent, clock.now(), "customer")
    return await _page(session, card, consent, done=consent)


async def _page(session: Session, card: Card, consent: bool, *, done: bool | None) -> HTMLResponse:
    merchant = await session.get_one(Merchant, card.merchant_id)
    design = await get_design(session, merchant)
    locale = card.locale if card.locale in LOCALES else merchant.default_locale
    own = design.texts
    escape = html.escape
    done_html = ""
    if done is not None:
        key = "marketing.done_on" if done else "marketing.done_off"
        done_html = f'  <p class="done" id="done">{escape(text(key, locale, own))}</p>'
    page = _template().substitute(
        lang=escape(locale),
        title=escape(text("marketing.title", locale, own)),
        done=done_html,
        state=escape(text("marketing.on" if consent else "marketing.off", locale, own)),
        action=escape(f"{LINK_PATH}/{card.link_token}/marketing"),
        value="no" if consent else "yes",
        button_id="opt-out" if consent else "opt-in",
        button=escape(text("back.no_offers" if consent else "marketing.opt_in", locale, own)),
        shop=escape(design.organization_name),
    )
    return HTMLResponse(page, headers=PAGE_HEADERS)

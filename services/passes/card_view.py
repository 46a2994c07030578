"""What a card shows, whichever wallet shows it: the order it is about, its number and status
sentence, and the links on its back.

Apple's pass (``apple/document.py``), the Google object (``google_wallet.py``) and the landing
page all show the same card; they word and lay it out their own way from these.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from services.contracts.messages import DETRACTORS_UP_TO, PROMOTERS_FROM
from services.contracts.orders import OPEN
from services.passes.marketing.slot import shown_offers, words
from services.passes.models import Card, PassDesign
from services.passes.schemas import TEMPLATE_FIELDS, template_parts
from services.passes.texts import Overrides, text

log = logging.getLogger(__name__)

MAX_LINK_LENGTH = 2048
"""A templated link longer than this is left off the card (Apple and Google show URLs, and a
template's values come from the shop's orders)."""

_reported: set[tuple[str, str, str]] = set()
"""Templates already logged as unusable, so that every build does not log them again."""

Order = dict[str, Any]
"""An order as a card keeps it in ``Card.content["orders"]`` (``card_orders.take_order_change``)."""


PREPARING = "preparing"
"""Set in the content of a card issued on demand from its link (``issuing.card_behind_link``)
until its shop's first event arrives with what it should show."""


def idle_status(content: dict[str, Any]) -> str:
    """The status a card without orders shows: being prepared while its shop's event is on its
    way (a card made on demand from its link), welcome otherwise (a card issued by hand)."""
    return "status.preparing" if content.get(PREPARING) else "status.welcome"


def current_order(content: dict[str, Any]) -> Order | None:
    """The most recently placed open order; with none open, the most recently placed."""
    orders = list((content.get("orders") or {}).values())
    if not orders:
        return None
    open_orders = [o for o in orders if o.get("status") in OPEN]
    chosen: Order = max(
        open_orders or orders, key=lambda o: (o.get("placed_at", ""), o.get("id", ""))
    )
    return chosen


def is_open(order: Order | None) -> bool:
    """Still on its way: only then does an estimated delivery mean anything."""
    return order is not None and order.get("status") in OPEN


def order_number(order: Order | None) -> str:
    """The number the customer knows the order by (the shop's id when it sent none)."""
    if order is None:
        return ""
    return str(order.get("number") or order.get("id", ""))


def status_sentence(order: Order, locale: str, overrides: Overrides | None = None) -> str:
    """ "Your order 1001: On its way": the sentence Apple's lock screen shows for a status change
    (Wallet fills ``%@`` itself), worded the same for Google's messages and the landing page."""
    return (
        text("status.change", locale, overrides)
        .replace("{number}", order_number(order))
        .replace("%@", text(f"status.{order['status']}", locale, overrides))
    )


def back_links(
    design: PassDesign, card: Card, order: Order | None, *, referral: str | None = None
) -> dict[str, str]:
    """The card's links (order, tracking, returns, account): the shop's own for the order,
    else the merchant's templates; a template that needs a value the order lacks waits. Then
    the follow-up of the latest rating (``feedback_link``) and the customer's ``referral``
    link, while the merchant has one (``journeys/referral.py``)."""
    order = order or {}
    shipping = order.get("shipping") or {}
    own = order.get("links") or {}
    if shipping.get("tracking_url") and "tracking" not in own:
        own = {**own, "tracking": shipping["tracking_url"]}
    values = {
        "order_id": order.get("id"),
        "order_number": order.get("number"),
        "customer_id": card.customer_id,
        "tracking_number": shipping.get("tracking_number"),
    }
    templates = [
        ("order", design.order_url_template),
        ("tracking", design.tracking_url_template),
        ("returns", design.returns_url_template),
        ("account", design.account_url_template),
    ]
    links: dict[str, str] = {}
    for key, template in templates:
        url = own.get(key)
        if url is None and template:
            url = fill_template(design, key, template, values)
        if url:
            links[key] = str(url)
    if (followup := feedback_link(design, card)) is not None:
        links[followup[0]] = followup[1]
    if referral is not None:
        links["referral"] = referral
    return links


RATED = "feedback"
"""``Card.content[RATED]``: the latest rating of an order on the card (``order_id``, ``score``,
``at``), from the card's page or the shop's API."""


def followup_key(score: int) -> str | None:
    """What a rating calls for: ``review`` (9-10), ``sorry`` (0-6: "talk to us"), or nothing."""
    if score >= PROMOTERS_FROM:
        return "review"
    if score <= DETRACTORS_UP_TO:
        return "sorry"
    return None


def feedback_link(design: PassDesign, card: Card) -> tuple[str, str] | None:
    """The follow-up of the card's latest rating: the merchant's review link (9-10) or survey
    link (0-6), the rated order filled in; none for 7-8 or without the merchant's template."""
    rated = card.content.get(RATED)
    key = None if rated is None else followup_key(int(rated["score"]))
    if rated is None or key is None:
        return None
    template = design.review_url_template if key == "review" else design.survey_url_template
    if not template:
        return None
    order = (card.content.get("orders") or {}).get(rated["order_id"]) or {}
    values = {
        "order_id": rated["order_id"],
        "order_number": order.get("number"),
        "customer_id": card.customer_id,
        "tracking_number": (order.get("shipping") or {}).get("tracking_number"),
    }
    url = fill_template(design, key, template, values)
    return None if url is None else (key, url)


FALLBACK_LOCALE = "en"


def store_locations(design: PassDesign, card: Card) -> list[tuple[float, float, str | None]]:
    """The merchant's stores (latitude, longitude) and what the lock screen says near one
    (Apple's ``relevantText``): the newest shown offer's title while there is one (an offer
    leaving the card is a new version, which brings the store's text back), else the store's
    own text in the card's language, else in English, else nothing."""
    offers = shown_offers(card.content)
    offer_title = words(offers[0], card.locale)[0] if offers else None
    found = []
    for location in design.locations or []:
        texts: dict[str, str] = location.get("relevant_text") or {}
        said = offer_title or texts.get(card.locale) or texts.get(FALLBACK_LOCALE)
        found.append((float(location["latitude"]), float(location["longitude"]), said))
    return found


def fill_template(
    design: PassDesign,
    key: str,
    template: str,
    values: Mapping[str, Any],
    fields: frozenset[str] = TEMPLATE_FIELDS,
) -> str | None:
    """The link a template makes, each value percent-encoded; ``None`` while a value it needs
    is missing, or when the template or the link is unusable (logged once, without values).

    Not ``str.format``: a template stored before placeholders were checked may hold a format
    spec (``{order_id:>100000}``) or a conversion, and must never break or bloat a pass.
    """
    try:
        parts = template_parts(template, fields)
    except ValueError as exc:
        _report(design, key, "the template is not usable", problem=str(exc))
        return None
    pieces: list[str] = []
    for literal, name in parts:
        pieces.append(literal)
        if name is not None:
            value = values.get(name)
            if value is None or value == "":
                return None
            pieces.append(quote(str(value), safe=""))
    url = "".join(pieces)
    if len(url) > MAX_LINK_LENGTH:
        _report(design, key, "the link is too long", length=len(url), limit=MAX_LINK_LENGTH)
        return None
    return url


def _report(design: PassDesign, key: str, what: str, **extra: Any) -> None:
    mark = (str(design.id), key, what)
    if mark in _reported:
        return
    _reported.add(mark)
    log.warning(
        "link left off the card: %s",
        what,
        extra={"design": str(design.id), "link": key, **extra},
    )

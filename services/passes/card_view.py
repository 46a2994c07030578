"""What a card shows, whichever wallet shows it: the order it is about, its number and status
sentence, and the links on its back.

Apple's pass (``apple/document.py``), the Google object (``google_wallet.py``) and the landing
page all show the same card; they word and lay it out their own way from these.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from services.contracts.orders import OPEN
from services.passes.models import Card, PassDesign
from services.passes.schemas import template_parts
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


def back_links(design: PassDesign, card: Card, order: Order | None) -> dict[str, str]:
    """The card's links (order, tracking, returns, account): the shop's own for the order,
    else the merchant's templates; a template that needs a value the order lacks waits."""
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
    return links


def fill_template(
    design: PassDesign, key: str, template: str, values: dict[str, Any]
) -> str | None:
    """The link a template makes, each value percent-encoded; ``None`` while a value it needs
    is missing, or when the template or the link is unusable (logged once, without values).

    Not ``str.format``: a template stored before placeholders were checked may hold a format
    spec (``{order_id:>100000}``) or a conversion, and must never break or bloat a pass.
    """
    try:
        parts = template_parts(template)
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

"""A merchant's cards in Google Wallet: settings, the class, each card's object and messages.

The passes service decides what the object shows and what a message says (in the customer's
language); the push service makes the calls (``card.updated`` carries the object), so no
request to Google ever runs inside a database transaction here.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.core.errors import InvalidInput, NotConfigured, named_by_caller
from services.core.settings import Settings
from services.merchants.models import Merchant
from services.passes.apple.document import OPEN_STATUSES, back_links, current_order
from services.passes.google.auth import InvalidServiceAccount, ServiceAccount
from services.passes.google.client import object_id
from services.passes.google.jwt import save_url
from services.passes.google.objects import (
    CardLink,
    CardText,
    GoogleCardView,
    GoogleClassView,
    loyalty_class,
    loyalty_object,
)
from services.passes.models import Card, PassDesign
from services.passes.texts import LOCALES, text

IMPORTANT_STATUSES = frozenset(
    {"shipped", "out_for_delivery", "delivered", "delivery_issue", "cancelled"}
)
"""What earns one of Google's 3 notifications a day; other changes arrive as plain messages."""
CALLBACK_PATH = "/google/callbacks"
CLASS_SUFFIX = "customer-card"


def load_service_account(merchant: Merchant, path: Path) -> ServiceAccount:
    try:
        return ServiceAccount.from_file(path)
    except (InvalidServiceAccount, OSError, ValueError) as exc:
        raise NotConfigured(
            f"merchant {merchant.slug!r}: google.service_account_file ({path}): {exc}",
            setting="google.service_account_file",
            path=str(path),
        ) from None


def checked_service_account_path(merchant: Merchant, path: Path) -> str:
    load_service_account(merchant, path)
    return str(path.resolve())


async def configure(
    session: AsyncSession,
    merchant: Merchant,
    *,
    issuer_id: str,
    service_account_file: Path,
    origins: list[str],
) -> Merchant:
    """Store a merchant's Google settings once the key file is known to be usable."""
    if not issuer_id.isdigit() or len(issuer_id) > 32:
        raise InvalidInput("google.issuer_id: the digits of the issuer id from the Pay console")
    for origin in origins:
        if not origin.startswith(("https://", "http://localhost", "http://127.0.0.1")):
            raise InvalidInput(f"google.origins: {origin!r} is not an https origin")
    with named_by_caller():
        merchant.google_service_account_path = checked_service_account_path(
            merchant, service_account_file
        )
    merchant.google_issuer_id = issuer_id
    merchant.google_origins = origins
    await session.flush()
    return merchant


def enabled(merchant: Merchant) -> bool:
    return bool(merchant.google_issuer_id and merchant.google_service_account_path)


def class_id(merchant: Merchant) -> str:
    return object_id(str(merchant.google_issuer_id), CLASS_SUFFIX)


def card_object_id(merchant: Merchant, serial_number: str) -> str:
    return object_id(str(merchant.google_issuer_id), serial_number)


def class_body(merchant: Merchant, design: PassDesign, settings: Settings) -> dict[str, Any]:
    default = merchant.default_locale
    return loyalty_class(
        GoogleClassView(
            class_id=class_id(merchant),
            shop_name=design.organization_name,
            program_name=text("card.title", default, design.texts),
            logo_uri=f"{settings.base_url()}/assets/{merchant.slug}/logo@3x.png",
            locale=default,
            hex_background_color=design.background_color,
            callback_url=f"{settings.base_url()}{CALLBACK_PATH}",
            translated_program_names={
                locale: text("card.title", locale, design.texts)
                for locale in LOCALES
                if locale != default
            },
        )
    )


def object_body(merchant: Merchant, design: PassDesign, card: Card) -> dict[str, Any]:
    """The card as Google shows it, worded in the customer's language."""
    locale, own = card.locale, design.texts
    order = current_order(card.content)
    shipping = (order or {}).get("shipping") or {}
    status_key = f"status.{order['status']}" if order else "status.welcome"
    eta = shipping.get("estimated_delivery") if order and order["status"] in OPEN_STATUSES else None
    links = [
        CardLink(id=key, uri=url, description=text(f"back.{key}", locale, own))
        for key, url in back_links(design, card, order).items()
    ]
    return loyalty_object(
        GoogleCardView(
            object_id=card_object_id(merchant, card.serial_number),
            class_id=class_id(merchant),
            status=CardText(
                header=text("label.order", locale, own) + (f" {_number(order)}" if order else ""),
                body=text(status_key, locale, own),
            ),
            barcode_value=card.serial_number,
            barcode_text=card.serial_number[:12].upper(),
            account_id=card.customer_id,
            account_name=card.customer_name,
            estimated_delivery=CardText(text("label.eta", locale, own), eta) if eta else None,
            carrier=CardText(text("label.carrier", locale, own), shipping["carrier"])
            if shipping.get("carrier")
            else None,
            links=links,
            support_phone=design.support_phone,
            support_label=text("back.support", locale, own),
        )
    )


def status_message(design: PassDesign, card: Card) -> dict[str, Any] | None:
    """The message for the status the card shows now, and whether it deserves a notification."""
    order = current_order(card.content)
    if order is None:
        return None
    status_text = text(f"status.{order['status']}", card.locale, design.texts)
    sentence = text("status.change", card.locale, design.texts)
    body = sentence.replace("{number}", _number(order)).replace("%@", status_text)
    return {
        "id": f"v{card.version}",
        "header": status_text,
        "body": body,
        "important": order["status"] in IMPORTANT_STATUSES,
    }


def save_link(merchant: Merchant, serial_number: str) -> str | None:
    """``https://pay.google.com/gp/v/save/<jwt>`` naming the card's (inserted) object."""
    if not enabled(merchant):
        return None
    path = Path(str(merchant.google_service_account_path))
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = -1
    return _save_link(
        merchant.slug,
        path,
        mtime,
        card_object_id(merchant, serial_number),
        tuple(merchant.google_origins or ()),
    )


@lru_cache(maxsize=4096)
def _save_link(slug: str, path: Path, _mtime: int, object_id: str, origins: tuple[str, ...]) -> str:
    """Signing takes a millisecond; the link never expires, so sign once per card and key."""
    return save_url(ServiceAccount.from_file(path), object_id, origins=list(origins))


def _number(order: dict[str, Any] | None) -> str:
    return str((order or {}).get("number") or (order or {}).get("id", ""))

"""Cards: issuing them, what each shows, and their signed bundles (built once per version)."""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.core import metrics
from services.core.errors import NotFound
from services.core.models import utcnow
from services.core.settings import Settings
from services.merchants.models import Merchant
from services.passes.apple.pkpass import build_pkpass, check_field_limits, rgb
from services.passes.designs import DesignAssetCache, get_design
from services.passes.models import Card, PassBundle, PassDesign
from services.passes.schemas import CardIssue, CardLinks

LINK_PATH = "/c"
LINK_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")


def new_card(merchant: Merchant, data: CardIssue) -> Card:
    return Card(
        id=uuid.uuid4(),
        merchant_id=merchant.id,
        customer_id=data.customer_id,
        customer_name=data.customer_name,
        locale=data.locale or merchant.default_locale,
        serial_number=uuid.uuid4().hex,
        authentication_token=secrets.token_urlsafe(24),
        link_token=secrets.token_urlsafe(24),
        version=1,
        content={},
        changed_at=utcnow(),
    )


def mark_changed(card: Card) -> None:
    """Every change of what a card shows gets a new version and Last-Modified time."""
    card.version += 1
    card.changed_at = utcnow()


async def issue_card(session: AsyncSession, merchant: Merchant, data: CardIssue) -> Card:
    """The customer's card, made on first use; a later call updates name and language."""
    await get_design(session, merchant)  # refuse before a card exists that cannot be built
    card = await _find(session, merchant, data.customer_id)
    if card is None:
        card = new_card(merchant, data)
        try:
            async with session.begin_nested():
                session.add(card)
        except IntegrityError:  # issued concurrently by another request
            card = await _find(session, merchant, data.customer_id)
            assert card is not None
    changed = False
    if data.customer_name is not None and data.customer_name != card.customer_name:
        card.customer_name, changed = data.customer_name, True
    if data.locale is not None and data.locale != card.locale:
        card.locale, changed = data.locale, True
    if changed:
        mark_changed(card)
    await session.flush()
    return card


async def _find(session: AsyncSession, merchant: Merchant, customer_id: str) -> Card | None:
    return await session.scalar(
        select(Card).where(Card.merchant_id == merchant.id, Card.customer_id == customer_id)
    )


async def get_card_by_link(session: AsyncSession, link_token: str) -> Card:
    card = None
    if LINK_TOKEN.fullmatch(link_token):
        card = await session.scalar(select(Card).where(Card.link_token == link_token))
    if card is None:
        raise NotFound("no such card")
    return card


def card_links(card: Card, settings: Settings) -> CardLinks:
    base = f"{settings.base_url()}{LINK_PATH}/{card.link_token}"
    return CardLinks(serial_number=card.serial_number, apple_pass_url=f"{base}/pass.pkpass")


def web_service_url(settings: Settings) -> str:
    return f"{settings.base_url()}/passkit"


def pass_document(
    merchant: Merchant, design: PassDesign, card: Card, settings: Settings
) -> dict[str, Any]:
    """pass.json for the card as it is now. Labels and fixed values are pass.strings keys."""
    store_card: dict[str, list[dict[str, Any]]] = {
        "headerFields": [],
        "primaryFields": [
            {
                "key": "status",
                "label": "label.status",
                "value": card.content.get("status_key", "status.welcome"),
                "changeMessage": "status.change",
            }
        ],
        "secondaryFields": [],
        "auxiliaryFields": [],
        "backFields": _back_fields(design, card),
    }
    if card.customer_name:
        store_card["secondaryFields"].append(
            {"key": "customer", "label": "label.customer", "value": card.customer_name}
        )
    check_field_limits(store_card)
    document: dict[str, Any] = {
        "formatVersion": 1,
        "passTypeIdentifier": design.pass_type_identifier,
        "serialNumber": card.serial_number,
        "teamIdentifier": design.team_identifier,
        "organizationName": design.organization_name,
        "description": design.description,
        "webServiceURL": web_service_url(settings),
        "authenticationToken": card.authentication_token,
        "foregroundColor": rgb(design.foreground_color),
        "backgroundColor": rgb(design.background_color),
        "labelColor": rgb(design.label_color),
        "sharingProhibited": True,
        "barcodes": [
            {
                "format": "PKBarcodeFormatQR",
                "message": card.serial_number,
                "messageEncoding": "iso-8859-1",
                "altText": card.serial_number[:12].upper(),
            }
        ],
        "storeCard": store_card,
    }
    if design.logo_text:
        document["logoText"] = design.logo_text
    return document


def _back_fields(design: PassDesign, card: Card) -> list[dict[str, Any]]:
    order = card.content.get("order") or {}
    values = {
        "order_id": order.get("id", ""),
        "order_number": order.get("number", ""),
        "customer_id": card.customer_id,
        "tracking_number": (order.get("shipping") or {}).get("tracking_number", ""),
    }
    fields: list[dict[str, Any]] = []
    links = [
        ("order", design.order_url_template, ("order_id", "order_number")),
        ("tracking", design.tracking_url_template, ("tracking_number",)),
        ("returns", design.returns_url_template, ("order_id", "order_number")),
        ("account", design.account_url_template, ()),
    ]
    for key, template, needs in links:
        if not template:
            continue
        # A link that needs an order (or a tracking number) appears once there is one.
        if any(f"{{{name}}}" in template and not values[name] for name in needs):
            continue
        url = template.format(**values)
        fields.append(
            {
                "key": f"link_{key}",
                "label": f"back.{key}",
                "value": url,
                "dataDetectorTypes": ["PKDataDetectorTypeLink"],
            }
        )
    if design.support_phone:
        fields.append(
            {
                "key": "support_phone",
                "label": "back.support",
                "value": design.support_phone,
                "dataDetectorTypes": ["PKDataDetectorTypePhoneNumber"],
            }
        )
    fields.append({"key": "about", "label": "back.about", "value": "about.text"})
    return fields


@dataclass(frozen=True, slots=True)
class SignedPass:
    content: bytes
    version: int
    changed_at: datetime


class PassBuilder:
    """Builds a card's signed bundle at most once per version and keeps it in the database."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._assets = DesignAssetCache()

    async def signed_pass(self, session: AsyncSession, card: Card) -> SignedPass:
        bundle = await session.get(PassBundle, card.id)
        if bundle is not None and bundle.version == card.version:
            return SignedPass(bundle.content, card.version, card.changed_at)
        merchant = await session.get_one(Merchant, card.merchant_id)
        design = await get_design(session, merchant)
        assets = await self._assets.get(session, merchant, design)
        content = build_pkpass(
            pass_document(merchant, design, card, self._settings), assets.static, assets.signer
        )
        metrics.PASSES_BUILT.inc()
        if bundle is None:
            try:
                async with session.begin_nested():
                    session.add(PassBundle(card_id=card.id, version=card.version, content=content))
            except IntegrityError:
                pass  # built concurrently by another request: same version, same pass
        elif bundle.version < card.version:
            bundle.version, bundle.content, bundle.built_at = card.version, content, utcnow()
        return SignedPass(content, card.version, card.changed_at)

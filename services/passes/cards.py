"""Cards: issuing them, what each shows, and their signed bundles (built once per version)."""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.core import metrics
from services.core.errors import NotFound
from services.core.models import utcnow
from services.core.queue import publish
from services.core.queue.topics import CARD_UPDATED
from services.core.settings import Settings
from services.merchants.models import Merchant
from services.passes.apple.pkpass import build_pkpass, check_field_limits, rgb
from services.passes.designs import DesignAssetCache, get_design
from services.passes.models import Card, PassBundle, PassDesign, Registration
from services.passes.registrations import next_update_tag, registrations_of
from services.passes.schemas import CardIssue, CardLinks

LINK_PATH = "/c"
LINK_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")


def whole_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def new_card(merchant: Merchant, design: PassDesign, data: CardIssue) -> Card:
    return Card(
        id=uuid.uuid4(),
        merchant_id=merchant.id,
        pass_type_identifier=design.pass_type_identifier,
        customer_id=data.customer_id,
        customer_name=data.customer_name,
        locale=data.locale or merchant.default_locale,
        serial_number=uuid.uuid4().hex,
        authentication_token=secrets.token_urlsafe(24),
        link_token=secrets.token_urlsafe(24),
        version=1,
        content={},
        changed_at=whole_second(utcnow()),
    )


async def record_change(session: AsyncSession, card: Card) -> None:
    """Every change of what a card shows: a new version, Last-Modified and update tag, and a
    ``card.updated`` message for the push service, all in the caller's transaction.

    Last-Modified has whole-second precision in HTTP, so it moves at least one second per
    change: a device holding the previous version never gets a 304 for the new one.
    """
    card.version += 1
    card.changed_at = max(whole_second(utcnow()), card.changed_at + timedelta(seconds=1))
    design = await session.scalar(
        select(PassDesign).where(PassDesign.merchant_id == card.merchant_id)
    )
    assert design is not None, "a card exists only for a merchant with a design"
    devices = await registrations_of(session, card)
    # The tag last: it locks the pass type's counter until commit, so keep that short.
    card.update_tag = await next_update_tag(session, card.pass_type_identifier)
    publish(session, CARD_UPDATED, card_updated(card, design, devices), key=str(card.id))


def card_updated(card: Card, design: PassDesign, devices: list[Registration]) -> dict[str, Any]:
    """What the push service needs to deliver a change, so that it reads no passes table."""
    apns: dict[str, Any] = {
        "auth": "certificate",
        "certificate_path": design.certificate_path,
        "key_path": design.key_path,
    }
    if design.apns_token_key_path and design.apns_token_key_id:
        apns = {
            "auth": "token",
            "key_path": design.apns_token_key_path,
            "key_id": design.apns_token_key_id,
            "team_id": design.team_identifier,
        }
    return {
        "card_id": str(card.id),
        "merchant_id": str(card.merchant_id),
        "serial_number": card.serial_number,
        "pass_type_identifier": card.pass_type_identifier,
        "version": card.version,
        "apns": apns,
        "devices": [
            {"device_library_identifier": d.device_library_identifier, "push_token": d.push_token}
            for d in devices
        ],
    }


async def issue_card(session: AsyncSession, merchant: Merchant, data: CardIssue) -> Card:
    """The customer's card, made on first use; a later call updates name and language."""
    design = await get_design(session, merchant)  # refuse before a card that cannot be built
    card = await _find(session, merchant, data.customer_id)
    if card is None:
        card = new_card(merchant, design, data)
        try:
            async with session.begin_nested():
                session.add(card)
                card.update_tag = await next_update_tag(session, card.pass_type_identifier)
        except IntegrityError:  # issued concurrently by another request
            card = await _find(session, merchant, data.customer_id)
            assert card is not None
        else:
            return card
    changed = False
    if data.customer_name is not None and data.customer_name != card.customer_name:
        card.customer_name, changed = data.customer_name, True
    if data.locale is not None and data.locale != card.locale:
        card.locale, changed = data.locale, True
    if changed:
        await record_change(session, card)
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

"""The platforms' webhooks and the shop's view of what they delivered."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from services.core.db import Session
from services.core.errors import Unauthorized
from services.core.web import AppSettings
from services.merchants.api import CurrentMerchant
from services.merchants.schemas import SlugPath
from services.orders.connectors import service
from services.orders.connectors.common import Outcome, Platform
from services.orders.connectors.schemas import DeliveryPage, WebhookAnswer

router = APIRouter(prefix="/v1/connectors", tags=["connectors"])

_ANY_BODY = {
    "requestBody": {
        "required": True,
        "description": "The platform's webhook body, verified byte for byte against its"
        " signature header (a WooCommerce ping is `webhook_id=N`, form-encoded)",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
        },
    }
}


@router.post(
    "/{platform}/{merchant_slug}",
    response_model=WebhookAnswer,
    responses=Unauthorized.openapi("No such connector, or a bad or missing signature"),
    openapi_extra=_ANY_BODY,
)
async def receive_webhook(
    platform: Platform,
    merchant_slug: SlugPath,
    request: Request,
    session: Session,
    settings: AppSettings,
) -> WebhookAnswer:
    """A Shopify, WooCommerce or Shoptet webhook, signed with the connector's secret.

    Answered 200 once recorded, whatever became of it (see ``outcome``): a payload we cannot
    map is listed by ``GET /v1/connectors/events`` rather than refused, so the platform never
    switches the webhook off. A redelivery is answered ``redelivered`` and changes nothing.
    """
    body = await request.body()
    return await service.receive_webhook(
        session, platform, merchant_slug, request.headers, body, settings
    )


@router.get("/events", response_model=DeliveryPage, responses=Unauthorized.openapi())
async def list_deliveries(
    merchant: CurrentMerchant,
    session: Session,
    platform: Platform | None = None,
    outcome: Outcome | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeliveryPage:
    """The latest deliveries of the shop's connectors, newest first: ``outcome=unmappable``
    lists what changed no card, with the reason."""
    return await service.list_deliveries(
        session, merchant, platform=platform, outcome=outcome, limit=limit
    )

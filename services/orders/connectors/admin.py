"""The orders service's part of the admin API: a merchant's platform connectors."""

from __future__ import annotations

from services.core.admin import AdminSettings, admin_router
from services.core.db import Session
from services.core.errors import InvalidInput, NotFound
from services.merchants import service as merchants
from services.merchants.schemas import SlugPath
from services.orders.connectors import service
from services.orders.connectors.common import Platform
from services.orders.connectors.schemas import ConnectorConfigure, ConnectorRead, MappingSet

router = admin_router()
_missing = NotFound.openapi("No such merchant, or no such connector")


@router.get("/merchants/{slug}/connectors", response_model=list[ConnectorRead], responses=_missing)
async def list_connectors(
    slug: SlugPath, session: Session, settings: AdminSettings
) -> list[ConnectorRead]:
    merchant = await merchants.get_merchant_by_slug(session, slug)
    found = await service.list_connectors(session, merchant)
    return [service.connector_read(c, merchant, settings) for c in found]


@router.put(
    "/merchants/{slug}/connectors/{platform}",
    response_model=ConnectorRead,
    responses={**_missing, **InvalidInput.openapi("Shoptet without its API token")},
)
async def configure_connector(
    slug: SlugPath,
    platform: Platform,
    body: ConnectorConfigure,
    session: Session,
    settings: AdminSettings,
) -> ConnectorRead:
    """Set the platform's secret (two during a rotation), Shoptet's API token, or stop
    accepting the previous secret (``revoke_old``). Secrets are never shown again."""
    merchant = await merchants.get_merchant_by_slug(session, slug)
    connector = await service.configure(session, merchant, platform, body)
    return service.connector_read(connector, merchant, settings)


@router.put(
    "/merchants/{slug}/connectors/{platform}/mapping",
    response_model=ConnectorRead,
    responses=_missing,
)
async def map_status(
    slug: SlugPath, platform: Platform, body: MappingSet, session: Session, settings: AdminSettings
) -> ConnectorRead:
    """Map one of the platform's statuses (a Shoptet status id) to ours."""
    merchant = await merchants.get_merchant_by_slug(session, slug)
    connector = await service.set_mapping(session, merchant, platform, body.source, body.to.value)
    return service.connector_read(connector, merchant, settings)

"""The orders service's retention: event history (and with it each event id's stored answer),
and the connectors' webhook deliveries."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table

from services.core.retention import Prune, retention_job
from services.core.schedule import Job
from services.core.settings import Settings
from services.orders.connectors.models import ConnectorDelivery
from services.orders.models import OrderEvent

order_events = cast(Table, OrderEvent.__table__)
connector_deliveries = cast(Table, ConnectorDelivery.__table__)


def orders_rules(settings: Settings) -> list[Prune]:
    return [
        Prune(order_events.c.received_at, settings.retention_order_events_days),
        Prune(connector_deliveries.c.received_at, settings.retention_connector_deliveries_days),
    ]


def orders_retention(settings: Settings) -> Job:
    return retention_job("orders-retention", orders_rules(settings), settings)

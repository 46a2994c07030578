"""The push service's retention: APNs and Google delivery records, Google callback nonces."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table

from services.core.retention import Prune, retention_job
from services.core.schedule import Job
from services.core.settings import Settings
from services.push.models import Delivery, GoogleCallbackNonce, GoogleDelivery

push_deliveries = cast(Table, Delivery.__table__)
google_deliveries = cast(Table, GoogleDelivery.__table__)
callback_nonces = cast(Table, GoogleCallbackNonce.__table__)


def push_rules(settings: Settings) -> list[Prune]:
    return [
        Prune(push_deliveries.c.created_at, settings.retention_push_deliveries_days),
        Prune(google_deliveries.c.created_at, settings.retention_google_deliveries_days),
        Prune(callback_nonces.c.received_at, settings.retention_callback_nonces_days),
    ]


def push_retention(settings: Settings) -> Job:
    return retention_job("push-retention", push_rules(settings), settings)

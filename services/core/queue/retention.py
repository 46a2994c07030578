"""The queue's retention: applied and failed outbox messages, and the consumers' inbox.

The kernel prunes these itself, in every process (``create_app``), since every service
publishes and consumes. A pending message (neither applied nor failed) is never pruned.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table

from services.core.queue.models import InboxMessage, outbox_table
from services.core.retention import Prune, retention_job
from services.core.schedule import Job
from services.core.settings import Settings

inbox_table = cast(Table, InboxMessage.__table__)


def queue_rules(settings: Settings) -> list[Prune]:
    return [
        Prune(outbox_table.c.processed_at, settings.retention_outbox_days),
        Prune(outbox_table.c.failed_at, settings.retention_failed_messages_days),
        Prune(inbox_table.c.processed_at, settings.retention_inbox_days),
    ]


def queue_retention(settings: Settings) -> Job:
    return retention_job("queue-retention", queue_rules(settings), settings)

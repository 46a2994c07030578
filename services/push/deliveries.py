"""Deliveries: turning card changes into pushes, once per version and device.

``schedule`` runs in the ``card.updated`` consumer's transaction and only records what each
device should hear of. ``DeliveryWorker`` claims due targets (a lease, like the queue), sends
outside any transaction (so SQLite's single writer lock is never held across the network), and
records every outcome in one transaction per batch.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import metrics
from services.core.db import after_commit, any_rows
from services.core.models import utcnow
from services.core.queue import publish
from services.core.queue.db import retry_delay
from services.core.queue.topics import PUSH_TOKEN_REJECTED
from services.push.apns import ApnsCredentials, ApnsResult, ApnsSender
from services.push.models import Delivery, PushTarget
from services.push.workers import LeasedWorker, Wakeup

log = logging.getLogger(__name__)


async def schedule(session: AsyncSession, change: dict[str, Any], wakeup: Wakeup | None) -> int:
    """Record that each device of a changed card should hear of ``change['version']``."""
    card_id = uuid.UUID(change["card_id"])
    version = int(change["version"])
    targets = {
        t.device_library_identifier: t
        for t in await session.scalars(select(PushTarget).where(PushTarget.card_id == card_id))
    }
    due = 0
    now = utcnow()
    for device in change["devices"]:
        name, token = device["device_library_identifier"], device["push_token"]
        target = targets.get(name)
        if target is None:
            target = PushTarget(
                card_id=card_id,
                device_library_identifier=name,
                push_token=token,
                merchant_id=uuid.UUID(change["merchant_id"]),
                pass_type_identifier=change["pass_type_identifier"],
                apns=change["apns"],
                wanted_version=0,
                sent_version=0,
                status="active",
                attempts=0,
                available_at=now,
            )
            session.add(target)
        if target.push_token != token:  # the device registered again with a new token
            target.push_token, target.status = token, "active"
        target.apns = change["apns"]
        if version > max(target.wanted_version, target.sent_version):
            target.wanted_version, target.attempts, target.available_at = version, 0, now
            due += 1
    if due and wakeup is not None:
        after_commit(session, wakeup.set)
    return due


@dataclass(frozen=True, slots=True)
class DueTarget:
    card_id: uuid.UUID
    device: str
    push_token: str
    topic: str
    version: int
    attempt: int
    credentials: ApnsCredentials


class DeliveryWorker(LeasedWorker):
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        sender: ApnsSender,
        wakeup: Wakeup,
        *,
        batch_size: int = 200,
        lease_seconds: float = 60.0,
        max_attempts: int = 8,
        poll_interval: float = 0.5,
    ) -> None:
        super().__init__(
            sessionmaker,
            wakeup,
            batch_size=batch_size,
            lease_seconds=lease_seconds,
            max_attempts=max_attempts,
            poll_interval=poll_interval,
        )
        self._sender = sender

    async def deliver_once(self) -> int:
        due = await self._claim()
        if not due:
            return 0
        results = await asyncio.gather(*(self._send(target) for target in due))
        await self._record(list(zip(due, results, strict=True)))
        return len(due)

    @staticmethod
    def _due(now: datetime) -> Select[PushTarget]:
        return (
            select(PushTarget)
            .where(
                PushTarget.status == "active",
                PushTarget.wanted_version > PushTarget.sent_version,
                PushTarget.available_at <= now,
                or_(PushTarget.locked_until.is_(None), PushTarget.locked_until <= now),
            )
            .order_by(PushTarget.available_at)
        )

    async def _claim(self) -> list[DueTarget]:
        now = utcnow()
        if not await any_rows(self._sessionmaker, self._due(now)):
            return []
        async with self._sessionmaker() as session, session.begin():
            rows = (
                await session.scalars(
                    self._due(now).limit(self._batch_size).with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                row.locked_until = now + self._lease
                row.attempts += 1
            return [
                DueTarget(
                    card_id=row.card_id,
                    device=row.device_library_identifier,
                    push_token=row.push_token,
                    topic=row.pass_type_identifier,
                    version=row.wanted_version,
                    attempt=row.attempts,
                    credentials=ApnsCredentials.from_message(row.apns),
                )
                for row in rows
            ]

    async def _send(self, target: DueTarget) -> ApnsResult:
        try:
            return await self._sender.send(target.credentials, target.push_token, target.topic)
        except Exception as exc:  # a bad credential file must not stop the other pushes
            log.warning("push could not be sent", extra={"error": f"{type(exc).__name__}: {exc}"})
            return ApnsResult(status=0, reason=f"{type(exc).__name__}: {exc}"[:500])

    async def _record(self, outcomes: list[tuple[DueTarget, ApnsResult]]) -> None:
        now = utcnow()
        async with self._sessionmaker() as session, session.begin():
            for target, result in outcomes:
                row = await session.get(PushTarget, (target.card_id, target.device))
                if row is None:
                    continue
                row.locked_until = None
                outcome = self._apply(session, row, target, result, now)
                session.add(
                    Delivery(
                        card_id=target.card_id,
                        version=target.version,
                        device_library_identifier=target.device,
                        push_token_suffix=target.push_token[-8:],
                        outcome=outcome,
                        status_code=result.status or None,
                        reason=result.reason,
                        apns_id=result.apns_id,
                        attempt=target.attempt,
                    )
                )
                metrics.PUSHES.labels(outcome=outcome, status=str(result.status)).inc()

    def _apply(
        self,
        session: AsyncSession,
        row: PushTarget,
        target: DueTarget,
        result: ApnsResult,
        now: Any,
    ) -> str:
        if result.delivered:
            row.sent_version = max(row.sent_version, target.version)
            row.attempts, row.available_at = 0, now
            return "delivered"
        if result.token_is_dead:
            if row.push_token == target.push_token:  # not re-registered while we sent
                row.status = "dead"
                publish(
                    session,
                    PUSH_TOKEN_REJECTED,
                    {
                        "card_id": str(target.card_id),
                        "device_library_identifier": target.device,
                        "push_token": target.push_token,
                        "reason": result.reason,
                        "timestamp": result.timestamp,
                    },
                    key=str(target.card_id),
                )
            return "rejected"
        if row.attempts >= self._max_attempts:
            log.warning(
                "push given up",
                extra={"status": result.status, "reason": result.reason, "attempts": row.attempts},
            )
            row.sent_version = max(row.sent_version, target.version)
            row.attempts = 0
            return "failed"
        row.available_at = now + timedelta(seconds=retry_delay(row.attempts))
        return "retry"

"""Deliveries: turning card changes into pushes, once per version and device.

``schedule`` runs in the ``card.updated`` consumer's transaction and only records what each
device should hear of. ``DeliveryWorker`` claims due targets (a lease, like the queue), sends
outside any transaction (so SQLite's single writer lock is never held across the network), and
records outcomes in batches, each in one transaction, while the next pushes are being sent.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Integer,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    case,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.contracts.messages import CardUpdated, PushTokenRejected
from services.core import metrics
from services.core.db import after_commit, any_rows
from services.core.models import utcnow
from services.core.queue import publish
from services.core.queue.apply import retry_delay
from services.push.apns import ApnsCredentials, ApnsResult, ApnsSender
from services.push.models import Delivery, PushTarget
from services.push.workers import LeasedWorker, Wakeup

log = logging.getLogger(__name__)


_targets = cast(Table, PushTarget.__table__)
_deliveries = cast(Table, Delivery.__table__)
_CARD_TARGETS = select(
    _targets.c.device_library_identifier,
    _targets.c.push_token,
    _targets.c.apns,
    _targets.c.wanted_version,
    _targets.c.sent_version,
).where(_targets.c.card_id == bindparam("b_card_id"))
_VERSION = bindparam("b_version", type_=Integer)
_NOW = bindparam("b_now", type_=_targets.c.available_at.type)
_TOKEN = bindparam("b_token", type_=_targets.c.push_token.type)
_ONE_TARGET = update(_targets).where(
    _targets.c.card_id == bindparam("b_card_id"),
    _targets.c.device_library_identifier == bindparam("b_device"),
)
_newer = and_(_targets.c.wanted_version < _VERSION, _targets.c.sent_version < _VERSION)
_SCHEDULE_CHANGED = _ONE_TARGET.values(
    push_token=_TOKEN,
    status=case((_targets.c.push_token != _TOKEN, "active"), else_=_targets.c.status),
    apns=bindparam("b_apns", type_=_targets.c.apns.type),
    wanted_version=case((_newer, _VERSION), else_=_targets.c.wanted_version),
    attempts=case((_newer, 0), else_=_targets.c.attempts),
    available_at=case((_newer, _NOW), else_=_targets.c.available_at),
    updated_at=_NOW,
)
"""A device whose token or credentials changed, or that should hear of a newer version; a
re-registered token makes a dead target active again."""
_MARK_SENT = _ONE_TARGET.values(
    sent_version=case(
        (_targets.c.sent_version < _VERSION, _VERSION), else_=_targets.c.sent_version
    ),
    attempts=0,
    available_at=_NOW,
    locked_until=None,
)
"""A delivered push: the version is sent (never lowering ``sent_version``), the lease ends."""


async def schedule(session: AsyncSession, change: CardUpdated, wakeup: Wakeup | None) -> int:
    """Record that each device of a changed card should hear of ``change.version``.

    Set-based, as a card may be on tens of thousands of devices: one read of the card's targets,
    then new devices inserted in bulk and changed ones updated by one executemany; the update
    decides in SQL from the row as it is then, so a delivery recorded meanwhile is not undone.
    """
    card_id, version = change.card_id, change.version
    apns = change.apns.model_dump()
    known = {
        device: (push_token, stored_apns, max(wanted, sent))
        for device, push_token, stored_apns, wanted, sent in await session.execute(
            _CARD_TARGETS, {"b_card_id": card_id}
        )
    }
    now = utcnow()
    new: dict[str, dict[str, Any]] = {}
    changed: list[dict[str, Any]] = []
    due = 0
    for device in change.devices:
        name, token = device.device_library_identifier, device.push_token
        current = known.get(name)
        if current is None:
            new[name] = {
                "card_id": card_id,
                "device_library_identifier": name,
                "push_token": token,
                "merchant_id": change.merchant_id,
                "pass_type_identifier": change.pass_type_identifier,
                "apns": apns,
                "wanted_version": version if version > 0 else 0,
                "sent_version": 0,
                "status": "active",
                "attempts": 0,
                "available_at": now,
                "updated_at": now,
            }
            continue
        stored_token, stored_apns, newest = current
        if version > newest:
            due += 1
        elif stored_token == token and stored_apns == apns:
            continue
        changed.append(
            {
                "b_card_id": card_id,
                "b_device": name,
                "b_token": token,
                "b_apns": apns,
                "b_version": version,
                "b_now": now,
            }
        )
    if new:
        await session.execute(insert(_targets), list(new.values()))
        due += len(new) if version > 0 else 0
    if changed:
        await session.execute(_SCHEDULE_CHANGED, changed)
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


@functools.lru_cache(maxsize=256)
def _credentials(stored: str) -> ApnsCredentials:
    """A merchant's APNs credentials as stored on its targets, decoded once: a claim returns
    them on every row, and the sender looks its pool up by them."""
    return ApnsCredentials.from_message(json.loads(stored))


class DeliveryWorker(LeasedWorker):
    """Keeps up to ``batch_size`` pushes in flight, and records their outcomes as they come.

    Whenever half of the pushes in flight have been answered, it claims as many due targets as
    there is room for, so the connections never wait for a whole batch to finish. Answered
    pushes are recorded in batches of at least half that size (or whatever is answered once
    nothing is in flight), one record at a time, while the rest are being sent. Every target
    stays leased until its outcome is committed, so no claim picks it up twice.
    """

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
        self._half = max(1, batch_size // 2)
        self._sending: set[asyncio.Task[None]] = set()
        self._answered: list[tuple[DueTarget, ApnsResult]] = []
        self._recording: asyncio.Task[None] | None = None
        self._failed_record: BaseException | None = None
        self._more_due = False
        """The last claim took all it could: claim again without first peeking for due rows."""
        self._progress = asyncio.Event()
        """Set whenever a push is answered or a record ends."""

    async def deliver_once(self) -> int:
        """Wait for room, claim due targets and start sending them; 0 once nothing is due and
        everything sent so far is recorded."""
        self._raise_failed_record()
        while len(self._sending) > self._batch_size - self._half:
            await self._next_progress()
        due = await self._claim(self._batch_size - len(self._sending))
        if not due:
            await self.settle()
            return 0
        for target in due:
            task = asyncio.create_task(self._send_and_keep(target))
            self._sending.add(task)
            task.add_done_callback(self._answered_one)
        return len(due)

    async def settle(self) -> None:
        """Wait until every push sent so far is answered and its outcome committed."""
        while self._sending or self._answered or self._recording is not None:
            self._record_answered(force=True)
            await self._next_progress()

    async def _next_progress(self) -> None:
        self._progress.clear()
        await self._progress.wait()
        self._raise_failed_record()

    def _raise_failed_record(self) -> None:
        """A record that failed stops the worker, as a failed round always did; the leases of
        its targets expire and they are sent again."""
        failed, self._failed_record = self._failed_record, None
        if failed is not None:
            raise failed

    async def _send_and_keep(self, target: DueTarget) -> None:
        result = await self._send(target)  # before ``self._answered``: a record may swap it
        self._answered.append((target, result))
        self._record_answered(force=False)

    def _answered_one(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._progress.set()

    def _record_answered(self, *, force: bool) -> None:
        """Start recording the answered pushes: half a batch of them, or all once the last push
        in flight is answered (or ``force``), unless a record is in flight."""
        if self._recording is not None or not self._answered:
            return
        if not force and len(self._answered) < self._half and len(self._sending) > 1:
            return
        outcomes, self._answered = self._answered, []
        self._recording = asyncio.create_task(self._record(outcomes))
        self._recording.add_done_callback(self._recorded)

    def _recorded(self, task: asyncio.Task[None]) -> None:
        self._recording = None
        self._progress.set()
        if task.cancelled():
            return
        failure = task.exception()
        if failure is not None:
            self._failed_record = failure
        else:
            self._record_answered(force=not self._sending)

    @staticmethod
    def _due(now: datetime) -> Select[tuple[uuid.UUID, str]]:
        return (
            select(_targets.c.card_id, _targets.c.device_library_identifier)
            .where(
                _targets.c.status == "active",
                _targets.c.wanted_version > _targets.c.sent_version,
                _targets.c.available_at <= now,
                or_(_targets.c.locked_until.is_(None), _targets.c.locked_until <= now),
            )
            .order_by(_targets.c.available_at)
        )

    async def _claim(self, limit: int) -> list[DueTarget]:
        """Lease up to ``limit`` due targets with one statement (``SKIP LOCKED`` on PostgreSQL)."""
        now = utcnow()
        if not self._more_due and not await any_rows(self._sessionmaker, self._due(now)):
            return []
        batch = self._due(now).limit(limit).with_for_update(skip_locked=True)
        claim = (
            update(_targets)
            .where(tuple_(_targets.c.card_id, _targets.c.device_library_identifier).in_(batch))
            .values(locked_until=now + self._lease, attempts=_targets.c.attempts + 1)
            .returning(
                _targets.c.card_id,
                _targets.c.device_library_identifier,
                _targets.c.push_token,
                _targets.c.pass_type_identifier,
                _targets.c.wanted_version,
                _targets.c.attempts,
                sql_cast(_targets.c.apns, Text),
            )
        )
        async with self._sessionmaker() as session, session.begin():
            rows = (await session.execute(claim)).all()
        self._more_due = len(rows) == limit
        return [
            DueTarget(
                card_id=card_id,
                device=device,
                push_token=push_token,
                topic=topic,
                version=version,
                attempt=attempt,
                credentials=_credentials(apns),
            )
            for card_id, device, push_token, topic, version, attempt, apns in rows
        ]

    async def _send(self, target: DueTarget) -> ApnsResult:
        try:
            return await self._sender.send(target.credentials, target.push_token, target.topic)
        except Exception as exc:  # a bad credential file must not stop the other pushes
            log.warning("push could not be sent", extra={"error": f"{type(exc).__name__}: {exc}"})
            return ApnsResult(status=0, reason=f"{type(exc).__name__}: {exc}"[:500])

    async def _record(self, outcomes: list[tuple[DueTarget, ApnsResult]]) -> None:
        """Record a batch in one transaction: delivered pushes in bulk, the rest row by row."""
        now = utcnow()
        sent: list[dict[str, Any]] = []
        deliveries: list[dict[str, Any]] = []
        counts: Counter[tuple[str, int]] = Counter()
        async with self._sessionmaker() as session, session.begin():
            for target, result in outcomes:
                if result.delivered:
                    outcome = "delivered"
                    sent.append(
                        {
                            "b_card_id": target.card_id,
                            "b_device": target.device,
                            "b_version": target.version,
                            "b_now": now,
                        }
                    )
                else:
                    row = await session.get(PushTarget, (target.card_id, target.device))
                    if row is None:
                        continue
                    row.locked_until = None
                    outcome = self._apply(session, row, target, result, now)
                deliveries.append(
                    {
                        "card_id": target.card_id,
                        "version": target.version,
                        "device_library_identifier": target.device,
                        "push_token_suffix": target.push_token[-8:],
                        "outcome": outcome,
                        "status_code": result.status or None,
                        "reason": result.reason,
                        "apns_id": result.apns_id,
                        "attempt": target.attempt,
                        "created_at": now,
                    }
                )
                counts[outcome, result.status] += 1
            if sent:
                await session.execute(_MARK_SENT, sent)
            if deliveries:
                await session.execute(insert(_deliveries), deliveries)
        for (outcome, status), count in counts.items():
            metrics.PUSHES.labels(outcome=outcome, status=str(status)).inc(count)

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
                    PushTokenRejected(
                        card_id=target.card_id,
                        device_library_identifier=target.device,
                        push_token=target.push_token,
                        reason=result.reason,
                        timestamp=result.timestamp,
                    ),
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

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
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import (
    Integer,
    Table,
    Text,
    and_,
    bindparam,
    case,
    insert,
    select,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.contracts.messages import CardUpdated, PushTokenRejected
from services.core import metrics
from services.core.leases import Lease
from services.core.models import utcnow
from services.core.queue import publish
from services.core.queue.apply import retry_delay
from services.core.transaction import after_commit
from services.push.apns import ApnsCredentials, ApnsResult, ApnsSender
from services.push.models import Delivery, PushTarget
from services.push.workers import LeasedWorker, Wakeup

log = logging.getLogger(__name__)


_targets = cast(Table, PushTarget.__table__)
_deliveries = cast(Table, Delivery.__table__)
_CARD_TARGETS = select(
    _targets.c.device_library_identifier,
    _targets.c.push_token,
    sql_cast(_targets.c.apns, Text),  # decoded once per distinct text (``_stored_json``)
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
        device: (push_token, _stored_json(stored_apns), max(wanted, sent))
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
        # Rows locked in key order, as the record locks them: no deadlock between the two.
        changed.sort(key=lambda row: str(row["b_device"]))
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


RECORD_ATTEMPTS = 3
RECORD_RETRY_SECONDS = 0.5
_PUSH_IDS = uuid.UUID("6f1d8a52-3c1e-4c59-9a57-2b0e7f4f8d31")


def push_id(card_id: uuid.UUID, device: str, version: int) -> str:
    """The ``apns-id`` of the push telling ``device`` of ``version`` of a card: the same for
    every attempt, so a push repeated (a crash between APNs's answer and our record of it) is
    recognisable as the same notification in APNs's answers and our delivery records."""
    return str(uuid.uuid5(_PUSH_IDS, f"{card_id}/{device}/{version}"))


@functools.lru_cache(maxsize=256)
def _stored_json(stored: str) -> dict[str, Any]:
    """A merchant's APNs credentials as stored on its targets, decoded once: every target of a
    card holds the same text (a card may be on thousands of phones). Shared: never changed."""
    return cast(dict[str, Any], json.loads(stored))


@functools.lru_cache(maxsize=256)
def _credentials(stored: str) -> ApnsCredentials:
    """A merchant's APNs credentials as stored on its targets, decoded once: a claim returns
    them on every row, and the sender looks its pool up by them."""
    return ApnsCredentials.from_message(_stored_json(stored))


Outcome = tuple[DueTarget, ApnsResult]
_Send = Callable[[DueTarget], Awaitable[ApnsResult]]
_Record = Callable[[list[Outcome]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Answered:
    """A push APNs answered (``result``), or whose send was cancelled (None: the lease runs out)."""

    target: DueTarget
    result: ApnsResult | None


@dataclass(frozen=True, slots=True)
class _Recorded:
    """A record ended: committed, or failed with ``error``."""

    error: Exception | None


class _Pipeline:
    """The pushes between their claim and the commit of their outcome, in three named stages.

    ``sending``: waiting for APNs; ``answered``: waiting to be recorded; ``recording``: whether
    the one record allowed at a time is in flight. Every target stays leased through all three.

    Sends and records do not touch this state: each reports to a mailbox as it ends, and only
    ``collect`` (called by the worker, never from a callback) moves pushes from stage to stage,
    so the state is what the worker last collected, whatever order the tasks ran in.
    """

    def __init__(self, send: _Send, record: _Record) -> None:
        self._send, self._record = send, record
        self.sending = 0
        self.answered: list[Outcome] = []
        self.recording = False
        self._reports: asyncio.Queue[_Answered | _Recorded] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()  # referenced until done

    @property
    def empty(self) -> bool:
        return not (self.sending or self.answered or self.recording)

    def send(self, targets: list[DueTarget]) -> None:
        self.sending += len(targets)
        for target in targets:
            self._start(self._sending(target))

    def record(self) -> None:
        """Start recording every answered push (the caller checked no record is in flight)."""
        outcomes, self.answered = self.answered, []
        self.recording = True
        self._start(self._recording(outcomes))

    def collect(self) -> None:
        """Apply the reports that arrived, without waiting; a failed record is raised here."""
        self._apply([])

    async def next_report(self) -> None:
        """Wait for a send or record to end (unless none is in flight), then ``collect``."""
        self._apply([await self._reports.get()] if self.sending or self.recording else [])

    def _apply(self, reports: list[_Answered | _Recorded]) -> None:
        while not self._reports.empty():
            reports.append(self._reports.get_nowait())
        failed: Exception | None = None
        for report in reports:
            if isinstance(report, _Answered):
                self.sending -= 1
                if report.result is not None:
                    self.answered.append((report.target, report.result))
            else:
                self.recording = False
                failed = report.error or failed
        if failed is not None:
            raise failed

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sending(self, target: DueTarget) -> None:
        result = None
        try:
            result = await self._send(target)
        finally:
            self._reports.put_nowait(_Answered(target, result))

    async def _recording(self, outcomes: list[Outcome]) -> None:
        error = None
        try:
            await self._record(outcomes)
        except Exception as exc:  # reported to the worker, which stops
            error = exc
        finally:
            self._reports.put_nowait(_Recorded(error))


class DeliveryWorker(LeasedWorker):
    """Keeps up to ``batch_size`` pushes in flight, and records their outcomes as they come.

    Whenever a quarter of the pushes in flight have been answered, it claims as many due targets
    as there is room for, so the connections never wait for a whole batch to finish. Answered
    pushes are recorded in batches of at least half the window (or whatever is answered once
    nothing is in flight), one record at a time, while the rest are being sent. Every target
    stays leased until its outcome is committed, so no claim picks it up twice. A record that
    fails is tried again; given up, the leases of its targets run out and they are sent again.

    The stages a push goes through are ``_Pipeline``'s; the worker moves it on only in
    ``deliver_once`` and ``settle``, between its own awaits.
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
            max_attempts=max_attempts,
            poll_interval=poll_interval,
        )
        self._sender = sender
        self._half = max(1, batch_size // 2)
        self._refill_at = batch_size - max(1, batch_size // 4)
        """Claim more once this few are left sending: a quarter of the window per claim keeps
        the connections busy through the claim's round trip."""
        self._pipeline = _Pipeline(send=self._send, record=self._record)
        self._leases = Lease(
            sessionmaker,
            _targets,
            due=lambda now: (
                _targets.c.status == "active",
                _targets.c.wanted_version > _targets.c.sent_version,
                _targets.c.available_at <= now,
            ),
            order_by=_targets.c.available_at,
            returning=(
                _targets.c.card_id,
                _targets.c.device_library_identifier,
                _targets.c.push_token,
                _targets.c.pass_type_identifier,
                _targets.c.wanted_version,
                _targets.c.attempts,
                sql_cast(_targets.c.apns, Text).label("apns"),
            ),
            seconds=lease_seconds,
            count_attempt=True,
        )
        self._lease_seconds = lease_seconds
        self._held: set[tuple[uuid.UUID, str]] = set()
        """The targets claimed and not yet recorded, whose leases ``_keep_leases`` renews."""

    async def run(self) -> None:
        keeper = asyncio.create_task(self._keep_leases())
        try:
            await super().run()
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)

    async def _keep_leases(self) -> None:
        """Renew the leases of the pushes in flight every third of a lease: a push answered
        while the database is slow to record it must not be claimed and sent again by another
        worker meanwhile (its lease would run out between APNs's answer and the record)."""
        while True:
            await asyncio.sleep(self._lease_seconds / 3)
            try:
                await self._leases.extend(sorted(self._held))
            except Exception as exc:  # the record path will fail the same way and stop us
                log.warning("push leases not renewed", extra={"error": repr(exc)[:300]})

    async def deliver_once(self, *, look_first: bool = True) -> int:
        """Wait for room, claim due targets and start sending them; 0 once nothing is due and
        everything sent so far is recorded."""
        self._pipeline.collect()
        self._record_if_due(force=False)
        while self._pipeline.sending > self._refill_at:
            await self._pipeline.next_report()
            self._record_if_due(force=False)
        due = await self._claim(self._batch_size - self._pipeline.sending, look_first)
        if not due:
            await self.settle()
            return 0
        self._held.update((target.card_id, target.device) for target in due)
        self._pipeline.send(due)
        return len(due)

    async def settle(self) -> None:
        """Wait until every push sent so far is answered and its outcome committed."""
        self._pipeline.collect()
        self._record_if_due(force=True)
        while not self._pipeline.empty:
            await self._pipeline.next_report()
            self._record_if_due(force=True)

    def _record_if_due(self, *, force: bool) -> None:
        """Record the answered pushes if no record is in flight and there are half a batch of
        them, or nothing is left in flight (or ``force``: whatever is answered)."""
        pipeline = self._pipeline
        if pipeline.recording or not pipeline.answered:
            return
        if force or len(pipeline.answered) >= self._half or not pipeline.sending:
            pipeline.record()

    async def _claim(self, limit: int, look_first: bool) -> list[DueTarget]:
        """Lease up to ``limit`` due targets with one statement (``SKIP LOCKED`` on PostgreSQL)."""
        rows = await self._claim_rows(self._leases, limit, look_first)
        return [
            DueTarget(
                card_id=row.card_id,
                device=row.device_library_identifier,
                push_token=row.push_token,
                topic=row.pass_type_identifier,
                version=row.wanted_version,
                attempt=row.attempts,
                credentials=_credentials(row.apns),
            )
            for row in rows
        ]

    async def _send(self, target: DueTarget) -> ApnsResult:
        try:
            return await self._sender.send(
                target.credentials,
                target.push_token,
                target.topic,
                push_id(target.card_id, target.device, target.version),
            )
        except Exception as exc:  # a bad credential file must not stop the other pushes
            log.warning("push could not be sent", extra={"error": f"{type(exc).__name__}: {exc}"})
            return ApnsResult(status=0, reason=f"{type(exc).__name__}: {exc}"[:500])

    async def _record(self, outcomes: list[Outcome]) -> None:
        """Record a batch, trying again on a failure (a deadlock, a database restarting): the
        pushes went out, and a record given up on sends them again once their leases run
        out. Given up, the targets are no longer renewed, so that happens."""
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                await self._record_once(outcomes)
                return
            except Exception as exc:
                if attempt == RECORD_ATTEMPTS:
                    self._held.difference_update((t.card_id, t.device) for t, _ in outcomes)
                    raise
                log.warning(
                    "push outcomes not recorded; trying again",
                    extra={"attempt": attempt, "error": repr(exc)[:300]},
                )
                await asyncio.sleep(RECORD_RETRY_SECONDS * attempt)

    async def _record_once(self, outcomes: list[Outcome]) -> None:
        """Record a batch in one transaction: delivered pushes in bulk, the rest row by row,
        every row locked in key order (as ``schedule`` locks them)."""
        outcomes = sorted(outcomes, key=lambda o: (o[0].card_id, o[0].device))
        now = utcnow()
        sent: list[dict[str, Any]] = []
        deliveries: list[dict[str, Any]] = []
        counts: Counter[tuple[str, int, str]] = Counter()
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
                counts[outcome, result.status, _reason_label(result)] += 1
            if sent:
                await session.execute(_MARK_SENT, sent)
            if deliveries:
                await session.execute(insert(_deliveries), deliveries)
        self._held.difference_update((target.card_id, target.device) for target, _ in outcomes)
        for (outcome, status, reason), count in counts.items():
            metrics.PUSHES.labels(outcome=outcome, status=str(status), reason=reason).inc(count)

    def _apply(
        self,
        session: AsyncSession,
        row: PushTarget,
        target: DueTarget,
        result: ApnsResult,
        now: Any,
    ) -> str:
        """The outcome of a push that was not delivered (delivered ones are recorded in bulk)."""
        if result.token_is_dead:
            if row.push_token == target.push_token:  # not re-registered while we sent
                row.status = "dead"
                _reject_token(session, target, result)
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


def _reject_token(session: AsyncSession, target: DueTarget, result: ApnsResult) -> None:
    """Tell the passes service APNs rejected the device's token for good."""
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


def _reason_label(result: ApnsResult) -> str:
    """APNs's reason (a short fixed word such as ``BadDeviceToken``), or for a push that got no
    answer the exception's type: the rest of its text would make a label per message."""
    reason = (result.reason or "").split(":", 1)[0]
    return reason[:40] if reason.isidentifier() else ("none" if not reason else "other")

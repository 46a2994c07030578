"""Google Wallet delivery: keep each card's object current and add its messages.

Like APNs pushes, the work is recorded in the ``card.updated`` consumer's transaction
(``schedule``) and done by a worker outside any transaction. Notifications are budgeted: Google
allows 3 per object in 24 hours (a 4th is refused with 403 ``quotaExceeded``), so they go to the
changes that matter most and everything else, or anything over budget, is added as a plain
message and recorded as downgraded.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.contracts.messages import CardUpdated
from services.core import metrics
from services.core.db import after_commit, any_rows
from services.core.models import utcnow
from services.core.queue.apply import retry_delay
from services.integrations.google_wallet.auth import AccessTokens, ServiceAccount
from services.integrations.google_wallet.client import GoogleWalletClient, GoogleWalletError
from services.integrations.google_wallet.objects import WalletMessage, add_message_request
from services.push.models import GoogleCallbackNonce, GoogleDelivery, GoogleTarget
from services.push.workers import LeasedWorker, Wakeup

log = logging.getLogger(__name__)

NOTIFICATIONS_PER_DAY = 3
MESSAGES_KEPT = 10
DAY_SECONDS = 24 * 3600


async def schedule(session: AsyncSession, change: CardUpdated, wakeup: Wakeup | None) -> bool:
    """Record the object version (and message) a card's Google object should get."""
    google = change.google
    if google is None:
        return False
    card_id, version = change.card_id, change.version
    target = await session.get(GoogleTarget, card_id)
    if target is None:
        target = GoogleTarget(
            card_id=card_id,
            object_id=google.object_id,
            issuer_id=google.issuer_id,
            service_account_path=google.service_account_path,
            object_body=google.object,
            wanted_version=0,
            synced_version=0,
            pending_messages=[],
            messages_due=False,
            kept_messages=[],
            notified_at=[],
            removed=False,
            attempts=0,
            available_at=utcnow(),
        )
        session.add(target)
    if version <= target.wanted_version:
        return False  # an older change arriving late: the object already has a newer one
    target.object_body = google.object
    target.service_account_path = google.service_account_path
    target.wanted_version, target.attempts, target.available_at = version, 0, utcnow()
    if google.message is not None and not target.removed:
        target.pending_messages = [*target.pending_messages, google.message.model_dump()]
        target.messages_due = True
    if wakeup is not None:
        after_commit(session, wakeup.set)
    return True


@dataclass(slots=True)
class _Claimed:
    card_id: uuid.UUID
    object_id: str
    service_account_path: str
    version: int
    synced: bool
    object_body: dict[str, Any]
    pending: list[dict[str, Any]]
    kept: list[dict[str, Any]]
    notified_at: list[float]
    attempt: int
    # Filled in by the work:
    object_synced: bool = False
    sent: list[dict[str, Any]] = field(default_factory=list)
    log: list[GoogleDelivery] = field(default_factory=list)
    error: GoogleWalletError | None = None


def notification_allowed(important: bool, notified_at: list[float], now: float) -> bool:
    recent = [moment for moment in notified_at if now - moment < DAY_SECONDS]
    return important and len(recent) < NOTIFICATIONS_PER_DAY


class GoogleClients:
    """One token cache and API client per service account, sharing one HTTP connection pool."""

    def __init__(self, api_url: str) -> None:
        self._api_url = api_url
        self._http = httpx.AsyncClient(timeout=10.0)
        self._clients: dict[str, GoogleWalletClient] = {}

    def for_account(self, service_account_path: str) -> GoogleWalletClient:
        client = self._clients.get(service_account_path)
        if client is None:
            account = ServiceAccount.from_file(Path(service_account_path))
            tokens = AccessTokens(account, http=self._http)
            client = GoogleWalletClient(tokens, http=self._http, base_url=self._api_url)
            self._clients[service_account_path] = client
        return client

    async def aclose(self) -> None:
        await self._http.aclose()


class GoogleWorker(LeasedWorker):
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        clients: GoogleClients,
        wakeup: Wakeup,
        *,
        batch_size: int = 50,
        lease_seconds: float = 120.0,
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
        self._clients = clients

    async def deliver_once(self) -> int:
        claimed = await self._claim()
        if claimed:
            await asyncio.gather(*(self._work(item) for item in claimed))
            await self._record(claimed)
        return len(claimed)

    @staticmethod
    def _due(now: datetime) -> Select[GoogleTarget]:
        return (
            select(GoogleTarget)
            .where(
                or_(
                    GoogleTarget.wanted_version > GoogleTarget.synced_version,
                    GoogleTarget.messages_due.is_(True),
                ),
                GoogleTarget.available_at <= now,
                or_(GoogleTarget.locked_until.is_(None), GoogleTarget.locked_until <= now),
            )
            .order_by(GoogleTarget.available_at)
        )

    async def _claim(self) -> list[_Claimed]:
        now = utcnow()
        if not await any_rows(self._sessionmaker, self._due(now)):
            return []
        async with self._sessionmaker() as session, session.begin():
            rows = (
                await session.scalars(
                    self._due(now).limit(self._batch_size).with_for_update(skip_locked=True)
                )
            ).all()
            claimed = []
            for row in rows:
                row.locked_until = now + self._lease
                row.attempts += 1
                claimed.append(
                    _Claimed(
                        card_id=row.card_id,
                        object_id=row.object_id,
                        service_account_path=row.service_account_path,
                        version=row.wanted_version,
                        synced=row.synced_version >= row.wanted_version,
                        object_body=dict(row.object_body),
                        pending=list(row.pending_messages),
                        kept=list(row.kept_messages),
                        notified_at=list(row.notified_at),
                        attempt=row.attempts,
                    )
                )
            return claimed

    async def _work(self, item: _Claimed) -> None:
        try:
            client = self._clients.for_account(item.service_account_path)
            if not item.synced:
                await client.upsert_object(item.object_body)
                item.object_synced = True
                item.log.append(self._entry(item, "object", "delivered"))
            for message in item.pending:
                await self._add_message(client, item, message)
        except GoogleWalletError as exc:
            item.error = exc
            item.log.append(
                self._entry(
                    item,
                    "object" if not item.object_synced else "message",
                    "failed",
                    exc.status,
                    f"{exc.reason or ''} {exc.message}".strip(),
                )
            )
        except (OSError, ValueError) as exc:  # the service account file went missing or bad
            item.error = GoogleWalletError(0, str(exc))
            item.log.append(self._entry(item, "object", "failed", None, str(exc)))

    async def _add_message(
        self, client: GoogleWalletClient, item: _Claimed, message: dict[str, Any]
    ) -> None:
        if len(item.kept) >= MESSAGES_KEPT:
            # Google keeps at most 10 messages on an object: drop the oldest ourselves.
            item.kept = item.kept[-(MESSAGES_KEPT - 1) :]
            await client.patch_object(item.object_id, {"messages": item.kept})
        wallet_message = WalletMessage(message["id"], message["header"], message["body"])
        now = time.time()
        important = bool(message.get("important"))
        notify = notification_allowed(important, item.notified_at, now)
        kind = "notified" if notify else "downgraded" if important else "plain"
        try:
            await client.add_message(item.object_id, wallet_message, notify=notify)
        except GoogleWalletError as exc:
            if not (notify and exc.quota_exceeded):
                raise
            # Our count and Google's disagree (another sender, a restore): send it plain.
            await client.add_message(item.object_id, wallet_message, notify=False)
            notify, kind = False, "downgraded"
            item.notified_at = [now] * NOTIFICATIONS_PER_DAY  # spent, as far as Google says
        if notify:
            item.notified_at = [m for m in item.notified_at if now - m < DAY_SECONDS] + [now]
        elif kind == "downgraded":
            log.info("Google notification downgraded to a plain message (budget spent)")
        item.kept.append(add_message_request(wallet_message, notify=notify)["message"])
        item.sent.append(message)
        item.log.append(self._entry(item, kind, "delivered"))
        metrics.GOOGLE_MESSAGES.labels(kind=kind).inc()

    @staticmethod
    def _entry(
        item: _Claimed, kind: str, outcome: str, status: int | None = 200, reason: str | None = None
    ) -> GoogleDelivery:
        metrics.GOOGLE_CALLS.labels(kind=kind, outcome=outcome, status=str(status or 0)).inc()
        return GoogleDelivery(
            card_id=item.card_id,
            version=item.version,
            kind=kind,
            outcome=outcome,
            status_code=status,
            reason=reason[:2000] if reason else None,
        )

    async def _record(self, claimed: list[_Claimed]) -> None:
        now = utcnow()
        async with self._sessionmaker() as session, session.begin():
            for item in claimed:
                row = await session.get(GoogleTarget, item.card_id)
                if row is None:
                    continue
                row.locked_until = None
                if item.object_synced:
                    row.synced_version = max(row.synced_version, item.version)
                sent_ids = {m["id"] for m in item.sent}
                row.pending_messages = [m for m in row.pending_messages if m["id"] not in sent_ids]
                row.kept_messages, row.notified_at = item.kept, item.notified_at
                row.messages_due = bool(row.pending_messages)
                session.add_all(item.log)
                if item.error is None:
                    row.attempts, row.last_error = 0, None
                    continue
                row.last_error = str(item.error)[:2000]
                if row.attempts >= self._max_attempts:
                    log.warning("Google delivery given up", extra={"status": item.error.status})
                    row.synced_version = max(row.synced_version, item.version)
                    row.pending_messages, row.messages_due, row.attempts = [], False, 0
                else:
                    row.available_at = now + timedelta(seconds=retry_delay(row.attempts))


async def apply_callback(session: AsyncSession, object_id: str, event: str, nonce: str) -> bool:
    """A verified save or delete callback; False when its nonce was seen already."""
    if await session.get(GoogleCallbackNonce, nonce) is not None:
        return False
    session.add(GoogleCallbackNonce(nonce=nonce))
    target = await session.scalar(select(GoogleTarget).where(GoogleTarget.object_id == object_id))
    if target is not None:
        target.removed = event == "del"
        if target.removed:
            target.pending_messages, target.messages_due = [], False
    return True

"""Google Wallet delivery: keep each card's object current and add its messages.

Like APNs pushes, the work is recorded in the ``card.updated`` consumer's transaction
(``schedule``) and done by a worker outside any transaction. Notifications are budgeted: Google
allows 3 per object in 24 hours (a 4th is refused with 403 ``quotaExceeded``), so they go to the
changes that matter most and everything else, or anything over budget, is added as a plain
message and recorded as downgraded. Order statuses and marketing share that budget, and
marketing must never cost a status its notification: see ``notification_allowed``.

Messages taken back (an offer expired, redeemed or cancelled) leave the object by a PATCH of
its whole ``messages`` list without them; Google keeps at most 10, so the oldest (those whose
display ended first) are dropped the same way. Downgrades are counted for the channel's stats
in one ``channel.counted`` per merchant and batch, never one per message.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
from sqlalchemy import Table, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.contracts.messages import CardUpdated, ChannelCounted, GoogleWalletChanged
from services.core import metrics
from services.core.clock import clock
from services.core.leases import Lease
from services.core.models import utcnow
from services.core.queue import batch_of, publish, publish_all
from services.core.queue.apply import retry_delay
from services.core.transaction import Slot, after_commit
from services.integrations.google_wallet.auth import AccessTokens, ServiceAccount
from services.integrations.google_wallet.client import GoogleWalletClient, GoogleWalletError
from services.integrations.google_wallet.objects import WalletMessage, add_message_request
from services.push.models import GoogleCallbackNonce, GoogleDelivery, GoogleTarget
from services.push.workers import LeasedWorker, Wakeup

log = logging.getLogger(__name__)

NOTIFICATIONS_PER_DAY = 3
MESSAGES_KEPT = 10
DAY_SECONDS = 24 * 3600
_google_targets = cast(Table, GoogleTarget.__table__)


async def schedule(session: AsyncSession, change: CardUpdated, wakeup: Wakeup | None) -> bool:
    """Record the object version (and message) a card's Google object should get."""
    google = change.google
    if google is None:
        return False
    card_id, version = change.card_id, change.version
    target = await _locked_target(session, change)
    if target is None:
        target = GoogleTarget(
            card_id=card_id,
            merchant_id=change.merchant_id,
            object_id=google.object_id,
            issuer_id=google.issuer_id,
            service_account_path=google.service_account_path,
            object_body=google.object,
            wanted_version=0,
            synced_version=0,
            pending_messages=[],
            withdrawn_messages=[],
            messages_due=False,
            kept_messages=[],
            notified_at=[],
            removed=False,
            attempts=0,
            available_at=utcnow(),
        )
        session.add(target)
        _LOCKED.get(session)[card_id] = target
    if version <= target.wanted_version:
        return False  # an older change arriving late: the object already has a newer one
    target.object_body, target.merchant_id = google.object, change.merchant_id
    target.service_account_path = google.service_account_path
    target.wanted_version, target.attempts, target.available_at = version, 0, utcnow()
    if google.withdrawn_messages:
        _withdraw(target, google.withdrawn_messages)
    if google.message is not None and not target.removed:
        message = google.message.model_dump(mode="json")
        target.pending_messages = [*target.pending_messages, message]
        target.messages_due = True
    if wakeup is not None:
        after_commit(session, wakeup.set)
    return True


def _withdraw(target: GoogleTarget, ids: Iterable[str]) -> None:
    """Messages to take off: one not sent yet never goes; one on the object (or on its way
    there, in a worker's hands right now) is removed by the next round."""
    withdrawn = set(ids)
    target.pending_messages = [m for m in target.pending_messages if m["id"] not in withdrawn]
    target.withdrawn_messages = sorted(withdrawn | set(target.withdrawn_messages))
    target.messages_due = True


_LOCKED: Slot[dict[uuid.UUID, GoogleTarget | None]] = Slot("google targets locked", dict)
"""The Google targets of the transaction's batch, locked: card id -> target (None: none yet)."""


async def _locked_target(session: AsyncSession, change: CardUpdated) -> GoogleTarget | None:
    """The card's Google target, locked with those of the whole batch, once, in card order
    (as ``_record`` locks them).

    The worker recording what it sent rewrites a target's pending messages: without the lock,
    one of the two would undo the other's change on PostgreSQL (a message sent twice, or
    lost). One order for everyone keeps the two from deadlocking. One query for the batch, so
    the hot path costs no statement per card beyond its write.
    """
    locked = _LOCKED.get(session)
    if change.card_id not in locked:
        cards = sorted({c.card_id for c in batch_of(session, CardUpdated)} | {change.card_id})
        found = await session.scalars(
            select(GoogleTarget)
            .where(GoogleTarget.card_id.in_(cards))
            .order_by(GoogleTarget.card_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        locked.update(dict.fromkeys(cards))
        locked.update({target.card_id: target for target in found})
    return locked[change.card_id]


@dataclass(frozen=True, slots=True)
class _Claimed:
    """A leased target as it was when claimed; the work never changes it."""

    card_id: uuid.UUID
    merchant_id: uuid.UUID | None
    object_id: str
    service_account_path: str
    version: int
    synced: bool
    object_body: dict[str, Any]
    pending: tuple[dict[str, Any], ...]
    withdrawn: frozenset[str]
    kept: tuple[dict[str, Any], ...]
    notified_at: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What the work on one target did, for ``_apply_outcome`` to record on its row."""

    object_synced: bool
    sent_ids: frozenset[str]
    """The pending messages done with: now on the object, or dropped as expired."""
    withdrawn_done: bool
    """The claimed withdrawn messages are off the object."""
    kept: list[dict[str, Any]]
    """The messages on the object, oldest first, as the work left it."""
    notified_at: list[float]
    """The notification budget as the work left it (see ``notified``, ``budget_spent``)."""
    log: list[GoogleDelivery]
    error: GoogleWalletError | None


def notification_allowed(
    important: bool, notified_at: Sequence[float], now: float, kind: str = "status"
) -> bool:
    """Whether a message may notify, given the object's notifications of the last 24 hours.

    An order status may take any of Google's 3 slots. A marketing message notifies only into
    an empty window: none in the last 24 hours, of either kind. So there is at most one
    marketing notification a day on the object, it leaves two slots for the statuses after it,
    and it never follows a status notification of the last day, which says an order is on its
    way with more statuses due (shipped, out for delivery, delivered can fill 3 slots in one
    day). Marketing yields; statuses are never downgraded to make room for an offer.
    """
    recent = [moment for moment in notified_at if now - moment < DAY_SECONDS]
    if kind == "marketing":
        return important and not recent
    return important and len(recent) < NOTIFICATIONS_PER_DAY


def notified(notified_at: Sequence[float], now: float) -> list[float]:
    """The budget after a notification at ``now``: the last 24 hours' notifications and it."""
    return [moment for moment in notified_at if now - moment < DAY_SECONDS] + [now]


def budget_spent(now: float) -> list[float]:
    """The budget once Google refused a notification ours allowed (another sender, a restore):
    spent, as far as Google says, for the next 24 hours. Stored as that many notifications at
    ``now``, the shape the ``notified_at`` column has always had."""
    return [now] * NOTIFICATIONS_PER_DAY


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
            max_attempts=max_attempts,
            poll_interval=poll_interval,
        )
        self._clients = clients
        self._leases = Lease(
            sessionmaker,
            _google_targets,
            due=lambda now: (
                or_(
                    _google_targets.c.wanted_version > _google_targets.c.synced_version,
                    _google_targets.c.messages_due.is_(True),
                ),
                _google_targets.c.available_at <= now,
            ),
            order_by=_google_targets.c.available_at,
            returning=(
                _google_targets.c.card_id,
                _google_targets.c.merchant_id,
                _google_targets.c.object_id,
                _google_targets.c.service_account_path,
                _google_targets.c.wanted_version,
                _google_targets.c.synced_version,
                _google_targets.c.object_body,
                _google_targets.c.pending_messages,
                _google_targets.c.withdrawn_messages,
                _google_targets.c.kept_messages,
                _google_targets.c.notified_at,
            ),
            seconds=lease_seconds,
            count_attempt=True,
        )

    async def deliver_once(self, *, look_first: bool = True) -> int:
        claimed = await self._claim(look_first)
        if claimed:
            outcomes = await asyncio.gather(*(self._work(item) for item in claimed))
            await self._record(list(zip(claimed, outcomes, strict=True)))
        return len(claimed)

    async def _claim(self, look_first: bool) -> list[_Claimed]:
        rows = await self._claim_rows(self._leases, self._batch_size, look_first)
        return [
            _Claimed(
                card_id=row.card_id,
                merchant_id=row.merchant_id,
                object_id=row.object_id,
                service_account_path=row.service_account_path,
                version=row.wanted_version,
                synced=row.synced_version >= row.wanted_version,
                object_body=row.object_body,
                pending=tuple(row.pending_messages),
                withdrawn=frozenset(row.withdrawn_messages),
                kept=tuple(row.kept_messages),
                notified_at=tuple(row.notified_at),
            )
            for row in rows
        ]

    async def _work(self, item: _Claimed) -> _Outcome:
        """Sync the object if it is behind, take withdrawn messages off, then add the pending
        messages, in order; the first failure ends the work (what was done before it is kept).
        A message whose display ended meanwhile (a retry after the offer expired) is dropped."""
        object_synced = withdrawn_done = False
        sent: set[str] = set()
        kept, notified_at = list(item.kept), list(item.notified_at)
        entries: list[GoogleDelivery] = []
        error: GoogleWalletError | None = None
        now = clock.now()
        try:
            client = self._clients.for_account(item.service_account_path)
            if not item.synced:
                await client.upsert_object(item.object_body)
                object_synced = True
                entries.append(_entry(item, "object", "delivered"))
            remaining = [m for m in kept if m["id"] not in item.withdrawn]
            if len(remaining) < len(kept):
                await _rewrite_messages(client, item.object_id, remaining)
                kept = remaining
                entries.append(_entry(item, "withdrawn", "delivered"))
            withdrawn_done = True
            for message in item.pending:
                if _ended(message.get("display_until"), now):
                    sent.add(message["id"])
                    metrics.GOOGLE_MESSAGES.labels(kind="expired").inc()
                    entries.append(_logged(item, "expired", "dropped", None, None))
                    continue
                if len(kept) >= MESSAGES_KEPT:
                    # Google keeps at most 10 messages on an object: make room ourselves.
                    kept = _room_for_one(kept, now)
                    await _rewrite_messages(client, item.object_id, kept)
                kind, added, notified_at = await _add_message(
                    client, item.object_id, message, notified_at, now
                )
                kept.append(added)
                sent.add(message["id"])
                entries.append(_entry(item, kind, "delivered"))
        except GoogleWalletError as exc:
            error = exc
            entries.append(
                _entry(
                    item,
                    "message" if object_synced or item.synced else "object",
                    "failed",
                    exc.status,
                    f"{exc.reason or ''} {exc.message}".strip(),
                )
            )
        except (OSError, ValueError) as exc:  # the service account file went missing or bad
            error = GoogleWalletError(0, str(exc))
            entries.append(_entry(item, "object", "failed", None, str(exc)))
        return _Outcome(
            object_synced, frozenset(sent), withdrawn_done, kept, notified_at, entries, error
        )

    async def _record(self, done: list[tuple[_Claimed, _Outcome]]) -> None:
        now = utcnow()
        async with self._sessionmaker() as session, session.begin():
            locked = await session.scalars(
                select(GoogleTarget)
                .where(GoogleTarget.card_id.in_(sorted(item.card_id for item, _ in done)))
                .order_by(GoogleTarget.card_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            rows = {row.card_id: row for row in locked}
            for item, outcome in done:
                # Locked, like ``schedule``'s: messages added meanwhile are kept, not undone.
                row = rows.get(item.card_id)
                if row is not None:
                    session.add_all(outcome.log)
                    self._apply_outcome(row, item, outcome, now)
            await publish_all(session, _budget_counts(done, clock.now().date()))

    def _apply_outcome(
        self, row: GoogleTarget, item: _Claimed, outcome: _Outcome, now: datetime
    ) -> None:
        """The target's row after the work: its lease ended, what Google now has (the object's
        version, its messages, the budget) taken from the outcome, the messages sent out of
        those pending (which may have grown meanwhile), and a retry or giving up on a failure."""
        row.locked_until = None
        if outcome.object_synced:
            row.synced_version = max(row.synced_version, item.version)
        row.pending_messages = [m for m in row.pending_messages if m["id"] not in outcome.sent_ids]
        if outcome.withdrawn_done:
            row.withdrawn_messages = [i for i in row.withdrawn_messages if i not in item.withdrawn]
        row.kept_messages, row.notified_at = outcome.kept, outcome.notified_at
        row.messages_due = bool(row.pending_messages or row.withdrawn_messages)
        if outcome.error is None:
            row.attempts, row.last_error = 0, None
            return
        row.last_error = str(outcome.error)[:2000]
        if row.attempts >= self._max_attempts:
            log.warning("Google delivery given up", extra={"status": outcome.error.status})
            row.synced_version = max(row.synced_version, item.version)
            row.pending_messages, row.withdrawn_messages = [], []
            row.messages_due, row.attempts = False, 0
        else:
            row.available_at = now + timedelta(seconds=retry_delay(row.attempts))


def _budget_counts(
    done: Iterable[tuple[_Claimed, _Outcome]], day: date
) -> list[tuple[ChannelCounted, str | None]]:
    """One ``channel.counted`` per merchant for a batch: its notifications downgraded by
    Google's budget (``suppressed.google_budget``)."""
    downgraded: Counter[uuid.UUID] = Counter()
    for item, outcome in done:
        if item.merchant_id is not None:
            downgraded[item.merchant_id] += sum(e.kind == "downgraded" for e in outcome.log)
    return [
        (
            ChannelCounted(
                merchant_id=merchant_id, day=day, counts={"suppressed.google_budget": count}
            ),
            str(merchant_id),
        )
        for merchant_id, count in downgraded.items()
        if count
    ]


async def _rewrite_messages(
    client: GoogleWalletClient, object_id: str, messages: list[dict[str, Any]]
) -> None:
    """PATCH the object's whole message list (Google replaces a list as a whole), every one as
    ``TEXT``: Google advises TEXT for updates that must not notify again."""
    body = [{**message, "messageType": "TEXT"} for message in messages]
    await client.patch_object(object_id, {"messages": body})


def _instant(value: str) -> datetime:
    """A stored time; one without a zone is taken as UTC, as the contracts' times are."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _ended(display_until: str | None, now: datetime) -> bool:
    return display_until is not None and _instant(display_until) <= now


def _room_for_one(kept: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The kept messages less enough for one more to fit in Google's 10: those no longer
    displayed (their ``displayInterval`` ended) go first, then the oldest."""
    shown = [m for m in kept if not _ended(_display_end(m), now)]
    return shown[-(MESSAGES_KEPT - 1) :]


def _display_end(message: dict[str, Any]) -> str | None:
    end: str | None = message.get("displayInterval", {}).get("end", {}).get("date")
    return end


async def _add_message(
    client: GoogleWalletClient,
    object_id: str,
    message: dict[str, Any],
    notified_at: list[float],
    moment: datetime,
) -> tuple[str, dict[str, Any], list[float]]:
    """Add one message, notifying if it is important and the budget allows; returns its kind
    (``notified``, ``plain`` or ``downgraded``), the message as kept on the object (``TEXT``,
    the form a rewrite of the list sends), and the budget after it."""
    display_until = message.get("display_until")
    wallet_message = WalletMessage(
        message["id"],
        message["header"],
        message["body"],
        _instant(display_until) if display_until else None,
    )
    now = moment.timestamp()
    important = bool(message.get("important"))
    notify = notification_allowed(important, notified_at, now, message.get("kind", "status"))
    kind = "notified" if notify else "downgraded" if important else "plain"
    try:
        await client.add_message(object_id, wallet_message, notify=notify)
    except GoogleWalletError as exc:
        if not (notify and exc.quota_exceeded):
            raise
        # Our count and Google's disagree (another sender, a restore): send it plain.
        await client.add_message(object_id, wallet_message, notify=False)
        notify, kind = False, "downgraded"
        notified_at = budget_spent(now)
    if notify:
        notified_at = notified(notified_at, now)
    elif kind == "downgraded":
        log.info("Google notification downgraded to a plain message (budget spent)")
    metrics.GOOGLE_MESSAGES.labels(kind=kind).inc()
    return kind, add_message_request(wallet_message, notify=False)["message"], notified_at


def _entry(
    item: _Claimed, kind: str, outcome: str, status: int | None = 200, reason: str | None = None
) -> GoogleDelivery:
    metrics.GOOGLE_CALLS.labels(kind=kind, outcome=outcome, status=str(status or 0)).inc()
    return _logged(item, kind, outcome, status, reason)


def _logged(
    item: _Claimed, kind: str, outcome: str, status: int | None, reason: str | None
) -> GoogleDelivery:
    return GoogleDelivery(
        card_id=item.card_id,
        version=item.version,
        kind=kind,
        outcome=outcome,
        status_code=status,
        reason=reason[:2000] if reason else None,
    )


async def apply_callback(session: AsyncSession, object_id: str, event: str, nonce: str) -> bool:
    """A verified save or delete callback; False when its nonce was seen already.

    For a card of ours, passes hears of it (``google_wallet.changed``: which cards are on a
    device) and the channel's stats count it, both in this transaction."""
    if await session.get(GoogleCallbackNonce, nonce) is not None:
        return False
    session.add(GoogleCallbackNonce(nonce=nonce))
    target = await session.scalar(select(GoogleTarget).where(GoogleTarget.object_id == object_id))
    if target is not None:
        target.removed = event == "del"
        if target.removed:
            target.pending_messages = []
            target.messages_due = bool(target.withdrawn_messages)
        now = clock.now()
        key = str(target.card_id)
        publish(
            session,
            GoogleWalletChanged(card_id=target.card_id, saved=not target.removed, at=now),
            key=key,
        )
        if target.merchant_id is not None:
            counted = "google.removed" if target.removed else "google.saved"
            publish(
                session,
                ChannelCounted(merchant_id=target.merchant_id, day=now.date(), counts={counted: 1}),
                key=str(target.merchant_id),
            )
    return True

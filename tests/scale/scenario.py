"""The end-to-end scenario the kill tests drive: a shop posting order events for many cards,
with duplicates and late events, phones that act on every push, and processes killed and
restarted meanwhile; then what must hold, checked against the services and the database.

What "right" means once the run converged:
- every event answered 202 is in its order's history, and each order is in the status of its
  newest event (late ones never move it back);
- every card shows each of its orders in that status, and every device's push target wants and
  was sent the card's version;
- every phone downloaded the card's latest version (its Last-Modified), and heard a push for it;
- per (device, version) at most one push, except those a kill of a push process repeated: the
  documented crash window (APNs answered 200, the process died before recording it). Each repeat
  is checked to straddle a kill, counted and printed;
- per device the pushes name versions in order: never an older version after a newer one.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, text

from bench.common import order_event
from services.passes.models import Card
from services.push.deliveries import push_id
from services.push.models import Delivery
from tests.processes import (
    Installation,
    Phone,
    Phones,
    Process,
    Replicas,
    by_key,
    converge,
    http_date,
    pass_document,
)

STEPS = ("confirmed", "processing", "shipped", "out_for_delivery", "delivered")
CONVERGE_SECONDS = 180.0
"""Generous: leases of killed processes run out first (a few seconds in these runs)."""
SHORT_LEASES = {
    "PASSPOST_QUEUE_LEASE_SECONDS": "5",
    "PASSPOST_PUSH_LEASE_SECONDS": "6",
    "PASSPOST_QUEUE_POLL_INTERVAL": "0.2",
}
"""Leases of seconds, not a minute: what a killed process held is taken over within the test
(the push worker renews its leases while APNs answers, within the default 10 s timeout)."""


@dataclass
class Figures:
    backend: str
    cards: int = 0
    devices: int = 0
    events_sent: int = 0
    """Posts made, duplicates and late events included."""
    accepted: int = 0
    """Distinct events answered 202."""
    duplicates: int = 0
    late: int = 0
    kills: list[str] = field(default_factory=list)
    lost: int = 0
    pushes: int = 0
    repeated_pushes: int = 0
    repeated_unanswered: int = 0
    """Of the repeats, those whose first answer never reached push (a timeout): the same
    window as a crash, between APNs taking a push and push recording its answer."""
    out_of_order_pushes: int = 0
    retried_requests: int = 0
    seed_seconds: float = 0.0
    seconds: float = 0.0
    converge_seconds: float = 0.0

    def line(self) -> str:
        return (
            f"[{self.backend}] events sent {self.events_sent} (accepted {self.accepted}, "
            f"duplicates {self.duplicates}, late {self.late}) over {self.cards} cards and "
            f"{self.devices} devices; kills {len(self.kills)} ({', '.join(self.kills)}); "
            f"lost {self.lost}; pushes {self.pushes}, repeated {self.repeated_pushes} "
            f"(crash window; {self.repeated_unanswered} of them after an answer lost to a "
            f"timeout), out of order {self.out_of_order_pushes}; requests retried on "
            f"another replica {self.retried_requests}; seeding {self.seed_seconds:.1f} s, "
            f"flow {self.seconds:.1f} s "
            f"(converged {self.converge_seconds:.1f} s after the last event)"
        )


@dataclass
class Order:
    id: str
    customer: str
    events: list[dict[str, Any]]

    @property
    def last_status(self) -> str:
        return str(max(self.events, key=lambda e: e["occurred_at"])["order"]["status"])


class OrderScenario:
    """``cards`` customers with ``orders_per_card`` orders of five steps each: 1,000 events for
    100 cards and two orders; ``duplicates`` and ``late`` are shares of extra posts."""

    def __init__(
        self,
        installation: Installation,
        *,
        backend: str,
        cards: int = 100,
        orders_per_card: int = 2,
        devices_per_card: int = 2,
        duplicates: float = 0.1,
        late: float = 0.1,
        concurrency: int = 24,
        seed: int | None = None,
    ) -> None:
        self.installation = installation
        self.random = random.Random(seed)  # noqa: S311  (test data)
        self.figures = Figures(backend)
        self.devices_per_card = devices_per_card
        self.concurrency = concurrency
        self.run = uuid.uuid4().hex[:6]
        start = datetime.now(UTC) - timedelta(days=1)
        self.orders = [
            self._order(f"c{card:04d}", f"{self.run}-{card:04d}-{n}", start + timedelta(hours=n))
            for card in range(cards)
            for n in range(orders_per_card)
        ]
        self.first_events = [o.events[0] for o in self.orders if o.id.endswith("-0")]
        rest = [e for o in self.orders for e in o.events if e not in self.first_events]
        self.flow_events = self._interleave(rest)
        self._add_duplicates_and_late(duplicates, late)
        self.accepted: dict[str, dict[str, Any]] = {}
        self.phones: Phones | None = None
        self.card_of_customer: dict[str, str] = {}
        """customer -> serial number."""

    def _order(self, customer: str, order_id: str, placed: datetime) -> Order:
        events = [
            order_event(
                f"{order_id}-{step}",
                order_id,
                customer,
                step,
                (placed + timedelta(minutes=index)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
            for index, step in enumerate(STEPS)
        ]
        return Order(order_id, customer, events)

    def _interleave(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Orders interleaved at random, each order's events mostly in order (one in ten swapped
        with the next: out of order on the wire, as shops' retries make them)."""
        by_order = by_key((e["order"]["id"], e) for e in events)
        for steps in by_order.values():
            for i in range(len(steps) - 1):
                if self.random.random() < 0.1:
                    steps[i], steps[i + 1] = steps[i + 1], steps[i]
        queues = list(by_order.values())
        merged: list[dict[str, Any]] = []
        while queues:
            queue = self.random.choice(queues)
            merged.append(queue.pop(0))
            if not queue:
                queues.remove(queue)
        return merged

    def _add_duplicates_and_late(self, duplicates: float, late: float) -> None:
        count = len(self.flow_events)
        for _ in range(int(count * duplicates)):
            index = self.random.randrange(count)
            self.flow_events.insert(
                self.random.randrange(index, len(self.flow_events) + 1), self.flow_events[index]
            )
            self.figures.duplicates += 1
        for order in self.random.sample(self.orders, int(count * late)):
            stale = dict(order.events[1])  # processing, an hour before the order was placed
            stale = {
                **stale,
                "id": f"{order.id}-late",
                "occurred_at": (
                    datetime.fromisoformat(order.events[0]["occurred_at"]) - timedelta(hours=1)
                ).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            order.events.append(stale)
            after = max(i for i, e in enumerate(self.flow_events) if e["order"]["id"] == order.id)
            self.flow_events.insert(
                self.random.randrange(after + 1, len(self.flow_events) + 1), stale
            )
            self.figures.late += 1

    # ------------------------------------------------------------ driving

    async def post(self, orders: Replicas, event: dict[str, Any]) -> None:
        response = await orders.request(
            "POST",
            "/v1/orders/events",
            json=event,
            headers={"Authorization": f"Bearer {self.installation.api_key}"},
        )
        self.figures.events_sent += 1
        if response.status_code != 202:
            raise AssertionError(f"{event['id']}: {response.status_code} {response.text[:300]}")
        self.accepted[event["id"]] = response.json()

    async def seed(self, orders: Replicas, passes: Replicas, phones: Phones) -> None:
        """Every customer's first event; then the card downloaded and its devices registered."""
        self.phones = phones
        started = time.monotonic()
        slots = asyncio.Semaphore(self.concurrency)
        number = iter(range(1, 1 << 30))

        async def card(event: dict[str, Any]) -> None:
            async with slots:
                await self.post(orders, event)
                link = self.accepted[event["id"]]["card"]["apple_pass_url"]
                response = await _when_issued(passes, urlsplit(link).path)
                document = pass_document(response.content)
                self.card_of_customer[event["order"]["customer"]["id"]] = document["serialNumber"]
                for _ in range(self.devices_per_card):
                    n = next(number)
                    phone = Phone(
                        device=f"d{self.run}{n:06d}",
                        push_token=f"{n:064x}",
                        pass_type=document["passTypeIdentifier"],
                        serial=document["serialNumber"],
                        auth_token=document["authenticationToken"],
                        last_modified=response.headers["last-modified"],
                    )
                    await phone.register(passes)
                    phones.add(phone)

        await asyncio.gather(*(card(e) for e in self.first_events))
        self.figures.cards = len(self.first_events)
        self.figures.devices = len(phones.by_suffix)
        self.figures.seed_seconds = time.monotonic() - started

    async def flow(
        self,
        orders: Replicas,
        kills: Sequence[Process] = (),
        *,
        kill_between: float = 0.15,
        disrupt: Callable[[Process], Awaitable[None]] | None = None,
    ) -> None:
        """Post the rest of the events, ``concurrency`` at a time; each process in ``kills`` is
        SIGKILLed once, at a random point of the flow, and restarted (or ``disrupt``ed)."""
        disrupt = disrupt or self.installation.kill_and_restart
        started = time.monotonic()
        pending = list(self.flow_events)
        posted = 0
        progress = asyncio.Condition()

        async def poster() -> None:
            nonlocal posted
            while pending:
                await self.post(orders, pending.pop(0))
                async with progress:
                    posted += 1
                    progress.notify_all()

        async def kill(process: Process) -> None:
            at = int(len(pending) * self.random.uniform(kill_between, 1 - kill_between))
            async with progress:
                await progress.wait_for(lambda: posted >= at)
            await disrupt(process)
            self.figures.kills.append(f"{process.name} after {at} events")

        await asyncio.gather(*(poster() for _ in range(self.concurrency)), *map(kill, kills))
        self.figures.seconds = time.monotonic() - started

    # ------------------------------------------------------------ converging

    async def converge(self) -> None:
        async with self.installation.engine().connect() as connection:

            async def settled() -> bool:
                await connection.rollback()
                waiting = await connection.scalar(
                    text(
                        "SELECT (SELECT count(*) FROM outbox_messages WHERE processed_at IS NULL"
                        " AND failed_at IS NULL) + (SELECT count(*) FROM push_targets t JOIN"
                        " cards c ON c.id = t.card_id WHERE t.status = 'active' AND"
                        " (t.sent_version < c.version OR t.locked_until IS NOT NULL))"
                    )
                )
                return waiting == 0 and self._phones_current(await _cards(connection))

            self.figures.converge_seconds = await converge(
                settled, seconds=CONVERGE_SECONDS, what="queue, pushes and phones settled"
            )

    def _phones_current(self, cards: dict[str, dict[str, Any]]) -> bool:
        assert self.phones is not None
        if self.phones.errors:
            raise self.phones.errors[0]
        return self.phones.idle and all(
            p.last_modified == http_date(cards[p.serial]["changed_at"]) for p in self.phones
        )

    # ------------------------------------------------------------ checking

    async def check(self, orders: Replicas, *, push_kills: Sequence[float]) -> Figures:
        """Everything the module docstring promises; the figures of the run."""
        self.figures.accepted = len(self.accepted)
        await self._check_orders(orders)
        async with self.installation.engine().connect() as connection:
            cards = await _cards(connection)
            await self._check_cards(connection, cards)
            await self._check_pushes(connection, cards, push_kills)
        return self.figures

    async def _check_orders(self, orders: Replicas) -> None:
        lost: list[str] = []
        for order in self.orders:
            response = await orders.request(
                "GET",
                f"/v1/orders/{order.id}",
                headers={"Authorization": f"Bearer {self.installation.api_key}"},
            )
            assert response.status_code == 200, response.text
            read = response.json()
            history = {entry["event_id"] for entry in read["history"]}
            lost += [e["id"] for e in order.events if e["id"] in self.accepted.keys() - history]
            assert read["status"] == order.last_status, (order.id, read["status"])
        self.figures.lost = len(lost)
        assert not lost, f"accepted events not applied: {lost[:10]}"

    async def _check_cards(self, connection: Any, cards: dict[str, dict[str, Any]]) -> None:
        expected = {o.id: o.last_status for o in self.orders}
        for customer, serial in self.card_of_customer.items():
            shown = cards[serial]["content"]["orders"]
            mine = {o.id for o in self.orders if o.customer == customer}
            assert {oid: shown[oid]["status"] for oid in mine} == {
                oid: expected[oid] for oid in mine
            }, serial
        failed = await connection.scalar(
            text("SELECT count(*) FROM outbox_messages WHERE failed_at IS NOT NULL")
        )
        assert failed == 0, "messages failed for good"
        stuck = await connection.scalar(
            text(
                "SELECT (SELECT count(*) FROM outbox_messages WHERE locked_until IS NOT NULL AND"
                " processed_at IS NULL) + (SELECT count(*) FROM push_targets WHERE"
                " locked_until IS NOT NULL)"
            )
        )
        assert stuck == 0, "leases left behind"

    async def _check_pushes(
        self, connection: Any, cards: dict[str, dict[str, Any]], push_kills: Sequence[float]
    ) -> None:
        assert self.phones is not None
        card_ids = {serial: card["id"] for serial, card in cards.items()}
        naming: dict[str, tuple[str, int]] = {}
        for phone in self.phones:
            card = cards[phone.serial]
            assert phone.last_modified == http_date(card["changed_at"]), phone.device
            for version in range(1, card["version"] + 1):
                naming[push_id(card_ids[phone.serial], phone.device, version)] = (
                    phone.device,
                    version,
                )
        delivered = [p for p in self.phones.pushes if p["status"] == 200]
        self.figures.pushes = len(delivered)
        unknown = [p for p in delivered if p["apns_id"].lower() not in naming]
        assert not unknown, f"pushes no card version explains: {unknown[:3]}"
        heard = by_key((naming[p["apns_id"].lower()], p["received_at"]) for p in delivered)
        repeats = {key: times for key, times in heard.items() if len(times) > 1}
        self.figures.repeated_pushes = sum(len(times) - 1 for times in repeats.values())
        unanswered = {
            (row.device_library_identifier, row.version)
            for row in await connection.execute(
                select(Delivery.device_library_identifier, Delivery.version).where(
                    Delivery.status_code.is_(None)
                )
            )
        }
        for (device, version), times in repeats.items():
            first, last = min(times), max(times)
            if (device, version) in unanswered:  # APNs took it; its answer came too late
                self.figures.repeated_unanswered += len(times) - 1
                continue
            assert any(first <= kill <= last for kill in push_kills), (
                f"{device} heard of version {version} {len(times)} times, no push kill between"
            )
        by_device = by_key(naming[p["apns_id"].lower()] for p in delivered)
        for phone in self.phones:
            versions = by_device.get(phone.device, [])
            newest = cards[phone.serial]["version"]
            assert newest in versions, f"{phone.device} never heard of version {newest}"
            behind = sum(1 for a, b in itertools.pairwise(versions) if b < a)
            self.figures.out_of_order_pushes += behind
        assert self.figures.out_of_order_pushes == 0
        recorded = Counter(
            (row.card_id, row.device_library_identifier, row.version)
            for row in await connection.execute(
                select(
                    Delivery.card_id, Delivery.device_library_identifier, Delivery.version
                ).where(Delivery.outcome == "delivered")
            )
        )
        twice = [key for key, count in recorded.items() if count > 1]
        assert not twice, f"a version recorded delivered twice: {twice[:3]}"


async def _when_issued(passes: Replicas, path: str, seconds: float = 60.0) -> Any:
    """The pass behind a card link, once the card exists (issued by the queue)."""
    deadline = time.monotonic() + seconds
    while True:
        response = await passes.request("GET", path)
        if response.status_code == 200:
            return response
        if time.monotonic() > deadline:
            raise AssertionError(f"card never issued: {path} {response.status_code}")
        await asyncio.sleep(0.05)


async def _cards(connection: Any) -> dict[str, dict[str, Any]]:
    """Every card by serial number: id, version, changed_at, content."""
    await connection.rollback()
    rows = await connection.execute(
        select(Card.id, Card.serial_number, Card.version, Card.changed_at, Card.content)
    )
    return {row.serial_number: row._asdict() for row in rows}

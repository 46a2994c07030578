"""A device's whole life with a card, through HTTP, the queue, aioapns and the APNs stand-in."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.apns_standin import ApnsStandin
from services.core.settings import Settings
from services.passes.changes import record_change
from services.passes.models import Card, Registration
from services.push.models import Delivery
from tests.conftest import BASE_URL
from tests.e2e.conftest import installation
from tests.factories import (
    WS,
    create_card,
    create_merchant,
    pass_auth,
    push_token,
    register_device,
    registration_url,
)
from tests.waiting import eventually, pushed, queue_drained, topic_drained


async def _change(sessionmaker: async_sessionmaker[AsyncSession], card: Card) -> None:
    async with sessionmaker() as session, session.begin():
        await record_change(session, await session.get_one(Card, card.id))


async def _count(sessionmaker: async_sessionmaker[AsyncSession], query: object) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(query) or 0)  # type: ignore[call-overload]


@pytest.fixture
async def card(session: AsyncSession, settings: Settings) -> Card:
    card = await create_card(session, await create_merchant(session, settings))
    await session.rollback()
    return card


async def test_full_device_cycle(
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    sessionmaker: async_sessionmaker[AsyncSession],
    card: Card,
) -> None:
    client, token, device = device_client, push_token(), "device-0001"
    auth = pass_auth(card)
    await register_device(client, card, device, token)
    listing = f"{WS}/devices/{device}/registrations/{card.pass_type_identifier}"
    first = await client.get(listing)
    tag = first.json()["lastUpdated"]
    pass_url = f"{WS}/passes/{card.pass_type_identifier}/{card.serial_number}"
    last_modified = (await client.get(pass_url, headers=auth)).headers["last-modified"]

    await _change(sessionmaker, card)
    await eventually(lambda: pushed(sessionmaker, card.id, devices=1))
    assert standin.push_count == 1
    [push] = standin.received
    assert push.token == token
    assert push.topic == card.pass_type_identifier
    assert push.payload_json == {}
    assert push.status == 200
    assert push.authenticated_by == "certificate"

    changed = await client.get(listing, params={"passesUpdatedSince": tag})
    assert changed.json()["serialNumbers"] == [card.serial_number]
    fresh = await client.get(pass_url, headers={**auth, "If-Modified-Since": last_modified})
    assert fresh.status_code == 200
    assert fresh.headers["content-type"] == "application/vnd.apple.pkpass"
    again = await client.get(
        pass_url, headers={**auth, "If-Modified-Since": fresh.headers["last-modified"]}
    )
    assert again.status_code == 304

    unregister = await client.delete(registration_url(card, device), headers=auth)
    assert unregister.status_code == 200
    await _change(sessionmaker, card)
    await eventually(lambda: pushed(sessionmaker, card.id, devices=0))  # the change is applied
    assert standin.push_count == 1, "an unregistered device gets no push"


async def test_every_registered_device_gets_each_change_once(
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    sessionmaker: async_sessionmaker[AsyncSession],
    card: Card,
) -> None:
    tokens = {f"device-{n}": push_token() for n in range(3)}
    for device, token in tokens.items():
        await register_device(device_client, card, device, token)
    await _change(sessionmaker, card)
    await eventually(lambda: pushed(sessionmaker, card.id, devices=3))
    assert standin.push_count == 3
    assert sorted(p.token for p in standin.received) == sorted(tokens.values())
    # Each delivery is recorded with the version it sent, in the same transaction.
    delivered = select(func.count()).select_from(Delivery).where(Delivery.outcome == "delivered")
    assert await _count(sessionmaker, delivered) == 3


@pytest.mark.parametrize(("status", "reason"), [(410, "Unregistered"), (400, "BadDeviceToken")])
async def test_dead_token_removes_the_registration(
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    sessionmaker: async_sessionmaker[AsyncSession],
    card: Card,
    status: int,
    reason: str,
) -> None:
    dead, alive = push_token(), push_token()
    standin.fail(dead, status=status, reason=reason)
    await register_device(device_client, card, "dead-device", dead)
    await register_device(device_client, card, "live-device", alive)
    await _change(sessionmaker, card)
    await standin.wait_for(2, timeout=10)
    remaining = select(Registration.device_library_identifier)

    async def dropped() -> bool:
        async with sessionmaker() as session:
            return list((await session.scalars(remaining)).all()) == ["live-device"]

    await eventually(dropped)


@pytest.mark.parametrize(
    "fault",
    [
        lambda s, t: s.fail(t, status=429, times=1),
        lambda s, t: s.fail(t, status=503, times=1),
        lambda s, t: s.drop_connection(t),
    ],
    ids=["429", "503", "dropped-connection"],
)
async def test_transient_faults_are_retried_until_delivered(
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    sessionmaker: async_sessionmaker[AsyncSession],
    card: Card,
    fault: Callable[[ApnsStandin, str], None],
) -> None:
    token = push_token()
    fault(standin, token)
    await register_device(device_client, card, "device-1", token)
    await _change(sessionmaker, card)
    outcomes = select(Delivery.outcome).order_by(Delivery.id)

    async def delivered() -> bool:
        async with sessionmaker() as session:
            return list((await session.scalars(outcomes)).all()) == ["retry", "delivered"]

    await eventually(delivered)
    assert [p.status for p in standin.received if p.token == token][-1] == 200


async def test_slow_answer_and_missing_apns_id_time_out_and_are_retried(
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    sessionmaker: async_sessionmaker[AsyncSession],
    card: Card,
) -> None:
    slow, silent = push_token(), push_token()
    standin.delay(slow, 3.0)  # beyond the 1 s timeout
    standin.omit_apns_id(silent)
    await register_device(device_client, card, "slow-device", slow)
    await register_device(device_client, card, "silent-device", silent)
    await _change(sessionmaker, card)
    retries = select(func.count()).select_from(Delivery).where(Delivery.outcome == "retry")

    async def both_timed_out() -> bool:
        return await _count(sessionmaker, retries) >= 2

    await eventually(both_timed_out)
    async with sessionmaker() as session:
        reasons = set((await session.scalars(select(Delivery.reason))).all())
    assert reasons == {"Timeout"}

    standin.reset()
    delivered = select(func.count()).select_from(Delivery).where(Delivery.outcome == "delivered")

    async def recovered() -> bool:
        return await _count(sessionmaker, delivered) == 2

    await eventually(recovered)


async def test_restart_loses_no_push_and_sends_none_twice(
    push_settings: Settings,
    standin: ApnsStandin,
    sessionmaker: async_sessionmaker[AsyncSession],
    card: Card,
) -> None:
    tokens = [push_token() for _ in range(3)]
    # Push is down: the devices register and the card changes; the messages wait in the queue.
    without_push = installation(push_settings, push=False)
    async with without_push.router.lifespan_context(without_push):
        transport = httpx.ASGITransport(app=without_push)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            for n, token in enumerate(tokens):
                await register_device(client, card, f"device-{n}", token)
        await _change(sessionmaker, card)
        assert not await queue_drained(sessionmaker), "the change waits for push"
        assert standin.push_count == 0
        # The registrations' counts are applied before this process stops.
        await eventually(lambda: topic_drained(sessionmaker, "channel.counted"))

    app = installation(push_settings)  # push comes back
    async with app.router.lifespan_context(app):
        await eventually(lambda: pushed(sessionmaker, card.id, devices=3))
        assert standin.push_count == 3
    app = installation(push_settings)  # and restarts once more: the next change, once each
    async with app.router.lifespan_context(app):
        await _change(sessionmaker, card)
        await eventually(lambda: pushed(sessionmaker, card.id, devices=3))
        assert standin.push_count == 6
    assert sorted(p.token for p in standin.received) == sorted(tokens * 2)

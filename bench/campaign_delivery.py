"""Figure 5: a campaign to N cards, from ``POST /v1/offers`` to the last push at the stand-in.

N cards, one phone each (registered through the PassKit web service), the customers' time
zone one where it is early afternoon now, so no push waits for quiet hours. One
``POST /v1/offers`` targets the N customer ids; the time is taken from just before the POST
to the last of the N pushes at the APNs stand-in, through the whole path: the offers service
stores the offer and publishes the audience in parts of 500, passes puts the offer on each
card (a new version) and announces it, push delivers it. Beside it, in the same run: the bare
RSA-2048 signature rate (figure 1's reference: the cost of a card version when the phone
fetches it) and the bare aioapns loop (figure 4's reference) pushing to the same N tokens.
PostgreSQL, each service in a process of its own (`serve orders`, which carries the offers
API, `serve passes`, `serve push`). Each round is a new offer to the same cards (a card's
second marketing notification of a day is capped, so it updates silently, and still pushes).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from bench.common import (
    HOST,
    LOAD_GENERATOR,
    OUT,
    Result,
    RunConfig,
    Server,
    Shop,
    Standin,
    at_second,
    gather_bounded,
    log,
    median,
    order_event,
    push_token,
    running_server,
)
from bench.pass_building import bare_signing_rate
from bench.push_fanout import bare_aioapns

FIGURE = "campaign_delivery"
SERVICES = ("orders", "passes", "push")
TOKEN_BASE = 5_000_000
LOCAL_HOUR = 13
"""The customers' local hour while the bench runs: far from the default quiet hours."""


def daytime_zone(now: datetime) -> str:
    """An ``Etc/GMT`` zone where it is about ``LOCAL_HOUR`` o'clock (its sign is POSIX's,
    the inverse of the offset: ``Etc/GMT-2`` is UTC+2)."""
    offset = max(-12, min(14, LOCAL_HOUR - now.hour))
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


async def seed(shop: Shop, server: Server, cards: int) -> list[Any]:
    """N customers with an order each, their cards downloaded and each on one phone. The
    cards are fetched once passes has taken every order (on a busy machine the last of 10,000
    events waits minutes behind the others, longer than one card's wait for its order)."""
    zone = daytime_zone(datetime.now(UTC))

    async def ordered(n: int) -> tuple[str, str, str]:
        customer, order_id = f"cmp{n}", f"cmp-{n}"
        event = order_event(f"{order_id}-confirmed", order_id, customer, "confirmed", at_second(0))
        event["order"]["customer"]["time_zone"] = zone
        accepted = await shop.post_event(event)
        return accepted["card"]["apple_pass_url"], customer, order_id

    links = await gather_bounded([ordered(n) for n in range(cards)])
    await server.drained(1800)
    seeded = await gather_bounded([shop.card(*link) for link in links])
    outcome = await LOAD_GENERATOR.run(
        {
            "host": HOST,
            "port": server.ports["passes"],
            "connections": 8,
            "duration": 600,
            "max_requests": cards,
            "requests": {
                "factory": "bench.push_fanout:registrations",
                "params": {
                    "cards": [
                        {"pass_type": c.pass_type, "serial": c.serial, "token": c.token}
                        for c in seeded
                    ],
                    "devices": 1,
                    "token_base": TOKEN_BASE,
                },
            },
        }
    )
    if outcome["statuses"] != {"201": cards}:
        raise RuntimeError(f"registrations: {outcome['statuses']}")
    return seeded


async def campaign_round(
    shop: Shop, standin: Standin, customers: list[str], round_: int, seconds: float
) -> float:
    """Seconds from just before ``POST /v1/offers`` to the last push of its campaign."""
    standin.reset()
    offer = {
        "id": f"bench-offer-{round_}",
        "title": "10 % off tea",
        "text": "All teas this week, with the code below.",
        "coupon_code": f"TEA{round_}",
        "valid_until": _end_of_tomorrow(),
        "target": {"customer_ids": customers},
    }
    started = time.time()
    response = await shop.client.post(
        "/v1/offers", json=offer, headers={"Authorization": f"Bearer {shop.server.api_key}"}
    )
    if response.status_code != 202:
        raise RuntimeError(f"offer refused: {response.status_code} {response.text[:500]}")
    if not await standin.wait_for(len(customers), seconds):
        campaign = await shop.client.get(
            f"/v1/campaigns/{response.json()['campaign_id']}",
            headers={"Authorization": f"Bearer {shop.server.api_key}"},
        )
        raise RuntimeError(
            f"round {round_}: {standin.count} of {len(customers)} pushes in {seconds:.0f} s; "
            f"the campaign: {campaign.text[:800]} (before the passes side of issue 10 is merged, "
            "nothing consumes campaign.audience and no push comes)"
        )
    return max(t for _, t in standin.arrivals()) - started


def _end_of_tomorrow() -> str:
    today = datetime.now(UTC).date()
    return f"{today.fromordinal(today.toordinal() + 1).isoformat()}T23:59:59Z"


async def _measure(server: Server, standin: Standin, cfg: RunConfig) -> list[Result]:
    cards = 50 if cfg.quick else 10_000
    rounds = 1 if cfg.quick else 2
    wait = 120 if cfg.quick else 600
    async with Shop(server) as shop:
        started = time.monotonic()
        seeded = await seed(shop, server, cards)
        await server.drained(600)
        log(f"{FIGURE}: {cards} cards on a phone each in {time.monotonic() - started:.0f} s")
        customers = [card.customer for card in seeded]
        tokens = [push_token(TOKEN_BASE + i) for i in range(cards)]
        topic = seeded[0].pass_type
        times, signing, apns, loads = [], [], [], []
        for round_ in range(1, rounds + 1):
            loads.append(os.getloadavg()[0])  # the machine is shared: what else ran then
            log(f"{FIGURE}: round {round_}, load average {loads[-1]:.2f}")
            times.append(await campaign_round(shop, standin, customers, round_, wait))
            await server.drained(600)
            signing.append(bare_signing_rate(OUT / FIGURE / "keys", 0.3 if cfg.quick else 1.0))
            apns.append((await bare_aioapns(server, standin, topic, tokens))[0])
    seconds, sign_rate, apns_rate = median(times), median(signing), median(apns)
    bare_seconds = cards / apns_rate
    log(
        f"{FIGURE}: {cards} cards in {seconds:.1f} s ({cards / seconds:.0f}/s); bare aioapns "
        f"{apns_rate:.0f}/s ({bare_seconds:.1f} s for {cards}), bare signing {sign_rate:.0f}/s"
    )
    method = (
        f"{cards} cards, one registered phone each, PostgreSQL, the services each in a process "
        f"of its own (`serve orders` with the offers API, `serve passes`, `serve push`); from "
        f"just before one `POST /v1/offers` targeting the {cards} customer ids to the last of "
        f"the {cards} pushes at the stand-in (audience parts of 500 through the queue, each "
        f"card's new version announced, pushed through the delivery worker); {rounds} rounds "
        f"(a new offer each; the second is capped, so silent, and pushes all the same), "
        f"median. Per round: {', '.join(f'{t:.1f} s' for t in times)} (1-minute load average "
        f"at each round's start: {', '.join(f'{load:.2f}' for load in loads)}; 2 cores). In "
        f"the same run: bare "
        f"RSA-2048 signatures/s (figure 1's reference; a phone fetching the new version costs "
        f"one bundle), and the bare aioapns loop (figure 4's reference) pushing to the same "
        f"{cards} tokens. The issue sets no target: the figure is the time, beside them."
    )
    return [
        Result(
            name=f"{FIGURE}.postgres.seconds",
            value=seconds,
            unit="s",
            reference=f"{cards} pushes at the bare aioapns rate, same run",
            reference_value=bare_seconds,
            ratio=seconds / bare_seconds,
            target="none set (issue 10: reported beside its references)",
            met=None,
            method=method,
        ),
        Result(
            name=f"{FIGURE}.postgres.cards_per_s",
            value=cards / seconds,
            unit="cards/s",
            reference="bare RSA-2048 signatures/s, same run",
            reference_value=sign_rate,
            ratio=(cards / seconds) / sign_rate,
            target="none set (issue 10: reported beside its references)",
            met=None,
            method=method,
        ),
    ]


async def run(cfg: RunConfig) -> list[Result]:
    async with running_server(
        f"{FIGURE}-postgres", "postgres", standin_limit=20_000, services=SERVICES
    ) as running:
        if running is None:
            return []
        server, standin = running
        log(f"{FIGURE}: measuring on postgres")
        return await _measure(server, standin, cfg)

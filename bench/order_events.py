"""Figure 3: order events to the lock screen, on PostgreSQL and on SQLite.

Accepted rate: new order events (full snapshots, a new order each, customers reused) posted
from a separate process as fast as the server takes them, one per request and in batches of
100, while the installation consumes what they publish. On PostgreSQL each service runs in a
process of its own (``serve orders``, ``serve passes``, ``serve push``: the design allows it,
and accepting then never waits behind consuming on the same core; a commit wakes the consuming
process through LISTEN/NOTIFY, the poll is the safety net); on SQLite, the embedded
default with its single writer, one ``serve all`` process. The accepted-rate runs come last, so
their backlog need not drain.

Event to push: cards already on phones (one registered device each); at a fixed rate, each
event places a newer order for one of them, so the card changes and its device is pushed. The
latency runs from the moment the event was due to be posted (open loop) to the moment the push
reached the APNs stand-in, which runs in the bench process; both clocks are the same machine's
wall clock.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from bench.common import (
    Database,
    Result,
    RunConfig,
    Server,
    Shop,
    Standin,
    at_second,
    load,
    log,
    median,
    order_event,
    push_token,
    ratio,
    raw_request,
    running_server,
)
from bench.loadgen import percentile

FIGURE = "order_events"
ACCEPT_TARGET = 1000.0
LATENCY_TARGET_MS = 500.0
BATCH_SIZE = 100
SINGLE_CONNECTIONS = 16
BATCH_CONNECTIONS = 2
LAYOUTS: dict[Database, tuple[str, ...]] = {
    "postgres": ("orders", "passes", "push"),
    "sqlite": ("all",),
}
"""Which ``passpost serve`` processes run the installation, per database."""


def _layout(database: Database) -> str:
    if LAYOUTS[database] == ("all",):
        return f"one `passpost serve all` process on {database}"
    return (
        f"`passpost serve {'`, `serve '.join(LAYOUTS[database])}` in a process each on "
        f"{database} (a commit wakes the consuming process through LISTEN/NOTIFY; the "
        f"0.2 s poll is only the safety net)"
    )


LOST_MS = 60_000.0
"""A push that never came counts as this late (it lands in the tail, never in the middle)."""


def _post(api_key: str, path: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    return raw_request("POST", path, headers, data).encode("latin-1")


def single_events(prefix: str, customers: int, api_key: str) -> Callable[[int], bytes]:
    """Loadgen factory: request ``i`` posts a new order for customer ``i % customers``."""

    def make(i: int) -> bytes:
        event = order_event(
            f"{prefix}-{i}",
            f"{prefix}-o{i}",
            f"{prefix}-c{i % customers}",
            "confirmed",
            at_second(i),
        )
        return _post(api_key, "/v1/orders/events", event)

    return make


def batch_events(prefix: str, customers: int, api_key: str, size: int) -> Callable[[int], bytes]:
    """Loadgen factory: request ``i`` posts events ``i*size`` to ``(i+1)*size - 1`` at once."""

    def make(i: int) -> bytes:
        events = [
            order_event(
                f"{prefix}-{n}",
                f"{prefix}-o{n}",
                f"{prefix}-c{n % customers}",
                "confirmed",
                at_second(n),
            )
            for n in range(i * size, (i + 1) * size)
        ]
        return _post(api_key, "/v1/orders/events:batch", {"events": events})

    return make


def newer_orders(prefix: str, customers: int, api_key: str, start: int) -> Callable[[int], bytes]:
    """Loadgen factory: request ``i`` places a newer order for seeded customer ``i % customers``."""

    def make(i: int) -> bytes:
        event = order_event(
            f"{prefix}-{i}",
            f"{prefix}-o{i}",
            f"lat{i % customers}",
            "confirmed",
            at_second(start + i),
        )
        return _post(api_key, "/v1/orders/events", event)

    return make


async def _accepted(server: Server, cfg: RunConfig, kind: str, round_number: int) -> dict[str, Any]:
    prefix = f"{kind}{round_number}"
    params: dict[str, Any] = {"prefix": prefix, "customers": 1000, "api_key": server.api_key}
    if kind == "single":
        factory, connections = "bench.order_events:single_events", SINGLE_CONNECTIONS
    else:
        params["size"] = BATCH_SIZE
        factory, connections = "bench.order_events:batch_events", BATCH_CONNECTIONS
    cpu_before = server.cpu_seconds_by_service()
    outcome = await load(
        server,
        {
            "connections": connections,
            "duration": cfg.duration,
            "requests": {"factory": factory, "params": params},
        },
    )
    expected = "202" if kind == "single" else "200"
    if set(outcome["statuses"]) != {expected} or outcome["errors"]:
        raise RuntimeError(f"{kind} events: unexpected answers {outcome['statuses']}")
    outcome["events_per_s"] = outcome["rps"] * (1 if kind == "single" else BATCH_SIZE)
    events = outcome["count"] * (1 if kind == "single" else BATCH_SIZE)
    cpu = {
        service: (seconds - cpu_before[service]) * 1000 / max(events, 1)
        for service, seconds in server.cpu_seconds_by_service().items()
    }
    log(
        f"{kind}: {outcome['events_per_s']:.0f} events/s; CPU ms per event accepted, by process: "
        + ", ".join(f"{service} {ms:.2f}" for service, ms in cpu.items())
    )
    return outcome


def _match(
    samples: list[list[float]], arrivals: list[tuple[str, float]], customers: int, token_base: int
) -> tuple[list[float], int]:
    """Each push to a phone answers the oldest event of its card not yet answered before it."""
    sent: dict[int, list[float]] = defaultdict(list)
    for number, sent_at, _latency, _status in sorted(samples, key=lambda s: s[0]):
        sent[int(number) % customers].append(sent_at)
    pending = {k: list(v) for k, v in sent.items()}
    latencies = []
    for token, received_at in sorted(arrivals, key=lambda a: a[1]):
        customer = int(token, 16) - token_base
        queue = pending.get(customer)
        if queue and queue[0] <= received_at:
            latencies.append((received_at - queue.pop(0)) * 1000)
    lost = sum(len(v) for v in pending.values())
    return latencies + [LOST_MS] * lost, lost


async def _latency(
    server: Server,
    standin: Standin,
    customers: int,
    rate: float,
    seconds: float,
    run_number: int,
) -> dict[str, Any]:
    """One open-loop run of newer orders at ``rate``; event-to-push latency of each.

    ``run_number`` counts every latency run on the server: each run's orders are placed after
    all earlier ones, so each of them becomes its card's current order (and the card changes).
    """
    token_base = 100_000
    await server.drained()
    standin.reset()
    cpu_before = server.cpu_seconds_by_service()
    outcome = await load(
        server,
        {
            "connections": 32,
            "duration": seconds,
            "rate": rate,
            "samples": True,
            "requests": {
                "factory": "bench.order_events:newer_orders",
                "params": {
                    "prefix": f"lat-run{run_number}",
                    "customers": customers,
                    "api_key": server.api_key,
                    "start": 1_000_000 * (run_number + 1),
                },
            },
        },
    )
    if set(outcome["statuses"]) != {"202"} or outcome["errors"]:
        raise RuntimeError(f"latency events: unexpected answers {outcome['statuses']}")
    await standin.wait_for(outcome["count"], LOST_MS / 1000)
    await server.drained()
    cpu = {
        service: (seconds - cpu_before[service]) * 1000 / max(outcome["count"], 1)
        for service, seconds in server.cpu_seconds_by_service().items()
    }
    latencies, lost = _match(outcome["samples"], standin.arrivals(), customers, token_base)
    result = {
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "post_p50_ms": outcome["p50_ms"],
        "post_p99_ms": outcome["p99_ms"],
        "lost": lost,
        "events": outcome["count"],
        "cpu_ms": cpu,
    }
    log(
        f"event->push at {rate:.0f}/s: p50 {result['p50_ms']:.0f} ms, "
        f"p99 {result['p99_ms']:.0f} ms, lost {lost} of {outcome['count']}; CPU ms per event, "
        "by process: " + ", ".join(f"{service} {ms:.2f}" for service, ms in cpu.items())
    )
    return result


def _latency_results(
    database: Database,
    runs: list[dict[str, Any]],
    rate: float,
    seconds: float,
    customers: int,
    *,
    target: bool,
) -> list[Result]:
    lost = sum(o["lost"] for o in runs)
    events = sum(o["events"] for o in runs)
    tag = f"{rate:.0f}_per_s"
    results = []
    for quantile in ("p50", "p99"):
        value = median(o[f"{quantile}_ms"] for o in runs)
        reference = median(o[f"post_{quantile}_ms"] for o in runs)
        judged = target and quantile == "p99"
        results.append(
            Result(
                name=f"{FIGURE}.{database}.event_to_push_{quantile}_at_{tag}",
                value=value,
                unit="ms",
                reference=f"{quantile} of the POST's own answer, same requests",
                reference_value=reference,
                ratio=ratio(value, reference),
                target=f"< {LATENCY_TARGET_MS:.0f} ms" if judged else "none (reported)",
                met=value < LATENCY_TARGET_MS if judged else None,
                method=f"{rate:.0f} events/s offered for {seconds:g} s (open loop, 32 "
                f"connections), each a newer order for one of {customers} cards with a "
                f"registered phone, started with the queue drained; from the event's due time "
                f"to the push's arrival at the stand-in (HTTP/2, TLS, aioapns through the push "
                f"service); median of {len(runs)} runs; {lost} of {events} pushes missing "
                f"(counted as {LOST_MS / 1000:.0f} s); {_layout(database)}.",
            )
        )
    return results


def _cpu_result(database: Database, runs: dict[float, list[dict[str, Any]]]) -> Result:
    """CPU per event at the lowest rate, where each event is a batch of its own (what every
    transaction, claim and wake-up costs), beside the same at the highest rate."""
    low, high = min(runs), max(runs)

    def total(rate: float) -> float:
        return median(sum(o["cpu_ms"].values()) for o in runs[rate])

    by_process = ", ".join(
        f"{service} {median(o['cpu_ms'][service] for o in runs[low]):.1f}"
        for service in runs[low][0]["cpu_ms"]
    )
    return Result(
        name=f"{FIGURE}.{database}.cpu_ms_per_event_at_{low:.0f}_per_s",
        value=total(low),
        unit="ms",
        reference=f"CPU ms per event at {high:.0f} events/s, same run",
        reference_value=total(high) if high != low else None,
        ratio=ratio(total(low), total(high)) if high != low else None,
        target="none (reported)",
        met=None,
        method=f"CPU time of the server's processes (by /proc) over each latency run at "
        f"{low:.0f} events/s, from the first event until the pushes are out and the queue is "
        f"drained (their idle polling included, ~2-4% of a core each), divided by its events; "
        f"median of {len(runs[low])} runs; by process: {by_process}; {_layout(database)}.",
    )


async def _measure(
    server: Server, standin: Standin, database: Database, cfg: RunConfig
) -> list[Result]:
    # One event per card per run: a card changed twice before its push went out gets one push
    # for both (by design), which would blur the latency of the first.
    customers = 10 if cfg.quick else 200
    async with Shop(server) as shop:
        cards = await shop.issue_cards([f"lat{k}" for k in range(customers)], "lat")
        for k, card in enumerate(cards):
            await shop.register(card, f"phone-lat{k}", push_token(100_000 + k))
    log(f"{database}: {customers} cards on phones")

    # Latency first: the accepted-rate runs leave a backlog that need not drain.
    results: list[Result] = []
    plans = [(10.0, 1.0, True)] if cfg.quick else [(200.0, 1.0, True), (10.0, 2.0, False)]
    run_number = 0
    cpu_runs: dict[float, list[dict[str, Any]]] = {}
    for rate, seconds, judged in plans:
        runs = []
        for _ in range(cfg.repeats):
            runs.append(await _latency(server, standin, customers, rate, seconds, run_number))
            run_number += 1
        results.extend(_latency_results(database, runs, rate, seconds, customers, target=judged))
        cpu_runs[rate] = runs
    results.append(_cpu_result(database, cpu_runs))

    healthz = await load(
        server,
        {
            "connections": SINGLE_CONNECTIONS,
            "duration": cfg.duration,
            "requests": {"cycle": [raw_request("GET", "/healthz")]},
        },
    )
    accepted: dict[str, list[dict[str, Any]]] = {"single": [], "batch": []}
    for round_number in range(cfg.repeats):
        for kind in accepted:
            accepted[kind].append(await _accepted(server, cfg, kind, round_number))
    single = median(o["events_per_s"] for o in accepted["single"])
    batch = median(o["events_per_s"] for o in accepted["batch"])
    log(f"{database}: single {single:.0f} events/s, batch {batch:.0f} events/s")
    target = f">= {ACCEPT_TARGET:.0f} events/s" if database == "postgres" else "none (reported)"
    how = (
        f"load from bench.loadgen (raw HTTP/1.1 keep-alive, own process), {cfg.duration:g} s per "
        f"measurement, median of {cfg.repeats}, single and batch alternating; {_layout(database)}"
        ", consuming what it accepts as it goes (the backlog of earlier runs included: in steady"
        " state the consumers are always busy)"
    )
    accepted_results = [
        Result(
            name=f"{FIGURE}.{database}.accepted_single",
            value=single,
            unit="events/s",
            reference="GET /healthz peak, same server, same load generator",
            reference_value=healthz["rps"],
            ratio=ratio(single, healthz["rps"]),
            target=target,
            met=single >= ACCEPT_TARGET if database == "postgres" else None,
            method=f"POST /v1/orders/events, one new order per request (full snapshot: items, "
            f"total, shipping, links), {SINGLE_CONNECTIONS} connections, closed loop "
            f"(p50 {median(o['p50_ms'] for o in accepted['single']):.0f} ms, "
            f"p99 {median(o['p99_ms'] for o in accepted['single']):.0f} ms); {how}.",
        ),
        Result(
            name=f"{FIGURE}.{database}.accepted_batch",
            value=batch,
            unit="events/s",
            reference="the same events posted one per request",
            reference_value=single,
            ratio=ratio(batch, single),
            target=target,
            met=batch >= ACCEPT_TARGET if database == "postgres" else None,
            method=f"POST /v1/orders/events:batch, {BATCH_SIZE} new orders per request, "
            f"{BATCH_CONNECTIONS} connections, closed loop; {how}.",
        ),
    ]
    return accepted_results + results


async def run(cfg: RunConfig) -> list[Result]:
    """PostgreSQL (where the target is) in full; SQLite, the embedded default, once each."""
    results: list[Result] = []
    plans: list[tuple[Database, RunConfig]] = [("postgres", cfg)]
    if not cfg.quick:
        plans.append(("sqlite", RunConfig(repeats=1, duration=cfg.duration)))
    for database, plan in plans:
        async with running_server(
            f"events-{database}", database, services=LAYOUTS[database]
        ) as running:
            if running is None:
                continue
            server, standin = running
            log(f"{FIGURE}: measuring on {database}")
            results.extend(await _measure(server, standin, database, plan))
    return results

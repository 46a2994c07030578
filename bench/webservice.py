"""Figure 2: Apple's PassKit web service under load, on SQLite and on PostgreSQL.

Phones that got a push ask what changed (the list-serials call) and fetch the pass; most
fetches of an unchanged pass end in a 304. The server runs one uvicorn worker process per
core (``passpost serve all --workers N``, each worker with a listening socket of its own).
Each path is measured at its peak (closed loop from a separate process: wrk when it can be
had, it costs the shared cores least; else
``bench.loadgen``) beside ``/healthz`` of the same server (the framework's floor: routing,
middleware, no database), then at half its peak rate (open loop, ``bench.loadgen``) for
latency, beside ``/healthz`` offered the same rate.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from bench.common import (
    HOST,
    Database,
    DeviceCard,
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
    wait_until,
)
from bench.loadgen import run_wrk, wrk_path

FIGURE = "webservice"
CONNECTIONS = 32
WORKERS = os.cpu_count() or 1
PEAK_TARGETS = {"304": 3000.0, "200": 1500.0}
P99_TARGET_MS = 50.0
EXPECTED = {"healthz": 200, "304": 304, "200": 200, "list": 200}
LABELS = {
    "304": "GET /passkit/v1/passes/{type}/{serial}, unchanged (304)",
    "200": "GET /passkit/v1/passes/{type}/{serial}, changed (200, cached bundle)",
    "list": "GET /passkit/v1/devices/{device}/registrations/{type}?passesUpdatedSince",
}


async def _prepare(server: Server, standin: Standin, cards_count: int) -> dict[str, list[str]]:
    """Cards on phones, each changed once since the phone took it; the requests phones send."""
    async with Shop(server) as shop:
        cards = await shop.issue_cards([f"ws{i}" for i in range(cards_count)], "ws")
        devices = [f"phone-{i}" for i in range(cards_count)]
        await asyncio.gather(
            *(
                shop.register(c, d, push_token(i + 1))
                for i, (c, d) in enumerate(zip(cards, devices, strict=True))
            )
        )

        async def tag(device: str, card: DeviceCard) -> str:
            async with shop.slot():
                listed = await shop.client.get(
                    f"/passkit/v1/devices/{device}/registrations/{card.pass_type}"
                )
            last: str = listed.json()["lastUpdated"]
            return last

        tags = await asyncio.gather(*(tag(d, c) for d, c in zip(devices, cards, strict=True)))
        await asyncio.gather(
            *(
                shop.post_event(
                    order_event(
                        f"{c.order_id}-shipped", c.order_id, c.customer, "shipped", at_second(60)
                    )
                )
                for c in cards
            )
        )

        async def pushed() -> bool:
            return standin.count >= cards_count

        await wait_until(pushed, 120, "the pushes of the changed cards")
        fresh: list[DeviceCard] = await asyncio.gather(
            *(shop.card(c.link, c.customer, c.order_id) for c in cards)
        )
    requests: dict[str, list[str]] = {"healthz": [raw_request("GET", "/healthz")]}
    requests["304"] = [
        raw_request(
            "GET",
            f"/passkit/v1/passes/{c.pass_type}/{c.serial}",
            {"Authorization": f"ApplePass {c.token}", "If-Modified-Since": c.last_modified},
        )
        for c in fresh
    ]
    requests["200"] = [
        raw_request(
            "GET",
            f"/passkit/v1/passes/{c.pass_type}/{c.serial}",
            {"Authorization": f"ApplePass {c.token}", "If-Modified-Since": old.last_modified},
        )
        for c, old in zip(fresh, cards, strict=True)
    ]
    requests["list"] = [
        raw_request(
            "GET",
            f"/passkit/v1/devices/{device}/registrations/{c.pass_type}?passesUpdatedSince={tag}",
        )
        for device, c, tag in zip(devices, fresh, tags, strict=True)
    ]
    return requests


def _check(kind: str, outcome: dict[str, Any]) -> None:
    expected = str(EXPECTED[kind])
    wrong = {k: v for k, v in outcome["statuses"].items() if k != expected}
    if wrong or outcome["errors"]:
        raise RuntimeError(f"{kind}: unexpected answers {wrong}, errors {outcome['errors']}")


async def _peak(server: Server, wrk: str | None, job: dict[str, Any]) -> dict[str, Any]:
    if wrk is None:
        return await load(server, job)
    return await run_wrk(wrk, {"host": HOST, "port": server.port, **job})


async def _measure(
    server: Server, standin: Standin, database: Database, cfg: RunConfig, wrk: str | None
) -> list[Result]:
    cards_count = 10 if cfg.quick else 50
    requests = await _prepare(server, standin, cards_count)
    kinds = ["healthz", "304", "200", "list"]
    peaks: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for repeat in range(cfg.repeats):
        for kind in kinds:  # interleaved, so drift on a shared machine hits every path alike
            outcome = await _peak(
                server,
                wrk,
                {
                    "connections": CONNECTIONS,
                    "duration": cfg.duration,
                    "warmup": 0.3 if repeat == 0 else 0,
                    "requests": {"cycle": requests[kind]},
                },
            )
            _check(kind, outcome)
            peaks[kind].append(outcome)
    peak = {k: median(o["rps"] for o in peaks[k]) for k in kinds}
    log(f"{database} peaks: " + ", ".join(f"{k} {v:.0f}/s" for k, v in peak.items()))

    halves: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds[1:]}
    floors: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds[1:]}
    for repeat in range(cfg.repeats):
        for kind in kinds[1:]:
            rate = peak[kind] / 2
            # /healthz at the same offered rate once per path: the floor moves little.
            pairs = [(kind, halves)] + ([("healthz", floors)] if repeat == 0 else [])
            for target, store in pairs:
                outcome = await load(
                    server,
                    {
                        "connections": CONNECTIONS,
                        "duration": cfg.duration,
                        "rate": rate,
                        "requests": {"cycle": requests[target]},
                    },
                )
                _check(target, outcome)
                store[kind].append(outcome)

    results = []
    peak_load = (
        "wrk (one thread)"
        if wrk
        else "bench.loadgen (raw HTTP/1.1 keep-alive, own process; wrk could not be had)"
    )
    how = (
        f"{cards_count} cards, each on its own registered phone and changed once; "
        f"{CONNECTIONS} keep-alive connections, peaks from {peak_load}, half-peak latency from "
        f"bench.loadgen (open loop, own process), {cfg.duration:g} s per measurement, median "
        f"of {cfg.repeats}, paths interleaved; `passpost serve all --workers {WORKERS}` "
        f"(uvicorn worker processes with uvloop and httptools, one per core, each with its own "
        f"SO_REUSEPORT listening socket, sharing the cores "
        f"with the load generator) on {database}"
    )
    for kind in kinds[1:]:
        p50_peak = median(o["p50_ms"] for o in peaks[kind])
        p99_peak = median(o["p99_ms"] for o in peaks[kind])
        target = PEAK_TARGETS.get(kind)
        results.append(
            Result(
                name=f"webservice.{database}.{kind}.peak",
                value=peak[kind],
                unit="requests/s",
                reference="GET /healthz peak, same server, same load generator",
                reference_value=peak["healthz"],
                ratio=ratio(peak[kind], peak["healthz"]),
                target=f">= {target:.0f} requests/s" if target else "none (reported)",
                met=peak[kind] >= target if target else None,
                method=f"{LABELS[kind]}: closed loop at peak (p50 {p50_peak:.1f} ms, "
                f"p99 {p99_peak:.1f} ms there). {how}.",
                figure=FIGURE,
            )
        )
        rate = peak[kind] / 2
        for quantile in ("p50", "p99"):
            value = median(o[f"{quantile}_ms"] for o in halves[kind])
            floor = median(o[f"{quantile}_ms"] for o in floors[kind])
            achieved = median(o["rps"] for o in halves[kind])
            results.append(
                Result(
                    name=f"webservice.{database}.{kind}.{quantile}_at_half_peak",
                    value=value,
                    unit="ms",
                    reference=f"GET /healthz {quantile} offered the same rate (one run)",
                    reference_value=floor,
                    ratio=ratio(value, floor),
                    target=f"< {P99_TARGET_MS:.0f} ms" if quantile == "p99" else "none (reported)",
                    met=value < P99_TARGET_MS if quantile == "p99" else None,
                    method=f"{LABELS[kind]}: open loop at half its peak ({rate:.0f} requests/s "
                    f"offered, {achieved:.0f}/s answered), latency from each request's due "
                    f"time. {how}.",
                    figure=FIGURE,
                )
            )
    return results


async def run(cfg: RunConfig) -> list[Result]:
    results: list[Result] = []
    wrk = await asyncio.to_thread(wrk_path)
    log(f"{FIGURE}: peaks from {'wrk' if wrk else 'bench.loadgen (no wrk)'}")
    serve_args = ["--workers", str(WORKERS)]
    for database in ("sqlite",) if cfg.quick else ("sqlite", "postgres"):
        async with running_server(
            f"{FIGURE}-{database}", database, serve_args=serve_args
        ) as running:
            if running is None:
                continue
            server, standin = running
            log(f"{FIGURE}: measuring on {database}")
            results.extend(await _measure(server, standin, database, cfg, wrk))
    return results

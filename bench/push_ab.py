"""A/B of the push hot path: figure 4's waves through checkouts of the code, side by side.

``python -m bench.push_ab [--rounds N] [--profile DIR] CHECKOUT [CHECKOUT ...]`` starts, for each
checkout (a directory holding a copy of the repository, e.g. from ``git archive``), figure 4's
three-process installation (``serve orders``, ``serve passes``, ``serve push``) running that
checkout's code, all beside one APNs stand-in in this process. Every round pushes one wave
(4 cards x 1000 phones) through each installation in turn and one bare aioapns wave
(``bench.apns_bare``, the reference), so all of them share the machine's state of the moment;
each installation's rate is divided by the bare rate of its round, and the medians of those
ratios are what compares the checkouts. ``--profile DIR`` also records each push process with
py-spy during its waves (raw stacks, ``DIR/<checkout>.txt``).

The installations idle between their waves (their workers poll), so running several at once
costs little, and far less than the noise of measuring them minutes apart on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from bench import common
from bench.common import Server, Standin, log, median
from bench.push_fanout import CONNECTIONS, DEVICES_PER_CARD, SERVICES, WINDOW, Fanout

CARDS = 4


def _variant(argument: str) -> tuple[Path, dict[str, str]]:
    """``DIR`` or ``DIR:NAME=VALUE,...``: a checkout, and settings for its processes."""
    path, _, settings = argument.partition(":")
    env = dict(item.split("=", 1) for item in settings.split(",") if item)
    return Path(path).resolve(), env


async def _initialised(checkout: Path, index: int) -> Server:
    """A data directory and database made by ``checkout``'s code (its processes start there)."""
    common.ROOT = checkout
    server = Server(f"push-ab-{index}", "postgres", SERVICES)
    attempts = 10
    while True:
        attempts -= 1
        try:
            if not await server.init():
                raise RuntimeError("no PostgreSQL for the A/B")
            return server
        except RuntimeError as error:  # a shared server out of connections for a moment
            if "too many clients" not in str(error) or not attempts:
                raise
            await asyncio.sleep(5)


async def _installation(
    checkout: Path, env: dict[str, str], server: Server, standin: Standin
) -> Fanout:
    """``server`` serving, its cards on their phones, one wave pushed to warm it."""
    common.ROOT = checkout
    await server.serve(
        standin,
        extra_env={"PASSPOST_MAX_DEVICES_PER_CARD": str(max(DEVICES_PER_CARD.values())), **env},
    )
    fanout = Fanout(server, standin, CARDS, DEVICES_PER_CARD[False])
    await fanout.seed()
    await fanout.push_wave()  # warm: connections open, statements prepared
    await server.drained()
    return fanout


async def _profiled(pid: int, out: Path | None) -> asyncio.subprocess.Process | None:
    if out is None:
        return None
    return await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--rate",
        "200",
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _stop_profile(process: asyncio.subprocess.Process | None) -> None:
    if process is not None:
        process.send_signal(signal.SIGINT)
        await process.wait()


async def run(variants: list[str], rounds: int, profile: Path | None) -> dict[str, Any]:
    checkouts = [_variant(v)[0] for v in variants]
    # The installations share the development key chain (the first one's, copied), so one
    # stand-in trusts all their certificates.
    servers = [await _initialised(checkout, index) for index, checkout in enumerate(checkouts)]
    standin = Standin(servers[0].keys_dir, 10_000)
    await standin.start()
    fanouts: list[Fanout] = []
    try:
        for variant, server in zip(variants, servers, strict=True):
            fanouts.append(await _installation(*_variant(variant), server, standin))
        rates: list[list[float]] = [[] for _ in checkouts]
        cpu_ms: list[list[float]] = [[] for _ in checkouts]
        bare: list[float] = []
        for round_ in range(rounds):
            for index, (server, fanout) in enumerate(zip(servers, fanouts, strict=True)):
                push_pid = server._processes["push"].pid  # the bench's own
                out = profile / f"{index}-{round_}.txt" if profile else None
                spy = await _profiled(push_pid, out)
                cpu = server.cpu_seconds_by_service()["push"]
                rates[index].append(await fanout.push_wave())
                await server.drained()
                await _stop_profile(spy)
                wave = CARDS * fanout.devices
                cpu_ms[index].append(1000 * (server.cpu_seconds_by_service()["push"] - cpu) / wave)
            bare.append(await fanouts[0].bare())
            log(
                f"push A/B round {round_ + 1}: bare {bare[-1]:.0f}/s; "
                + "; ".join(
                    f"{v} {r[-1]:.0f}/s ({r[-1] / bare[-1]:.2f})"
                    for v, r in zip(variants, rates, strict=True)
                )
            )
        return {
            "load_average": os.getloadavg(),
            "window": WINDOW,
            "connections": CONNECTIONS,
            "bare_rates": bare,
            "bare_cpu_ms": fanouts[0].bare_cpu_ms,
            "checkouts": {
                variant: {
                    "rates": rates[index],
                    "ratios": [r / b for r, b in zip(rates[index], bare, strict=True)],
                    "median_ratio": median(
                        [r / b for r, b in zip(rates[index], bare, strict=True)]
                    ),
                    "median_rate": median(rates[index]),
                    "push_cpu_ms": cpu_ms[index],
                    "median_push_cpu_ms": median(cpu_ms[index]),
                }
                for index, variant in enumerate(variants)
            },
        }
    finally:
        for fanout in fanouts:
            with contextlib.suppress(Exception):
                await fanout.shop.close()
        for server in servers:
            await server.stop()
        await standin.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.push_ab", description=__doc__)
    parser.add_argument("variants", nargs="+", metavar="CHECKOUT[:NAME=VALUE,...]")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # A stopped run still stops its servers (the finally blocks run as the loop unwinds).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = asyncio.run(run(args.variants, args.rounds, args.profile))
    result["load_average_before"] = load_before
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

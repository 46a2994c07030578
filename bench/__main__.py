"""``python -m bench [--quick] [FIGURE ...]``: run the benchmarks (``make bench`` runs them all).

Figures: passes (pass building), webservice (PassKit web service under load), events (order
events to the lock screen), push (push fan-out and memory), campaign (an offer to N cards,
to the last push). A full run writes
``bench/results.json`` and the table in ``BENCHMARKS.md``; running some figures replaces only
their entries. ``--quick`` uses tiny sizes (a smoke run, under a minute) and writes to
``bench/out/`` instead, since its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from types import ModuleType

from bench import campaign_delivery, order_events, pass_building, push_fanout, webservice
from bench.common import KEYS_CACHE, LOAD_GENERATOR, OUT, REPORT, RESULTS, Result, RunConfig, log
from bench.report import write_report, write_results

FIGURES: dict[str, ModuleType] = {
    "passes": pass_building,
    "webservice": webservice,
    "events": order_events,
    "push": push_fanout,
    "campaign": campaign_delivery,
}


def _install_loop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it on Linux
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _run(names: list[str], cfg: RunConfig) -> tuple[list[Result], dict[str, float]]:
    try:
        return await _run_figures(names, cfg)
    finally:
        await LOAD_GENERATOR.close()


async def _run_figures(names: list[str], cfg: RunConfig) -> tuple[list[Result], dict[str, float]]:
    """Each figure in turn; one that fails is logged and left out, the others still run."""
    results: list[Result] = []
    timings: dict[str, float] = {}
    for name in names:
        started = time.monotonic()
        log(f"figure {name}: started")
        runner: Callable[[RunConfig], Awaitable[list[Result]]] = FIGURES[name].run
        try:
            figure_results = await runner(cfg)
        except Exception:
            log(f"figure {name}: FAILED\n{traceback.format_exc()}")
            continue
        for result in figure_results:
            result.figure = FIGURES[name].FIGURE
        results.extend(figure_results)
        timings[name] = time.monotonic() - started
        log(f"figure {name}: done in {timings[name]:.0f} s")
    return results, timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "figures", nargs="*", metavar="FIGURE", help=f"{', '.join(FIGURES)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args(argv)
    unknown = [name for name in args.figures if name not in FIGURES]
    if unknown:
        parser.error(f"unknown figure {unknown[0]!r}; choose from {', '.join(FIGURES)}")
    names = args.figures or list(FIGURES)
    cfg = RunConfig.for_mode(args.quick)
    load_before = os.getloadavg()
    started = time.monotonic()
    shutil.rmtree(KEYS_CACHE, ignore_errors=True)  # made afresh by the first server of the run
    _install_loop()
    # A stopped run still stops its servers (the finally blocks run as the loop unwinds).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results, timings = asyncio.run(_run(names, cfg))
    total = time.monotonic() - started
    if args.quick:
        results_path, report_path = OUT / "results-quick.json", OUT / "BENCHMARKS-quick.md"
    else:
        results_path, report_path = RESULTS, REPORT
    done = [FIGURES[n].FIGURE for n in names if n in timings]
    merged = write_results(results_path, results, done)
    write_report(report_path, merged, timings, total, quick=args.quick, load_before=load_before)
    for result in results:
        mark = {True: "met", False: "MISSED", None: "-"}[result.met]
        value = "n/a" if result.value is None else f"{result.value:,.1f}"
        print(f"{mark:>6}  {result.name}: {value} {result.unit}  (target {result.target})")
    print(f"total {total:.0f} s; results in {results_path}, table in {report_path}")
    failed = [n for n in names if n not in timings]
    if failed:
        print(f"FAILED: {', '.join(failed)} (their earlier entries are kept)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

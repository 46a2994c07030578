"""Writing the results: ``bench/results.json`` and the generated part of ``BENCHMARKS.md``."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import Result

MARKER = "<!-- Everything below is written by `python -m bench`; edit above this line. -->"
FIGURE_TITLES = {
    "pass_building": "1. Pass building",
    "webservice": "2. PassKit web service under load",
    "order_events": "3. Order events to the lock screen",
    "push_fanout": "4. Push fan-out and memory",
    "campaign_delivery": "5. A campaign to N cards, to the last push",
}
DEFAULT_INTRO = "# Benchmarks\n\nRun them with `make bench` (`python -m bench --help`).\n"


def write_results(
    path: Path, results: Sequence[Result], figures: Sequence[str]
) -> list[dict[str, Any]]:
    """Replace the entries of the figures just run, keep the others; return the whole list."""
    kept: list[dict[str, Any]] = []
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except ValueError:
            previous = []
        kept = [e for e in previous if _figure_of(e["name"]) not in figures]
    fresh = [r.as_json() for r in results]
    merged = sorted(
        [*kept, *fresh], key=lambda e: (list(FIGURE_TITLES).index(_figure_of(e["name"])),)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=2, ensure_ascii=False) + "\n")
    return merged


def _figure_of(name: str) -> str:
    prefix = name.split(".", 1)[0]
    return prefix if prefix in FIGURE_TITLES else "pass_building"


def _number(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "ratio" or abs(value) < 10:
        text = f"{value:,.2f}"
    elif abs(value) < 100:
        text = f"{value:,.1f}"
    else:
        text = f"{value:,.0f}"
    return f"{text} {unit}" if unit and unit != "ratio" else text


def _load(values: tuple[float, float, float] | None) -> str:
    return "n/a" if values is None else "/".join(f"{v:.2f}" for v in values)


def _table(entries: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| figure | value | reference | reference value | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in entries:
        met = {True: "yes", False: "**no**", None: "-"}[e["met"]]
        lines.append(
            f"| `{e['name']}` | {_number(e['value'], e['unit'])} | {e['reference']} | "
            f"{_number(e['reference_value'])} | {_number(e['ratio'], 'ratio')} | "
            f"{e['target']} | {met} |"
        )
    return lines


def write_report(
    path: Path,
    entries: list[dict[str, Any]],
    timings: dict[str, float],
    total: float,
    *,
    quick: bool,
    load_before: tuple[float, float, float] | None = None,
) -> None:
    intro = DEFAULT_INTRO
    if path.exists():
        text = path.read_text()
        intro = text.split(MARKER, 1)[0].rstrip() + "\n" if MARKER in text else text
    cpu = platform.processor() or platform.machine()
    lines = [
        intro,
        MARKER,
        "",
        "## Results",
        "",
        f"Last run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f"{' (--quick: sizes too small to mean anything)' if quick else ''}; "
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}; "
        f"figures run: {', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}; "
        f"total {total:.0f} s; load average {_load(load_before)} before the run, "
        f"{_load(os.getloadavg())} after (anything above ~1 before means someone else was "
        "using the machine). Every value is a median of several runs, measured beside its "
        "reference in the same run; the reference value is in the reference's own unit.",
        "",
    ]
    for figure, title in FIGURE_TITLES.items():
        chosen = [e for e in entries if _figure_of(e["name"]) == figure]
        if not chosen:
            continue
        lines += [f"### {title}", "", *_table(chosen), "", "Methods:", ""]
        seen: set[str] = set()
        for e in chosen:
            if e["method"] in seen:
                lines.append(f"- `{e['name']}`: as above.")
                continue
            seen.add(e["method"])
            lines.append(f"- `{e['name']}`: {e['method']}")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))

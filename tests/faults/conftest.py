"""Faults survived: what every fault test shares, and the figures the suite prints.

Each test records one row of figures (``Figures``); the rows are printed at the end of the run
under "faults survived", the table docs/reliability.md (``## Faults``) is copied from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pytest

_ROWS: list[Figures] = []


@dataclass
class Figures:
    """What one fault test did and saw."""

    fault: str
    backend: str
    events: int = 0
    """Order events answered 202 (each to be applied, whatever the fault)."""
    faults_injected: int = 0
    """Fault answers given (stand-in or mock answers, cut connections)."""
    deliveries: int = 0
    """Pushes (or Google object syncs and messages) recorded as delivered."""
    failed_for_good: int = 0
    """Recorded as given up after the bounded retries (where the fault never lifts)."""
    lost: int = 0
    """Accepted but never applied or delivered, and not recorded as failed: must be 0."""
    repeated: int = 0
    """Deliveries recorded as delivered more than once for one (target, version)."""
    answers_5xx: int = 0
    """5xx answers to HTTP requests during the fault (503s while the database is away)."""

    def record(self) -> None:
        _ROWS.append(self)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _ROWS:
        return
    terminalreporter.section("faults survived")
    columns = list(asdict(_ROWS[0]))
    terminalreporter.write_line(" | ".join(columns))
    for row in _ROWS:
        terminalreporter.write_line(" | ".join(str(value) for value in asdict(row).values()))

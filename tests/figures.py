"""The figures the suite prints at its end (and docs/reliability.md quotes): each test that
measures something records it here, by name, and ``conftest.pytest_terminal_summary`` prints
them all."""

from __future__ import annotations

FIGURES: dict[str, str] = {}


def record(name: str, value: object) -> None:
    """Keep ``value`` under ``name``; a test run on several backends names each run apart."""
    FIGURES[name] = str(value)

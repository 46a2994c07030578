"""Services talk only through the queue: no service imports another (DESIGN.md).

Every import in ``services/`` is read with ``ast`` (function-level ones too) and held against
``MAY_IMPORT``, the one list of which package may import which.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parent.parent / "services"

KERNEL = {"core"}
SHARED = {"contracts", "integrations"}
"""Pure packages (no tables, no service state) any package may use."""
REGISTRY = {"merchants"}
"""The tenant registry: every service needs to know its merchants."""

MAY_IMPORT: dict[str, set[str]] = {
    # The kernel stands on its own; the shared pure packages on it at most (a message is a
    # ``core.queue`` contract).
    "core": set(),
    "contracts": KERNEL,
    "integrations": set(),
    "merchants": KERNEL | SHARED,
    # The services: the kernel, the registry and shared packages, never each other.
    "orders": KERNEL | REGISTRY | SHARED,
    "offers": KERNEL | REGISTRY | SHARED,
    "passes": KERNEL | REGISTRY | SHARED,
    "push": KERNEL | REGISTRY | SHARED,
    # A development tool that pushes are sent to exactly as to Apple: it knows no service.
    "apns_standin": KERNEL,
    # Edges that compose services: onboarding (a merchant and its design) and the admin routes
    # that run it or announce a merchant's cards after Google was switched on run operations of
    # the registry and of passes in one transaction; the CLI serves any of them, ``models``
    # gathers every table for migrations. No service imports them. (What only one service owns
    # it administers itself: the passes service's admin routes are its own.)
    "admin": KERNEL | REGISTRY | SHARED | {"passes", "onboarding"},
    "onboarding": KERNEL | REGISTRY | SHARED | {"passes"},
    "cli": {"*"},
    "__init__": set(),
    "__main__": {"cli"},
    "models": {"*"},
}


def package_of(path: Path) -> str:
    """``services/passes/issuing.py`` -> ``passes``; ``services/cli.py`` -> ``cli``."""
    parts = path.relative_to(SERVICES).parts
    return parts[0].removesuffix(".py")


def imported_packages(source: str, module: str) -> set[str]:
    """The ``services.<package>`` packages a module's source imports (relative imports are
    resolved against ``module``, a dotted name such as ``services.passes.issuing``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                names = [".".join([*base, node.module or ""]).rstrip(".")]
            else:
                names = [node.module or ""]
            # ``from services import cli`` names its package in the imported names.
            if names == ["services"]:
                names = [f"services.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "services" and len(parts) > 1:
                found.add(parts[1])
    return found


def violations() -> list[str]:
    found = []
    for path in sorted(SERVICES.rglob("*.py")):
        package = package_of(path)
        allowed = MAY_IMPORT.get(package)
        module = ".".join(("services", *path.relative_to(SERVICES).with_suffix("").parts))
        imported = imported_packages(path.read_text(encoding="utf-8"), module) - {package}
        if allowed is None:
            found.append(f"{path.relative_to(SERVICES.parent)}: package {package!r} is not listed")
        elif "*" not in allowed:
            found += [
                f"{path.relative_to(SERVICES.parent)} imports services.{other}"
                for other in sorted(imported - allowed)
            ]
    return found


def test_no_service_imports_another() -> None:
    assert violations() == []


def test_every_package_is_listed() -> None:
    packages = {package_of(path) for path in SERVICES.rglob("*.py")}
    assert packages <= MAY_IMPORT.keys()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from services.passes.issuing import links_of", {"passes"}),
        ("import services.push.models", {"push"}),
        ("from services import orders", {"orders"}),
        ("def f():\n    from services.passes import issuing\n", {"passes"}),
        ("from ..passes import issuing", {"passes"}),
        ("from . import states", {"orders"}),
        ("import httpx\nfrom sqlalchemy import select", set()),
    ],
)
def test_imports_are_found_wherever_they_are(source: str, expected: set[str]) -> None:
    assert imported_packages(source, "services.orders.service") == expected

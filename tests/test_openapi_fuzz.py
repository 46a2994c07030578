"""schemathesis against the service's own OpenAPI description, in process, every check.

The ``serve all`` component set, called as a shop (a real merchant key) and as ops (the admin
token) through the security schemes the description declares, then the device calls once more
as a device with a real pass (its token, type and serial). Every operation gets its
explicit examples, the coverage cases (boundaries, each constraint broken one at a time,
methods a path does not take) and ``MAX_EXAMPLES`` generated positive and negative cases. No
answer may be a 5xx, break its documented schema, status, content type or headers, refuse a
request the description calls valid, or accept one it calls invalid.
"""

from __future__ import annotations

import collections
import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from pydantic import SecretStr
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema
from schemathesis.python import asgi

from services.cli import ServiceName, components_of
from services.core.ratelimit import RateLimit
from services.core.settings import Settings
from services.core.web import create_app
from tests.conftest import BASE_URL, MigratedDatabase
from tests.figures import record

MAX_EXAMPLES = 10
"""Generated cases per operation and phase: 1,740 cases in all, under a minute per database."""
ADMIN_TOKEN = "admin-token-for-the-fuzz-test-0123456789"
SEED = 20261201
"""Fixed, so a failure found in CI is found again on a laptop."""

NAMES_SERVER_FILES = [
    "POST /admin/v1/merchants",
    "PUT /admin/v1/merchants/{slug}/apple",
    "PUT /admin/v1/merchants/{slug}/google",
]
"""Operations whose bodies name files on the server (certificates, keys): a schema cannot say
which files exist, so a well-formed body naming a missing one is rightly a 422. Every other
check still runs on them."""

DEPENDS_ON_STATE = [
    "POST /v1/offers",
    "GET /v1/offers",
    "GET /v1/campaigns",
    "GET /v1/stats",
    "GET /v1/feedback",
    "PATCH /admin/v1/merchants/{slug}/marketing",
]
"""What a schema cannot say: an offer's ``valid_until`` must be ahead of the clock, a list's
``cursor`` is one of our own answers' ``next_cursor`` (opaque), the stats' period is at most 366
days up to today, and a merchant's weekly cap is at least the daily cap it has. A well-formed
body or query against those is rightly a 422; every other check still runs on them."""

URL_TEMPLATES = ["PATCH /admin/v1/merchants/{slug}/journeys/{journey}"]
"""A journey's link is a URL template (``{customer_id}`` and the like kept as written): its
schema says http(s), printable, no spaces, but whether it parses as a URL once its
placeholders are filled no pattern can say, so a well-formed one that does not is rightly a
422; every other check still runs on it."""

ORDER_ID_TAKES_THEIR_PATHS = [
    "POST /v1/orders/events",
    "POST /v1/orders/events:batch",
    "POST /v1/offers/{offer_id}:cancel",
]
"""``GET /v1/orders/{order_id}`` (``GET /v1/offers/{offer_id}``) serves these paths too (an id
may be ``events``, or end in ``:cancel``), so
their 405 allows GET as well as POST: true of the URL, though the description lists GET under
the other path. The check compares with the description's path, so it is off for these two."""


@dataclass
class FuzzRun:
    cases: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: dict[tuple[str, str, str], str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def read(self, event: events.EngineEvent) -> None:
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            self.cases += len(recorder.cases)
            for interaction in recorder.interactions.values():
                if interaction.response is not None:
                    self.statuses[interaction.response.status_code] += 1
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.failure_info is not None:
                        self._failed(recorder, case_id, check.name, check.failure_info)
        elif isinstance(event, events.NonFatalError):
            self.errors.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            self.errors.append(f"fatal: {event.exception!r}")

    def _failed(self, recorder: Any, case_id: str, check: str, info: Any) -> None:
        key = (recorder.label, check, info.failure.title)
        if key in self.failures:
            return
        interaction = recorder.interactions.get(case_id)
        answer = interaction.response.content[:300] if interaction and interaction.response else b""
        self.failures[key] = f"{info.code_sample}\n  -> {answer!r}"

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


DEVICE_PATHS = "^/passkit/v1/(devices|passes)/"
"""The PassKit calls a device makes about its pass: fuzzed once more with a real pass."""


def _config(**more: Any) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none", "mode": "all"},
            "checks": {"enabled": True},
            "phases": {"stateful": {"enabled": False}},
            **more,
        }
    )


def fuzz(app: Any, schema: Any, run: FuzzRun) -> None:
    for event in from_schema(schema).execute():
        run.read(event)


def as_shop_and_ops(app: Any, merchant_key: str, run: FuzzRun) -> None:
    """Every operation, with the merchant's key and the admin token."""
    config = _config(
        auth={
            "openapi": {
                "MerchantKey": {"bearer": merchant_key},
                "AdminToken": {"bearer": ADMIN_TOKEN},
            }
        },
        operations=[
            {
                "include-name": NAMES_SERVER_FILES + DEPENDS_ON_STATE + URL_TEMPLATES,
                "checks": {"positive_data_acceptance": {"enabled": False}},
            },
            {
                "include-name": ORDER_ID_TAKES_THEIR_PATHS,
                "checks": {"allow_header_conformance": {"enabled": False}},
            },
        ],
    )
    fuzz(app, schemathesis.openapi.from_asgi("/openapi.json", app, config=config), run)


def as_a_device(app: Any, pass_json: dict[str, Any], run: FuzzRun) -> None:
    """The device calls about a real pass: its type and serial in the path, its token in
    ``Authorization`` (devices, push tokens and headers still generated), so registering,
    unregistering and fetching the pass are reached, not only their 401s and 404s."""
    config = _config(
        auth={
            "openapi": {"ApplePass": {"api_key": f"ApplePass {pass_json['authenticationToken']}"}}
        },
        parameters={
            "pass_type": pass_json["passTypeIdentifier"],
            "serial": pass_json["serialNumber"],
        },
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    fuzz(app, schema.include(path_regex=DEVICE_PATHS), run)


def test_the_service_answers_as_its_openapi_description_says(
    settings: Settings, migrated_database: MigratedDatabase
) -> None:
    settings = settings.model_copy(update={"admin_token": SecretStr(ADMIN_TOKEN)})
    app = create_app(settings, components_of(ServiceName.all, settings))
    try:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with asgi.get_client(app) as client:
            onboarded = client.post(
                f"{BASE_URL}/admin/v1/merchants",
                json={"slug": "shop", "name": "Shop"},
                headers=admin,
            )
            assert onboarded.status_code == 201, onboarded.text
            card = client.post(
                f"{BASE_URL}/admin/v1/merchants/shop/cards",
                json={"customer_id": "c-1"},
                headers=admin,
            )
            bundle = client.get(card.json()["apple_pass_url"])
            assert bundle.status_code == 200, bundle.text
        with zipfile.ZipFile(io.BytesIO(bundle.content)) as pkpass:
            pass_json = json.loads(pkpass.read("pass.json"))
        # One address sends every case: /passkit/v1/log's limit would answer all but ten 429.
        app.state.device_log_limit = RateLimit(burst=1_000_000, per_second=1_000.0)
        run = FuzzRun()
        as_shop_and_ops(app, onboarded.json()["api_key"], run)
        as_a_device(app, pass_json, run)
    finally:
        asgi.shutdown_lifespans()

    backend = migrated_database.backend
    record(f"schemathesis cases tried ({backend})", run.cases)
    record(f"schemathesis 5xx seen ({backend})", run.server_errors)
    record(f"schemathesis statuses ({backend})", dict(sorted(run.statuses.items())))
    assert not run.errors, "\n".join(run.errors)
    assert not run.failures, "\n\n".join(
        f"{label} [{check}: {title}]\n{detail}"
        for (label, check, title), detail in run.failures.items()
    )
    assert run.server_errors == 0
    assert run.cases > 20 * MAX_EXAMPLES  # every operation was reached, not just a few
    assert run.statuses[202] > 0  # order events with the real key got through
    assert run.statuses[201] > 1  # and registrations of the real pass (and merchants)

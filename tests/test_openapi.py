"""The OpenAPI description says what the service does (issue 12, finding 10), one fix a test.

``test_openapi_fuzz.py`` holds the whole service to its description; these say each point
plainly, so a regression names itself.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.settings import Settings
from services.merchants.schemas import LOCALE_PATTERN, normalize_locale
from services.passes import registrations
from services.passes.schemas import REQUIRED_BRANDING
from services.push import callbacks
from tests.factories import (
    EVENTS,
    WS,
    api_auth,
    create_card,
    create_merchant,
    pass_auth,
    registration_url,
)

ADMIN = "/admin/v1"
SCHEMES = {"MerchantKey", "AdminToken", "ApplePass", "AppleOrder"}
WO = "/wallet-orders/v1"


@pytest.fixture
async def spec(client: httpx.AsyncClient) -> dict[str, Any]:
    description: dict[str, Any] = (await client.get("/openapi.json")).json()
    return description


@pytest.fixture
def admin(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.ensure_admin_token()}"}


def _operations(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": operation
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
    }


def test_every_credential_is_a_security_scheme_named_by_its_operations(
    spec: dict[str, Any],
) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert set(schemes) == SCHEMES
    assert (schemes["ApplePass"]["in"], schemes["ApplePass"]["name"]) == ("header", "Authorization")
    expected = {"/v1/": "MerchantKey", "/admin/v1/": "AdminToken"}
    assert (schemes["AppleOrder"]["in"], schemes["AppleOrder"]["name"]) == (
        "header",
        "Authorization",
    )
    public = {
        f"POST {WS}/log",
        f"GET {WS}/devices/{{device}}/registrations/{{pass_type}}",
        f"POST {WO}/log",
        f"GET {WO}/devices/{{device}}/registrations/{{order_type}}",
    }
    # A platform's webhook carries no credential of ours: the platform signs the body (an HMAC
    # in its own header), which no OpenAPI security scheme can state.
    signed_by_platforms = {"POST /v1/connectors/{platform}/{merchant_slug}"}
    for name, operation in _operations(spec).items():
        path = name.split(" ", 1)[1]
        scheme = next((s for prefix, s in expected.items() if path.startswith(prefix)), None)
        if path.startswith(f"{WS}/") and name not in public:
            scheme = "ApplePass"
        if path.startswith(f"{WO}/") and name not in public:
            scheme = "AppleOrder"
        if name in signed_by_platforms:
            scheme = None
        security = operation.get("security")
        assert security == ([{scheme: []}] if scheme else None), name
        # The credential is the scheme's, not a header parameter of its own as well.
        headers = {
            p["name"].lower() for p in operation.get("parameters", []) if p["in"] == "header"
        }
        assert "authorization" not in headers, name


async def test_405_names_every_method_the_path_takes(client: httpx.AsyncClient) -> None:
    """Starlette named only the methods of the first route whose path matched."""
    answer = await client.delete(f"{ADMIN}/merchants")
    assert answer.status_code == 405
    assert set(answer.headers["allow"].split(", ")) == {"GET", "POST"}
    answer = await client.get(f"{WS}/devices/d/registrations/pass.x/s")
    assert set(answer.headers["allow"].split(", ")) == {"POST", "DELETE"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/merchants/shop/signing-secret", {"enabled": 0}),
        ("/merchants/shop/signing-secret", {"enabled": "false"}),
        ("/merchants/shop/api-keys", {"revoke_others": 1}),
        ("/merchants/shop/api-keys", {"revoke_others": "yes"}),
    ],
)
async def test_booleans_are_strict(
    client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    admin: dict[str, str],
    path: str,
    body: dict[str, Any],
) -> None:
    await create_merchant(session, settings)
    method = client.put if path.endswith("secret") else client.post
    answer = await method(f"{ADMIN}{path}", json=body, headers=admin)
    assert answer.status_code == 422, answer.text
    assert [e["path"] for e in answer.json()["errors"]] == [f"body.{next(iter(body))}"]


NOT_UTF8 = b'{"name": "\xff\xfe"}'


async def test_a_json_body_that_is_not_utf8_is_a_documented_400_everywhere(
    client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    admin: dict[str, str],
    spec: dict[str, Any],
) -> None:
    """FastAPI answered its own 400 ("There was an error parsing the body"), documented
    nowhere; now the JSON limits answer it, with the error shape, and every operation that
    takes a body documents it with the depth limit's 400 (and the size limit's 413)."""
    onboarded = await create_merchant(session, settings)
    card = await create_card(session, onboarded)
    json_headers = {"Content-Type": "application/json"}
    for method, url, auth in [
        ("POST", EVENTS, api_auth(onboarded)),
        ("PATCH", f"{ADMIN}/merchants/shop/branding", admin),
        ("POST", f"{ADMIN}/merchants/shop/api-keys", admin),
        ("POST", registration_url(card, "device-1"), pass_auth(card)),
        ("POST", f"{WS}/log", {}),
        ("POST", "/google/callbacks", {}),
    ]:
        answer = await client.request(
            method, url, content=NOT_UTF8, headers={**json_headers, **auth}
        )
        assert (answer.status_code, answer.json()["error"]) == (400, "bad_request"), url
    for name, operation in _operations(spec).items():
        if "requestBody" in operation:
            assert {"400", "413"} <= set(operation["responses"]), name


def _parameter_schema(spec: dict[str, Any], operation: str, name: str) -> dict[str, Any]:
    parameters = _operations(spec)[operation]["parameters"]
    schema: dict[str, Any] = next(p["schema"] for p in parameters if p["name"] == name)
    return schema


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("device", registrations.DEVICE_ID),
        ("pass_type", registrations.PASS_TYPE_ID),
        ("serial", registrations.SERIAL_NUMBER),
    ],
)
def test_path_patterns_devices_are_held_to_are_in_the_description(
    spec: dict[str, Any], name: str, pattern: re.Pattern[str]
) -> None:
    for operation, operation_spec in _operations(spec).items():
        if not operation.split(" ", 1)[1].startswith(f"{WS}/"):
            continue
        names = {p["name"] for p in operation_spec.get("parameters", [])}
        if name in names:
            schema = _parameter_schema(spec, operation, name)
            assert schema["pattern"] == f"^{pattern.pattern}$", operation
    described = re.compile(_parameter_schema(spec, f"POST {WS}{_REGISTRATION}", name)["pattern"])
    for sample in ["a", "pass.a", "pass.a.b", "A-1_2.3", "", "pass.", "a b", "x" * 129, "ä"]:
        assert bool(described.match(sample)) == bool(pattern.fullmatch(sample)), sample


_REGISTRATION = "/devices/{device}/registrations/{pass_type}/{serial}"


def test_locales_have_their_pattern_in_the_description(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    onboard = schemas["MerchantOnboard"]["properties"]["default_locale"]
    assert onboard["pattern"] == LOCALE_PATTERN.pattern
    card_locale = schemas["CardIssue"]["properties"]["locale"]["anyOf"][0]
    assert card_locale["pattern"] == LOCALE_PATTERN.pattern
    for accepted in ["en", "sk-SK", "de_AT", "EN"]:
        assert LOCALE_PATTERN.fullmatch(accepted)
        normalize_locale(accepted)
    for refused in ["e", "english1", "sk-", "sk--SK"]:
        assert not LOCALE_PATTERN.fullmatch(refused)


def test_the_device_bodies_are_described(spec: dict[str, Any]) -> None:
    operations = _operations(spec)

    def body(operation: str) -> dict[str, Any]:
        schema: dict[str, Any] = operations[operation]["requestBody"]["content"][
            "application/json"
        ]["schema"]
        return schema

    log = body(f"POST {WS}/log")
    assert log["required"] == ["logs"]
    assert log["properties"]["logs"] == {"type": "array", "items": {"type": "string"}}
    registration = body(f"POST {WS}{_REGISTRATION}")
    assert registration["required"] == ["pushToken"]
    assert registration["properties"]["pushToken"]["pattern"] == (
        f"^{registrations.PUSH_TOKEN.pattern}$"
    )


@pytest.mark.parametrize("logs", [[1, 2], [{"line": "x"}], "one line", None])
async def test_a_device_log_is_a_list_of_strings(client: httpx.AsyncClient, logs: Any) -> None:
    """As described: ``str()`` of anything else was logged and answered 200."""
    answer = await client.post(f"{WS}/log", json={"logs": logs})
    assert answer.status_code == 400


async def test_onboarding_with_missing_files_of_the_callers_is_422(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """Files the caller names are its input: a 503 (ops must fix the server) was wrong.
    (Named within the admin files directory, where they may be, but are not.)"""
    apple = {
        "pass_type_identifier": "pass.example.shop",
        "team_identifier": "ABCDE12345",
        "certificate_path": "missing/cert.pem",
        "key_path": "missing/key.pem",
        "wwdr_path": "missing/wwdr.pem",
    }
    answer = await client.post(
        f"{ADMIN}/merchants", json={"slug": "shop", "name": "Shop", "apple": apple}, headers=admin
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["details"]["setting"] == "apple.certificate_path"
    listed = await client.get(f"{ADMIN}/merchants", headers=admin)
    assert listed.json() == []  # nothing half made


def _unsigned_callback() -> dict[str, str]:
    return {"signedMessage": json.dumps({"classId": "3388000000012345678.shop"})}


async def test_callbacks_without_root_keys_are_503_retry_later_logged_once(
    client: httpx.AsyncClient,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Google retries a callback it could not deliver: 503 with Retry-After loses none while
    ops set PASSPOST_GOOGLE_ROOT_KEYS_FILE; the log says so once, not once a callback."""
    assert settings.google_root_keys_file is None
    monkeypatch.setattr(callbacks, "_reported", set())
    caplog.set_level(logging.INFO)
    for _ in range(3):
        answer = await client.post("/google/callbacks", json=_unsigned_callback())
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == str(callbacks.RETRY_AFTER_SECONDS)
        assert answer.json()["error"] == "not_configured"
    said = [r for r in caplog.records if "PASSPOST_GOOGLE_ROOT_KEYS_FILE" in r.getMessage()]
    assert len(said) == 1
    assert said[0].levelno == logging.ERROR


async def test_the_orders_api_documents_its_401(spec: dict[str, Any]) -> None:
    for name, operation in _operations(spec).items():
        if name.split(" ", 1)[1].startswith("/v1/orders"):
            assert "401" in operation["responses"], name


async def test_branding_fields_every_card_needs_are_described_never_null(
    client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    admin: dict[str, str],
    spec: dict[str, Any],
) -> None:
    """Left out they stay, null is a 422: the description said null was allowed."""
    branding = spec["components"]["schemas"]["Branding"]["properties"]
    for name in REQUIRED_BRANDING:
        assert branding[name]["type"] == "string", name
        assert "anyOf" not in branding[name], name
    assert {"type": "null"} in branding["logo_text"]["anyOf"]  # this one null clears
    await create_merchant(session, settings)
    answer = await client.patch(
        f"{ADMIN}/merchants/shop/branding", json={"organization_name": None}, headers=admin
    )
    assert answer.status_code == 422
    assert [e["path"] for e in answer.json()["errors"]] == ["body.organization_name"]

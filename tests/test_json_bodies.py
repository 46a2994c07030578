"""JSON bodies, however deeply nested, are a 400 with the error shape: never a 500."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.errors import BadRequest
from services.core.jsonbody import MAX_JSON_DEPTH, NestedTooDeep, nested_too_deep, parse_json_body
from services.core.settings import Settings
from tests.factories import EVENTS, WS, api_auth, create_card, create_merchant, pass_auth
from tests.factories import registration_url as registration

TOO_DEEP = {"error": "bad_request", "message": "the JSON body is nested deeper than 32 levels"}


def _nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


@pytest.mark.parametrize("depth", [0, 1, MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH])
def test_depth_up_to_the_limit_parses(depth: int) -> None:
    body = json.dumps({"a": json.loads(_nested(depth - 1))} if depth else "x")
    assert not nested_too_deep(body.encode())
    assert parse_json_body(body) == json.loads(body)


@pytest.mark.parametrize(
    "body",
    [
        _nested(MAX_JSON_DEPTH + 1),
        '{"a":' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1),
        "[" * 5000,
        "{" * 5000,
        '[{"a": ' * 3000,
    ],
)
def test_deeper_than_the_limit_is_refused_without_recursion(body: str) -> None:
    assert nested_too_deep(body.encode())
    with pytest.raises(NestedTooDeep, match="nested deeper than 32"):
        parse_json_body(body.encode())


def test_brackets_in_strings_and_escapes_are_text() -> None:
    text = '["' + "[{" * 5000 + '\\"[[[\\\\", "]]]", "\\u005b"]'
    assert json.loads(text)
    assert not nested_too_deep(text.encode())
    escaped_quote = '["\\"' + "[" * 100 + '"]'
    assert not nested_too_deep(escaped_quote.encode())
    assert nested_too_deep(('["\\\\"' + "[" * 100 + "]" * 101).encode())


def test_not_json_is_a_bad_request() -> None:
    for body in (b"{", b"\xff", b"", "[1,]"):
        with pytest.raises(BadRequest) as raised:
            parse_json_body(body)
        assert not isinstance(raised.value, NestedTooDeep)


def test_the_check_costs_little_on_a_full_body() -> None:
    event = {"id": "e", "order": {"id": "o", "items": [{"name": "Shoe", "qty": 1}] * 3}}
    body = json.dumps({"events": [event] * 3000}).encode()[: 256 * 1024]
    started = time.perf_counter()
    for _ in range(10):
        nested_too_deep(body)
    assert (time.perf_counter() - started) / 10 < 0.02  # well under a tenth of that, usually


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
async def test_too_deep_bodies_are_400_at_every_json_endpoint(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings, content_type: str | None
) -> None:
    onboarded = await create_merchant(session, settings)
    card = await create_card(session, onboarded)
    admin = {"Authorization": f"Bearer {settings.ensure_admin_token()}"}
    headers = {} if content_type is None else {"Content-Type": content_type}
    endpoints = [
        ("POST", f"{WS}/log", {}),
        ("POST", registration(card, "device-1"), pass_auth(card)),
        ("POST", "/google/callbacks", {}),
    ]
    if content_type != "text/plain":  # FastAPI reads these as JSON only when they say so
        endpoints += [
            ("POST", EVENTS, api_auth(onboarded)),
            ("POST", f"{EVENTS}:batch", api_auth(onboarded)),
            ("PATCH", "/admin/v1/merchants/shop/branding", admin),
            ("POST", "/admin/v1/merchants", admin),
        ]
    for method, url, auth in endpoints:
        for body in (b"[" * 5000, _nested(MAX_JSON_DEPTH + 1).encode()):
            answer = await client.request(method, url, content=body, headers={**headers, **auth})
            assert (answer.status_code, answer.json()) == (400, TOO_DEEP), (method, url)


async def test_a_device_log_nested_to_the_limit_is_read(client: httpx.AsyncClient) -> None:
    nested = json.loads(_nested(MAX_JSON_DEPTH - 1, '"line"'))  # 32 with the object
    answer = await client.post(f"{WS}/log", json={"logs": ["line"], "more": nested})
    assert answer.status_code == 200, answer.text
    answer = await client.post(f"{WS}/log", json={"logs": ["line"], "more": [nested]})
    assert (answer.status_code, answer.json()) == (400, TOO_DEEP)

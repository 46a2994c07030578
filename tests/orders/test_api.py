"""The orders API contract, status code by status code."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.settings import Settings
from services.merchants.service import revoke_api_keys, rotate_signing_secret
from services.onboarding import Onboarded
from services.passes.models import Card
from tests.factories import EVENTS, FULL, api_auth, batch, create_merchant, order_event
from tests.waiting import eventually, queue_drained


async def test_accepted_with_the_card_links(client: httpx.AsyncClient, shop: Onboarded) -> None:
    response = await client.post(EVENTS, json=order_event(**FULL), headers=api_auth(shop))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["duplicate"] is False
    assert body["order"]["status"] == "confirmed"
    assert body["order"]["shipping"]["carrier"] == "DPD"
    card = body["card"]
    assert card["apple_pass_url"].startswith("https://passpost.test/c/")
    assert card["landing_url"] == card["apple_pass_url"].removesuffix("/pass.pkpass")
    assert card["google_save_url"] is None

    # The first event of a new customer issues the card: the link works once passes applied it.
    async def pass_served() -> bool:
        return (await client.get(card["apple_pass_url"])).status_code == 200

    await eventually(pass_served)


async def test_replay_answers_the_same_and_changes_nothing(
    client: httpx.AsyncClient, shop: Onboarded
) -> None:
    event = order_event(**FULL)
    first = await client.post(EVENTS, json=event, headers=api_auth(shop))
    again = await client.post(EVENTS, json=event, headers=api_auth(shop))
    assert again.status_code == 202
    assert again.json() == {**first.json(), "duplicate": True}
    history = (await client.get("/v1/orders/A-1001", headers=api_auth(shop))).json()["history"]
    assert len(history) == 1


async def test_same_id_with_another_body_is_409(client: httpx.AsyncClient, shop: Onboarded) -> None:
    event = order_event()
    await client.post(EVENTS, json=event, headers=api_auth(shop))
    changed = {**event, "order": {**event["order"], "status": "shipped"}}
    response = await client.post(EVENTS, json=changed, headers=api_auth(shop))
    assert response.status_code == 409
    assert "different body" in response.json()["message"]


async def test_fields_left_out_are_kept(client: httpx.AsyncClient, shop: Onboarded) -> None:
    await client.post(EVENTS, json=order_event("confirmed", **FULL), headers=api_auth(shop))
    minimal = order_event("shipped", at="2026-11-23T12:00:00Z")
    minimal["order"] = {"id": "A-1001", "status": "shipped", "customer": {"id": "c-42"}}
    response = await client.post(EVENTS, json=minimal, headers=api_auth(shop))
    order = response.json()["order"]
    assert order["status"] == "shipped"
    assert order["number"] == "1001"
    assert order["customer"]["name"] == "Jana Nováková"
    assert order["shipping"]["tracking_number"] == "0123456789"


async def test_late_event_is_kept_in_history_but_never_moves_the_status(
    client: httpx.AsyncClient, shop: Onboarded
) -> None:
    await client.post(
        EVENTS, json=order_event("shipped", at="2026-11-23T12:00:00Z"), headers=api_auth(shop)
    )
    late = await client.post(
        EVENTS, json=order_event("confirmed", at="2026-11-23T11:00:00Z"), headers=api_auth(shop)
    )
    assert late.status_code == 202
    assert late.json()["order"]["status"] == "shipped"
    order = (await client.get("/v1/orders/A-1001", headers=api_auth(shop))).json()
    assert order["status"] == "shipped"
    assert [(h["status"], h["outcome"]) for h in order["history"]] == [
        ("confirmed", "stale"),
        ("shipped", "applied"),
    ]


async def test_leaving_a_final_status_is_409(client: httpx.AsyncClient, shop: Onboarded) -> None:
    await client.post(
        EVENTS, json=order_event("delivered", at="2026-11-23T12:00:00Z"), headers=api_auth(shop)
    )
    back = await client.post(
        EVENTS, json=order_event("shipped", at="2026-11-23T13:00:00Z"), headers=api_auth(shop)
    )
    assert back.status_code == 409
    assert back.json()["message"] == "order 'A-1001' is delivered: it cannot become shipped"
    returned = await client.post(
        EVENTS, json=order_event("returned", at="2026-11-24T09:00:00Z"), headers=api_auth(shop)
    )
    assert returned.status_code == 202
    assert returned.json()["order"]["status"] == "returned"


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda e: e.pop("id"), "body.id"),
        (lambda e: e.update(occurred_at="2026-11-23T10:15:00"), "body.occurred_at"),
        (lambda e: e.update(occurred_at="yesterday"), "body.occurred_at"),
        (lambda e: e["order"].update(status="teleported"), "body.order.status"),
        (lambda e: e["order"].pop("customer"), "body.order.customer"),
        (
            lambda e: e["order"].update(total={"amount": "x", "currency": "EUR"}),
            "body.order.total.amount",
        ),
        (
            lambda e: e["order"].update(total={"amount": "1.00", "currency": "euro"}),
            "body.order.total.currency",
        ),
        (
            lambda e: e["order"].update(shipping={"tracking_url": "not a url"}),
            "body.order.shipping.tracking_url",
        ),
        (
            lambda e: e["order"].update(items=[{"name": "x", "quantity": 0}]),
            "body.order.items.0.quantity",
        ),
        (
            lambda e: e["order"].update(items=[{"name": "x", "refill_after_days": 0}]),
            "body.order.items.0.refill_after_days",
        ),
        (
            lambda e: e["order"].update(items=[{"name": "x", "refill_after_days": "30"}]),
            "body.order.items.0.refill_after_days",
        ),
        (
            lambda e: e["order"].update(items=[{"name": "x", "product_id": "a b"}]),
            "body.order.items.0.product_id",
        ),
    ],
)
async def test_bad_input_is_422_with_the_field_path(
    client: httpx.AsyncClient, shop: Onboarded, mutate: Any, path: str
) -> None:
    event = order_event()
    mutate(event)
    response = await client.post(EVENTS, json=event, headers=api_auth(shop))
    assert response.status_code == 422
    assert path in [e["path"] for e in response.json()["errors"]]


async def test_malformed_json_is_422(client: httpx.AsyncClient, shop: Onboarded) -> None:
    response = await client.post(
        EVENTS, content=b"{nope", headers={**api_auth(shop), "Content-Type": "application/json"}
    )
    assert response.status_code == 422


async def test_body_over_256_kib_is_413(client: httpx.AsyncClient, shop: Onboarded) -> None:
    event = order_event(items=[{"name": "x" * 200}] * 1400)
    response = await client.post(EVENTS, json=event, headers=api_auth(shop))
    assert response.status_code == 413


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer pp_live_unknown"}, {"Authorization": "Basic x"}]
)
async def test_unknown_key_is_401(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.post(EVENTS, json=order_event(), headers=headers)
    assert response.status_code == 401


async def test_tenants_are_isolated(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings, shop: Onboarded
) -> None:
    other = await create_merchant(session, settings, slug="other", name="Other")
    await client.post(EVENTS, json=order_event(), headers=api_auth(shop))
    assert (await client.get("/v1/orders/A-1001", headers=api_auth(other))).status_code == 404
    assert (await client.get("/v1/orders/A-1001", headers=api_auth(shop))).status_code == 200
    # The same order id and event id at another merchant are another order.
    same = await client.post(
        EVENTS, json=order_event(event_id="evt_shared"), headers=api_auth(other)
    )
    mine = await client.post(
        EVENTS, json=order_event(event_id="evt_shared"), headers=api_auth(shop)
    )
    assert same.json()["duplicate"] is False
    assert mine.json()["duplicate"] is False
    assert same.json()["card"]["serial_number"] != mine.json()["card"]["serial_number"]


def _sign(secret: str, body: bytes, at: int | None = None) -> str:
    t = at if at is not None else int(time.time())
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


async def test_signed_requests(
    client: httpx.AsyncClient, session: AsyncSession, shop: Onboarded
) -> None:
    merchant = await session.merge(shop.merchant)
    secret = await rotate_signing_secret(session, merchant, enable=True)
    await session.commit()
    assert secret is not None
    body = json.dumps(order_event()).encode()
    headers = {**api_auth(shop), "Content-Type": "application/json"}

    unsigned = await client.post(EVENTS, content=body, headers=headers)
    assert unsigned.status_code == 401
    wrong = await client.post(
        EVENTS, content=body, headers={**headers, "Passpost-Signature": _sign("nope", body)}
    )
    assert wrong.status_code == 401
    old = await client.post(
        EVENTS,
        content=body,
        headers={**headers, "Passpost-Signature": _sign(secret, body, int(time.time()) - 301)},
    )
    assert old.status_code == 401
    assert "older than 5 minutes" in old.json()["message"]
    good = await client.post(
        EVENTS, content=body, headers={**headers, "Passpost-Signature": _sign(secret, body)}
    )
    assert good.status_code == 202


async def test_batch_answers_each_event(client: httpx.AsyncClient, shop: Onboarded) -> None:
    ok = order_event("confirmed", order_id="B-1")
    bad = order_event("confirmed", order_id="B-2")
    bad["order"]["status"] = "lost"
    delivered = order_event("delivered", order_id="B-3", at="2026-11-23T10:00:00Z")
    refused = order_event("shipped", order_id="B-3", at="2026-11-23T11:00:00Z")
    response = await client.post(
        f"{EVENTS}:batch", json=batch(ok, bad, delivered, refused, ok), headers=api_auth(shop)
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 422, 202, 409, 202]
    assert results[1]["body"]["errors"][0]["path"] == "order.status"
    assert results[4]["body"]["duplicate"] is True
    assert (await client.get("/v1/orders/B-3", headers=api_auth(shop))).json()[
        "status"
    ] == "delivered"


async def test_batch_is_limited_to_500(client: httpx.AsyncClient, shop: Onboarded) -> None:
    response = await client.post(
        f"{EVENTS}:batch", json=batch(*[{"id": "x"}] * 501), headers=api_auth(shop)
    )
    assert response.status_code == 422


async def test_batch_applies_events_of_one_order_in_their_order(
    client: httpx.AsyncClient, shop: Onboarded
) -> None:
    placed = order_event("confirmed", order_id="B-7", at="2026-11-23T10:00:00Z", **FULL)
    shipped = order_event("shipped", order_id="B-7", at="2026-11-23T11:00:00Z")
    late = order_event("processing", order_id="B-7", at="2026-11-23T10:30:00Z")
    response = await client.post(
        f"{EVENTS}:batch", json=batch(placed, shipped, late, placed), headers=api_auth(shop)
    )
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 202, 202, 202]
    assert [r["body"]["order"]["status"] for r in results] == [
        "confirmed",
        "shipped",
        "shipped",
        "confirmed",
    ]
    assert results[3]["body"] == {**results[0]["body"], "duplicate": True}
    assert results[1]["body"]["order"]["shipping"]["carrier"] == "DPD"
    order = (await client.get("/v1/orders/B-7", headers=api_auth(shop))).json()
    assert [(h["status"], h["outcome"]) for h in order["history"]] == [
        ("confirmed", "applied"),
        ("processing", "stale"),
        ("shipped", "applied"),
    ]
    # Replayed later, one by one, each answers as it did in the batch.
    again = await client.post(EVENTS, json=shipped, headers=api_auth(shop))
    assert again.json() == {**results[1]["body"], "duplicate": True}


async def test_batch_id_refused_then_reused_for_a_new_order(
    client: httpx.AsyncClient, shop: Onboarded
) -> None:
    await client.post(EVENTS, json=order_event("delivered", order_id="B-8"), headers=api_auth(shop))
    refused = order_event("shipped", order_id="B-8", at="2026-11-24T10:00:00Z", event_id="e-9")
    reused = order_event("confirmed", order_id="B-9", event_id="e-9")
    response = await client.post(
        f"{EVENTS}:batch", json=batch(refused, reused), headers=api_auth(shop)
    )
    assert [r["status"] for r in response.json()["results"]] == [409, 202]
    assert (await client.get("/v1/orders/B-9", headers=api_auth(shop))).status_code == 200


async def test_events_for_one_order_at_once_apply_one_after_the_other(
    client: httpx.AsyncClient, shop: Onboarded
) -> None:
    events = [
        order_event(status, order_id="C-1", at=f"2026-11-23T1{n}:00:00Z")
        for n, status in enumerate(["confirmed", "processing", "shipped", "delivered"])
    ]
    same_id = order_event("confirmed", order_id="C-2")
    answers = await asyncio.gather(
        *(client.post(EVENTS, json=e, headers=api_auth(shop)) for e in [*events, same_id, same_id])
    )
    assert [a.status_code for a in answers] == [202] * 6
    assert sorted(a.json()["duplicate"] for a in answers[4:]) == [False, True]
    order = (await client.get("/v1/orders/C-1", headers=api_auth(shop))).json()
    assert order["status"] == "delivered"
    assert len(order["history"]) == 4


async def test_a_revoked_key_stops_at_once_though_just_used(
    client: httpx.AsyncClient, session: AsyncSession, shop: Onboarded
) -> None:
    assert (
        await client.post(EVENTS, json=order_event(), headers=api_auth(shop))
    ).status_code == 202
    assert await revoke_api_keys(session, await session.merge(shop.merchant)) == 1
    await session.commit()
    response = await client.post(EVENTS, json=order_event(), headers=api_auth(shop))
    assert response.status_code == 401


async def test_a_new_signing_secret_is_required_at_once(
    client: httpx.AsyncClient, session: AsyncSession, shop: Onboarded
) -> None:
    assert (
        await client.post(EVENTS, json=order_event(), headers=api_auth(shop))
    ).status_code == 202
    await rotate_signing_secret(session, await session.merge(shop.merchant), enable=True)
    await session.commit()
    response = await client.post(EVENTS, json=order_event(), headers=api_auth(shop))
    assert response.status_code == 401


async def test_an_invalid_event_answers_alike_alone_and_in_a_batch(
    client: httpx.AsyncClient, shop: Onboarded
) -> None:
    event = order_event()
    event["order"]["status"] = "teleported"
    alone = await client.post(EVENTS, json=event, headers=api_auth(shop))
    batched = await client.post(f"{EVENTS}:batch", json=batch(event), headers=api_auth(shop))
    [item] = batched.json()["results"]
    message = alone.json()["errors"][0]["message"]
    assert (
        alone.content
        == json.dumps(
            {
                "error": "invalid_input",
                "message": "the request is invalid",
                "errors": [{"path": "body.order.status", "message": message}],
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
    )
    assert item == {
        "index": 0,
        "status": 422,
        "body": {
            "error": "invalid_input",
            "message": "the event is invalid",
            "errors": [{"path": "order.status", "message": message}],
        },
    }


@pytest.mark.parametrize(
    "occurred_at",
    [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "1999-12-31T23:59:59Z",
        "2999-01-01T00:00:00Z",
        1732357200,
        "1732357200",
        1732357200.5,
    ],
)
async def test_occurred_at_outside_a_sane_window_or_not_rfc_3339_is_422(
    client: httpx.AsyncClient, shop: Onboarded, occurred_at: Any
) -> None:
    event = order_event()
    event["occurred_at"] = occurred_at
    alone = await client.post(EVENTS, json=event, headers=api_auth(shop))
    assert alone.status_code == 422, alone.text
    assert [e["path"] for e in alone.json()["errors"]] == ["body.occurred_at"]

    # In a batch only that event is refused; the others are applied.
    ok = order_event(order_id="W-1")
    batched = await client.post(f"{EVENTS}:batch", json=batch(event, ok), headers=api_auth(shop))
    assert batched.status_code == 200, batched.text
    bad, good = batched.json()["results"]
    assert bad["status"] == 422
    assert [e["path"] for e in bad["body"]["errors"]] == ["occurred_at"]
    assert good["status"] == 202


async def test_occurred_at_within_the_window_is_accepted(
    client: httpx.AsyncClient, shop: Onboarded
) -> None:
    for at in ("2000-01-01T00:00:00Z", "2026-11-23T10:15:00+14:00", "2026-11-23 10:15:00-12:00"):
        response = await client.post(EVENTS, json=order_event(at=at), headers=api_auth(shop))
        assert response.status_code == 202, (at, response.text)


@pytest.mark.parametrize(
    "signature",
    [
        "t=1,v1=é".encode(),
        "t=1,v1=é".encode("latin-1"),
        b"\xff\xfe",
        b"t=" + b"9" * 400 + b",v1=00",
        "t=١٧٣٢٣٥٧٢٠٠,v1=00".encode(),
    ],
)
async def test_a_garbage_signature_is_401(
    client: httpx.AsyncClient, session: AsyncSession, shop: Onboarded, signature: bytes
) -> None:
    await rotate_signing_secret(session, await session.merge(shop.merchant), enable=True)
    await session.commit()
    body = json.dumps(order_event()).encode()
    now = str(int(time.time())).encode()
    for header in (signature, b"t=" + now + b",v1=" + "é".encode()):
        response = await client.post(
            EVENTS,
            content=body,
            headers={
                **api_auth(shop),
                "Content-Type": "application/json",
                "Passpost-Signature": header,
            },
        )
        assert response.status_code == 401, (header, response.text)


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda e: e["order"]["customer"].update(name="Jana\u0000"), "order.customer.name"),
        (lambda e: e["order"]["customer"].update(name="Ja\x1bna"), "order.customer.name"),
        (lambda e: e["order"]["customer"].update(name="Jana\nNová"), "order.customer.name"),
        (lambda e: e["order"]["customer"].update(name="Jana\ud800"), "order.customer.name"),
        (lambda e: e["order"]["customer"].update(id="c\u00001"), "order.customer.id"),
        (lambda e: e["order"].update(number="1001\u0000"), "order.number"),
        (lambda e: e["order"].update(shipping={"carrier": "D\u0000PD"}), "order.shipping.carrier"),
        (
            lambda e: e["order"].update(shipping={"tracking_number": "\u00000123"}),
            "order.shipping.tracking_number",
        ),
        (lambda e: e["order"].update(items=[{"name": "Tea\u0000"}]), "order.items.0.name"),
        (lambda e: e.update(id="evt\u0000"), "id"),
        (lambda e: e["order"].update(id="A-\u00001"), "order.id"),
    ],
)
async def test_control_characters_in_text_are_422_with_the_field_path(
    client: httpx.AsyncClient, shop: Onboarded, mutate: Any, path: str
) -> None:
    event = order_event()
    mutate(event)
    # json.dumps escapes what httpx's encoder would refuse (a lone surrogate), as a shop's would.
    body = json.dumps(event).encode()
    headers = {**api_auth(shop), "Content-Type": "application/json"}
    alone = await client.post(EVENTS, content=body, headers=headers)
    assert alone.status_code == 422, alone.text
    assert f"body.{path}" in [e["path"] for e in alone.json()["errors"]]

    ok = order_event(order_id="N-1")
    batched = await client.post(
        f"{EVENTS}:batch", content=json.dumps(batch(event, ok)).encode(), headers=headers
    )
    assert batched.status_code == 200, batched.text
    bad, good = batched.json()["results"]
    assert bad["status"] == 422
    assert path in [e["path"] for e in bad["body"]["errors"]]
    assert good["status"] == 202


async def test_plain_unicode_text_is_kept(client: httpx.AsyncClient, shop: Onboarded) -> None:
    event = order_event(number="№ 1001", items=[{"name": "Čajník 🫖"}])
    event["order"]["customer"]["name"] = "Jana Nováková\t"
    response = await client.post(EVENTS, json=event, headers=api_auth(shop))
    assert response.status_code == 422, "a tab is a control character too"
    event["order"]["customer"]["name"] = "Jana Nováková"
    response = await client.post(EVENTS, json=event, headers=api_auth(shop))
    assert response.status_code == 202, response.text
    assert response.json()["order"]["customer"]["name"] == "Jana Nováková"


@pytest.mark.parametrize("order_id", ["A%001", "A%0A", "%7F", "A%C3%A9", "A%ED%A0%80"])
async def test_an_order_id_that_cannot_be_one_is_422(
    client: httpx.AsyncClient, shop: Onboarded, order_id: str
) -> None:
    response = await client.get(f"/v1/orders/{order_id}", headers=api_auth(shop))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["path"] == "path.order_id"


async def test_items_carry_their_product_and_refill_to_the_card(
    client: httpx.AsyncClient, shop: Onboarded, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    items = [
        {"name": "Green tea", "product_id": "tea-green", "refill_after_days": 30},
        {"name": "Tea kettle", "quantity": 1},
    ]
    response = await client.post(EVENTS, json=order_event(items=items), headers=api_auth(shop))
    assert response.status_code == 202, response.text
    assert response.json()["order"]["items"] == items
    await eventually(lambda: queue_drained(sessionmaker))
    async with sessionmaker() as session:
        card = await session.scalar(select(Card).where(Card.customer_id == "c-42"))
    assert card is not None
    assert card.content["orders"]["A-1001"]["items"] == [
        {"name": "Green tea", "quantity": 1, "product_id": "tea-green", "refill_after_days": 30},
        {"name": "Tea kettle", "quantity": 1},
    ]

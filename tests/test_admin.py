"""The admin API: the admin token, and secrets shown only when made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.settings import Settings
from services.merchants.models import Merchant
from services.passes.models import PassDesign
from tests.factories import create_merchant

ADMIN = "/admin/v1"


@pytest.fixture
def admin(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.ensure_admin_token()}"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "x"}])
async def test_admin_token_is_required(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    assert (await client.get(f"{ADMIN}/merchants", headers=headers)).status_code == 401


async def test_onboard_a_merchant_and_issue_a_card(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    created = await client.post(
        f"{ADMIN}/merchants",
        json={
            "slug": "shop",
            "name": "Shop",
            "default_locale": "de",
            "branding": {"support_phone": "+49 30 1234567"},
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["api_key"].startswith("pp_live_")
    assert body["pass_type_identifier"] == "pass.dev.passpost.shop"
    assert (
        await client.post(
            f"{ADMIN}/merchants", json={"slug": "shop", "name": "Shop"}, headers=admin
        )
    ).status_code == 409
    listed = (await client.get(f"{ADMIN}/merchants", headers=admin)).json()
    assert [m["slug"] for m in listed] == ["shop"]
    assert "api_key" not in json.dumps(listed)

    # The key works against the orders API.
    orders = await client.get(
        "/v1/orders/none", headers={"Authorization": f"Bearer {body['api_key']}"}
    )
    assert orders.status_code == 404

    card = await client.post(
        f"{ADMIN}/merchants/shop/cards", json={"customer_id": "c-1"}, headers=admin
    )
    assert card.status_code == 200
    assert (await client.get(card.json()["apple_pass_url"])).status_code == 200

    rotated = await client.post(
        f"{ADMIN}/merchants/shop/api-keys", json={"revoke_others": True}, headers=admin
    )
    assert rotated.json()["revoked"] == 1
    old = await client.get(
        "/v1/orders/none", headers={"Authorization": f"Bearer {body['api_key']}"}
    )
    assert old.status_code == 401


async def test_google_settings_are_never_returned(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    tmp_path: Path,
    service_account_info: dict[str, str],
) -> None:
    await client.post(f"{ADMIN}/merchants", json={"slug": "shop", "name": "Shop"}, headers=admin)
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(service_account_info))
    answer = await client.put(
        f"{ADMIN}/merchants/shop/google",
        json={
            "issuer_id": "3388000000012345678",
            "service_account_file": str(key_file),
            "origins": ["https://shop.example.com"],
        },
        headers=admin,
    )
    assert answer.status_code == 200, answer.text
    assert str(key_file) not in answer.text
    assert service_account_info["private_key"][40:80] not in answer.text
    bad = await client.put(
        f"{ADMIN}/merchants/shop/google",
        json={"issuer_id": "3388000000012345678", "service_account_file": str(tmp_path / "no")},
        headers=admin,
    )
    assert bad.status_code == 422
    assert bad.json()["details"]["setting"] == "google.service_account_file"


async def test_signing_secret_shown_once(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await client.post(f"{ADMIN}/merchants", json={"slug": "shop", "name": "Shop"}, headers=admin)
    made = await client.put(
        f"{ADMIN}/merchants/shop/signing-secret", json={"enabled": True}, headers=admin
    )
    assert made.json()["signing_secret"].startswith("whsec_")
    shown = (await client.get(f"{ADMIN}/merchants/shop", headers=admin)).text
    assert "whsec_" not in shown


async def test_unusable_apple_files_named_by_the_caller_are_its_input(
    client: httpx.AsyncClient, admin: dict[str, str], tmp_path: Path
) -> None:
    await client.post(f"{ADMIN}/merchants", json={"slug": "shop", "name": "Shop"}, headers=admin)
    missing = str(tmp_path / "missing.pem")
    answer = await client.put(
        f"{ADMIN}/merchants/shop/apple",
        json={
            "pass_type_identifier": "pass.com.example.shop",
            "team_identifier": "ABCDE12345",
            "certificate_path": missing,
            "key_path": missing,
            "wwdr_path": missing,
        },
        headers=admin,
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["details"]["path"] == missing
    # Nothing was stored: the merchant's passes are still signed with its working material.
    card = await client.post(
        f"{ADMIN}/merchants/shop/cards", json={"customer_id": "c-1"}, headers=admin
    )
    assert (await client.get(card.json()["apple_pass_url"])).status_code == 200


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"slug": "shop", "name": "Sh\u0000op"}, "body.name"),
        ({"slug": "shop", "name": "Shop\n"}, "body.name"),
        ({"slug": "sh\u0000op", "name": "Shop"}, "body.slug"),
    ],
)
async def test_control_characters_in_a_merchant_are_422(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, str], path: str
) -> None:
    response = await client.post(f"{ADMIN}/merchants", json=body, headers=admin)
    assert response.status_code == 422, response.text
    assert path in [e["path"] for e in response.json()["errors"]]


@pytest.mark.parametrize("slug", ["sh%00op", "Shop", "sh%C3%B6p"])
async def test_a_slug_that_cannot_be_one_is_422(
    client: httpx.AsyncClient, admin: dict[str, str], slug: str
) -> None:
    for method, url in [
        ("GET", f"{ADMIN}/merchants/{slug}"),
        ("POST", f"{ADMIN}/merchants/{slug}/api-keys"),
        ("PUT", f"{ADMIN}/merchants/{slug}/signing-secret"),
    ]:
        response = await client.request(method, url, json={}, headers=admin)
        assert response.status_code == 422, (url, response.text)
        assert response.json()["errors"][0]["path"] == "path.slug"


async def _design_of(sessionmaker: async_sessionmaker[AsyncSession], slug: str) -> dict[str, Any]:
    """The merchant's design row as stored."""
    async with sessionmaker() as session:
        design = await session.scalar(
            select(PassDesign)
            .join(Merchant, Merchant.id == PassDesign.merchant_id)
            .where(Merchant.slug == slug)
        )
        assert design is not None
        return {c.key: getattr(design, c.key) for c in PassDesign.__table__.columns}


@pytest.mark.parametrize(
    "field",
    ["organization_name", "description", "foreground_color", "background_color", "label_color"],
)
async def test_a_null_for_a_required_branding_field_is_refused_with_its_path(
    client: httpx.AsyncClient, admin: dict[str, str], field: str
) -> None:
    await client.post(f"{ADMIN}/merchants", json={"slug": "shop", "name": "Shop"}, headers=admin)
    answer = await client.patch(
        f"{ADMIN}/merchants/shop/branding", json={field: None}, headers=admin
    )
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "invalid_input"
    assert [e["path"] for e in body["errors"]] == [f"body.{field}"]
    # Nor at onboarding, where the same branding is applied.
    onboard = await client.post(
        f"{ADMIN}/merchants",
        json={"slug": "other", "name": "Other", "branding": {field: None}},
        headers=admin,
    )
    assert onboard.status_code == 422, onboard.text
    assert [e["path"] for e in onboard.json()["errors"]] == [f"body.branding.{field}"]


async def test_a_null_for_an_optional_branding_field_clears_it(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await client.post(f"{ADMIN}/merchants", json={"slug": "shop", "name": "Shop"}, headers=admin)
    optional = {
        "logo_text": "Shop",
        "support_phone": "+421 2 1234 5678",
        "order_url_template": "https://shop.example.com/o/{order_id}",
        "tracking_url_template": "https://track.example.com/{tracking_number}",
        "returns_url_template": "https://shop.example.com/r/{order_number}",
        "account_url_template": "https://shop.example.com/account",
    }
    set_ = await client.patch(f"{ADMIN}/merchants/shop/branding", json=optional, headers=admin)
    assert set_.status_code == 204, set_.text
    stored = await _design_of(sessionmaker, "shop")
    assert {k: stored[k] for k in optional} == optional
    cleared = await client.patch(
        f"{ADMIN}/merchants/shop/branding",
        json=dict.fromkeys(optional),
        headers=admin,
    )
    assert cleared.status_code == 204, cleared.text
    stored = await _design_of(sessionmaker, "shop")
    assert {k: stored[k] for k in optional} == dict.fromkeys(optional)
    assert stored["organization_name"] == "Shop"


@pytest.mark.parametrize(
    "template",
    [
        "https://shop.example.com/o/{order_id:d}",
        "https://shop.example.com/o/{order_id!r}",
        "https://shop.example.com/o/{order_id:>100000}",
        "https://shop.example.com/o/{order_id.__class__}",
        "https://shop.example.com/o/{order_id[0]}",
        "https://shop.example.com/o/{}",
        "https://shop.example.com/o/{order_id",
        "https://shop.example.com/o/}",
    ],
)
async def test_link_templates_take_only_the_plain_placeholders(
    client: httpx.AsyncClient, admin: dict[str, str], template: str
) -> None:
    await client.post(f"{ADMIN}/merchants", json={"slug": "shop", "name": "Shop"}, headers=admin)
    answer = await client.patch(
        f"{ADMIN}/merchants/shop/branding", json={"order_url_template": template}, headers=admin
    )
    assert answer.status_code == 422, answer.text
    assert [e["path"] for e in answer.json()["errors"]] == ["body.order_url_template"]
    fine = await client.patch(
        f"{ADMIN}/merchants/shop/branding",
        json={
            "order_url_template": "https://shop.example.com/o/{order_id}?n={order_number}&x={{y}}"
        },
        headers=admin,
    )
    assert fine.status_code == 204, fine.text


@pytest.mark.parametrize(
    ("url", "body", "path"),
    [
        ("merchants/shop/branding", {"organization_name": "Sh\u0000op"}, "body.organization_name"),
        ("merchants/shop/branding", {"description": "a\nb"}, "body.description"),
        ("merchants/shop/branding", {"logo_text": "\u0007"}, "body.logo_text"),
        ("merchants/shop/cards", {"customer_id": "c\u00001"}, "body.customer_id"),
        (
            "merchants/shop/cards",
            {"customer_id": "c-1", "customer_name": "J\u0000"},
            "body.customer_name",
        ),
    ],
)
async def test_control_characters_on_a_card_or_its_design_are_422(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    url: str,
    body: dict[str, str],
    path: str,
) -> None:
    await client.post(f"{ADMIN}/merchants", json={"slug": "shop", "name": "Shop"}, headers=admin)
    method = "PATCH" if url.endswith("branding") else "POST"
    response = await client.request(method, f"{ADMIN}/{url}", json=body, headers=admin)
    assert response.status_code == 422, response.text
    assert [e["path"] for e in response.json()["errors"]] == [path]


async def test_marketing_settings_are_read_and_patched(
    client: httpx.AsyncClient, admin: dict[str, str], session: AsyncSession, settings: Settings
) -> None:
    await create_merchant(session, settings)
    url = f"{ADMIN}/merchants/shop/marketing"
    assert (await client.get(url)).status_code == 401
    assert (await client.get(url, headers=admin)).json() == {
        "daily_cap": 1,
        "weekly_cap": 3,
        "quiet_start": "21:00:00",
        "quiet_end": "08:00:00",
        "time_zone": "UTC",
    }

    patched = await client.patch(
        url, json={"daily_cap": 2, "weekly_cap": 5, "time_zone": "Europe/Bratislava"}, headers=admin
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["daily_cap"] == 2
    reset = await client.patch(url, json={"daily_cap": None, "quiet_end": "07:00"}, headers=admin)
    assert reset.json() == {
        "daily_cap": 1,
        "weekly_cap": 5,
        "quiet_start": "21:00:00",
        "quiet_end": "07:00:00",
        "time_zone": "Europe/Bratislava",
    }
    assert (await client.get(url, headers=admin)).json() == reset.json()
    assert (
        await client.get(f"{ADMIN}/merchants/nobody/marketing", headers=admin)
    ).status_code == 404
    missing = await client.patch(f"{ADMIN}/merchants/nobody/marketing", json={}, headers=admin)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"time_zone": "Mars/Olympus"}, "body.time_zone"),
        ({"daily_cap": 11}, "body.daily_cap"),
        ({"weekly_cap": 0}, "body.weekly_cap"),  # below the daily cap it joins
        ({"quiet_start": "21:00:30"}, "body.quiet_start"),
        ({"quiet_start": "late"}, "body.quiet_start"),
        ({"colour": "red"}, "body.colour"),
    ],
)
async def test_bad_marketing_settings_are_a_422_naming_the_field(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    session: AsyncSession,
    settings: Settings,
    body: dict[str, Any],
    path: str,
) -> None:
    await create_merchant(session, settings)
    url = f"{ADMIN}/merchants/shop/marketing"
    answer = await client.patch(url, json=body, headers=admin)
    assert answer.status_code == 422, answer.text
    assert [error["path"] for error in answer.json()["errors"]] == [path]
    assert (await client.get(url, headers=admin)).json()["weekly_cap"] == 3, "nothing changed"

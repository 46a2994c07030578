"""Connecting a shop: ``passpost connectors configure/map`` and the admin API. Secrets and
tokens are taken, used, and never shown or logged again."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from services.core.settings import Settings
from services.onboarding import Onboarded
from tests.orders.connectors.platforms import SHOPIFY_SECRET, post_shopify, shopify_order

SECRET = "shpss_configured-by-the-cli-0123456789"
NEWER = "shpss_rotated-by-the-cli-9876543210"
TOKEN = "123456-p-shoptet-private-token-abcdef"


@pytest.fixture
def admin(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.ensure_admin_token()}"}


def test_configure_rotate_and_map_from_the_command_line(cli: Any) -> None:
    assert cli("merchants", "create", "--slug", "shop", "--name", "Shop").exit_code == 0
    made = cli("connectors", "configure", "--merchant", "shop", "--platform", "shopify",
               "--secret", SECRET)  # fmt: skip
    assert made.exit_code == 0, made.output
    shown = json.loads(made.stdout)
    assert shown["webhook_url"] == "https://cards.example.com/v1/connectors/shopify/shop"
    assert shown["previous_secret_accepted"] is False
    rotated = cli("connectors", "configure", "--merchant", "shop", "--platform", "shopify",
                  "--secret", SECRET, "--secret", NEWER)  # fmt: skip
    assert json.loads(rotated.stdout)["previous_secret_accepted"] is True
    revoked = cli("connectors", "configure", "--merchant", "shop", "--platform", "shopify",
                  "--revoke-old")  # fmt: skip
    assert json.loads(revoked.stdout)["previous_secret_accepted"] is False
    mapped = cli("connectors", "map", "--merchant", "shop", "--platform", "shopify",
                 "--from", "paid", "--to", "processing")  # fmt: skip
    assert json.loads(mapped.stdout)["mapping"] == {"paid": "processing"}
    for result in (made, rotated, revoked, mapped):
        assert SECRET not in result.output
        assert NEWER not in result.output

    no_token = cli("connectors", "configure", "--merchant", "shop", "--platform", "shoptet",
                   "--secret", SECRET)  # fmt: skip
    assert no_token.exit_code == 2
    assert "API access token" in no_token.stderr
    shoptet = cli("connectors", "configure", "--merchant", "shop", "--platform", "shoptet",
                  "--secret", SECRET, "--api-token", TOKEN)  # fmt: skip
    assert json.loads(shoptet.stdout)["api_token_set"] is True
    assert TOKEN not in shoptet.output
    wrong = cli("connectors", "map", "--merchant", "shop", "--platform", "shopify",
                "--from", "paid", "--to", "teleported")  # fmt: skip
    assert wrong.exit_code == 2
    unknown = cli("connectors", "map", "--merchant", "shop", "--platform", "woocommerce",
                  "--from", "completed", "--to", "delivered")  # fmt: skip
    assert unknown.exit_code == 2
    assert "no woocommerce connector" in unknown.stderr


async def test_the_admin_api_configures_and_never_shows_a_secret(
    client: httpx.AsyncClient,
    shop: Onboarded,
    admin: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    url = "/admin/v1/merchants/shop/connectors"
    none_yet = await client.put(f"{url}/shopify", json={"revoke_old": True}, headers=admin)
    assert none_yet.status_code == 404
    made = await client.put(f"{url}/shopify", json={"secrets": [SHOPIFY_SECRET]}, headers=admin)
    assert made.status_code == 200, made.text
    assert (await post_shopify(client, "orders/create", shopify_order())).status_code == 200
    rotated = await client.put(f"{url}/shopify", json={"secrets": [NEWER]}, headers=admin)
    assert rotated.json()["previous_secret_accepted"] is True
    old_still_taken = await post_shopify(client, "orders/paid", shopify_order("paid"))
    assert old_still_taken.status_code == 200
    assert (
        await post_shopify(client, "orders/paid", shopify_order("paid"), secret=NEWER)
    ).is_success
    mapped = await client.put(
        f"{url}/shopify/mapping", json={"from": "paid", "to": "shipped"}, headers=admin
    )
    assert mapped.json()["mapping"] == {"paid": "shipped"}
    shoptet = await client.put(f"{url}/shoptet", json={"secrets": [SECRET]}, headers=admin)
    assert shoptet.status_code == 422
    listed = await client.get(url, headers=admin)
    assert [c["platform"] for c in listed.json()] == ["shopify"]
    everything = made.text + rotated.text + mapped.text + listed.text + caplog.text
    for secret in (SHOPIFY_SECRET, NEWER):
        assert secret not in everything
    unauthorized = await client.get(url)
    assert unauthorized.status_code == 401

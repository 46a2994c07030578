"""``passpost designs apple-orders``: Order Type ID material checked like pass certificates,
the switch, and ``passpost init``'s demo merchant with Wallet Orders on."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import select

from services.core.db import create_engine
from services.core.settings import Settings
from services.merchants.models import Merchant
from services.passes.apple.devchain import ensure_order_type_certificate


def _switch(settings: Settings, slug: str) -> tuple[bool, str | None]:
    """The merchant's Wallet Orders switch and Order Type ID, as stored."""

    async def read() -> tuple[bool, str | None]:
        engine = create_engine(settings)
        try:
            async with engine.connect() as connection:
                row = (
                    await connection.execute(
                        select(
                            Merchant.wallet_orders_enabled, Merchant.order_type_identifier
                        ).where(Merchant.slug == slug)
                    )
                ).one()
                return bool(row[0]), row[1]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_init_gives_the_demo_merchant_wallet_orders(cli: Any, settings: Settings) -> None:
    assert cli("init").exit_code == 0
    assert _switch(settings, "demo") == (True, "order.dev.passpost.demo")


def test_apple_orders_material_is_checked_then_switched(cli: Any, settings: Settings) -> None:
    assert cli("merchants", "create", "--slug", "shop", "--name", "Shop").exit_code == 0
    order_type = "order.dev.passpost.shop"
    alone = cli("designs", "apple-orders", "--merchant", "shop", "--enable")
    assert alone.exit_code != 0
    assert "Order Type ID" in alone.output
    pass_certificate = settings.keys_dir / "pass.dev.passpost.shop.pem"
    pass_key = settings.keys_dir / "pass.dev.passpost.shop.key"
    material = ["--order-type-id", order_type, "--certificate", str(pass_certificate)]
    wrong = cli("designs", "apple-orders", "--merchant", "shop", *material, "--key", str(pass_key))
    assert wrong.exit_code != 0
    assert "apple_orders.certificate_path" in wrong.output
    assert "pass.dev.passpost.shop" in wrong.output
    files = ensure_order_type_certificate(settings.keys_dir, order_type, "PASSPOST42", "Shop")
    right = [
        "--order-type-id", order_type, "--certificate", str(files.certificate),
        "--key", str(files.key),
    ]  # fmt: skip
    mismatched = cli(
        "designs", "apple-orders", "--merchant", "shop", *right[:4], "--key", str(pass_key)
    )
    assert mismatched.exit_code != 0
    assert "does not match the certificate" in mismatched.output
    enabled = cli("designs", "apple-orders", "--merchant", "shop", *right, "--enable")
    assert enabled.exit_code == 0, enabled.output
    assert json.loads(enabled.stdout) == {
        "merchant": "shop",
        "order_type_identifier": order_type,
        "wallet_orders": True,
    }
    assert _switch(settings, "shop") == (True, order_type)
    disabled = cli("designs", "apple-orders", "--merchant", "shop", "--disable")
    assert disabled.exit_code == 0, disabled.output
    assert json.loads(disabled.stdout)["wallet_orders"] is False
    assert _switch(settings, "shop") == (False, order_type)


def test_check_names_a_broken_order_type_certificate(cli: Any, settings: Settings) -> None:
    assert cli("init").exit_code == 0
    assert cli("check").exit_code == 0
    (settings.keys_dir / "order.dev.passpost.demo.pem").write_text("garbage")
    broken = cli("check")
    assert broken.exit_code == 2
    assert "apple_orders.certificate_path" in broken.output

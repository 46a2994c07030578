"""The ``passpost`` command as ops use it: JSON on stdout, clean errors, no stack traces."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.core.settings import Settings, get_settings


@pytest.fixture
def cli(settings: Settings) -> Iterator[Any]:
    runner = CliRunner()
    env = {
        "PASSPOST_ENVIRONMENT": "test",
        "PASSPOST_DATA_DIR": str(settings.data_dir),
        "PASSPOST_DATABASE_URL": settings.resolved_database_url,
        "PASSPOST_PUBLIC_BASE_URL": "https://cards.example.com",
    }

    def invoke(*args: str) -> Any:
        get_settings.cache_clear()
        return runner.invoke(app, list(args), env=env)

    yield invoke
    get_settings.cache_clear()


def test_init_is_idempotent_and_prints_what_a_newcomer_needs(cli: Any, settings: Settings) -> None:
    first = cli("init")
    assert first.exit_code == 0, first.output
    result = json.loads(first.stdout)
    assert result["merchant"]["slug"] == "demo"
    assert result["api_key"].startswith("pp_live_")
    assert len(result["admin_token"]) >= 32
    assert (settings.data_dir / "admin_token").stat().st_mode & 0o077 == 0

    again = cli("init")
    assert again.exit_code == 0, again.output
    second = json.loads(again.stdout)
    assert second["api_key"] == result["api_key"]
    assert second["admin_token"] == result["admin_token"]
    assert second["merchant"]["id"] == result["merchant"]["id"]


def test_merchant_then_card(cli: Any) -> None:
    created = cli("merchants", "create", "--slug", "shop", "--name", "Shop", "--locale", "de")
    assert created.exit_code == 0, created.output
    merchant = json.loads(created.stdout)
    assert merchant["merchant"]["default_locale"] == "de"
    assert merchant["api_key"].startswith("pp_live_")

    issued = cli("cards", "issue", "--merchant", "shop", "--customer", "c-42", "--name", "Jana")
    assert issued.exit_code == 0, issued.output
    card = json.loads(issued.stdout)
    assert card["apple_pass_url"].startswith("https://cards.example.com/c/")
    assert card["apple_pass_url"].endswith("/pass.pkpass")
    assert len(card["serial_number"]) >= 16

    same = json.loads(cli("cards", "issue", "--merchant", "shop", "--customer", "c-42").stdout)
    assert same["serial_number"] == card["serial_number"]


def test_duplicate_slug_and_bad_input_are_clean_errors(cli: Any) -> None:
    assert cli("merchants", "create", "--slug", "shop", "--name", "Shop").exit_code == 0
    duplicate = cli("merchants", "create", "--slug", "shop", "--name", "Shop")
    assert duplicate.exit_code == 2
    assert "exists already" in duplicate.stderr
    bad = cli("merchants", "create", "--slug", "Not A Slug!", "--name", "Shop")
    assert bad.exit_code == 2
    assert "slug" in bad.stderr
    assert "Traceback" not in bad.output
    unknown = cli("cards", "issue", "--merchant", "nobody", "--customer", "c-1")
    assert unknown.exit_code == 2
    assert "no merchant with slug 'nobody'" in unknown.stderr


def test_broken_certificate_is_named_at_startup(cli: Any, settings: Settings) -> None:
    assert cli("merchants", "create", "--slug", "shop", "--name", "Shop").exit_code == 0
    certificate = settings.keys_dir / "pass.dev.passpost.shop.pem"
    certificate.write_text("garbage")
    for command in (["check"], ["init"]):
        result = cli(*command)
        assert result.exit_code == 2, command
        assert "apple.certificate_path" in result.stderr
        assert str(certificate) in result.stderr
        assert "Traceback" not in result.output


def test_non_png_image_is_refused(cli: Any, settings: Settings) -> None:
    assert cli("merchants", "create", "--slug", "shop", "--name", "Shop").exit_code == 0
    not_png = settings.data_dir / "logo.jpg"
    not_png.write_bytes(b"\xff\xd8\xff\xe0 a jpeg")
    result = cli("designs", "image", "--merchant", "shop", "--name", "logo.png", str(not_png))
    assert result.exit_code == 2
    assert "logo.png: not a PNG image" in result.stderr


def test_branding_is_validated(cli: Any) -> None:
    assert cli("merchants", "create", "--slug", "shop", "--name", "Shop").exit_code == 0
    ok = cli(
        "designs",
        "branding",
        "--merchant",
        "shop",
        "--background-color",
        "#112233",
        "--order-url",
        "https://shop.example.com/o/{order_number}",
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["updated"] == ["background_color", "order_url_template"]
    bad = cli(
        "designs",
        "branding",
        "--merchant",
        "shop",
        "--order-url",
        "https://shop.example.com/o/{password}",
    )
    assert bad.exit_code == 2
    assert "unknown placeholder 'password'" in bad.stderr

"""The ``passpost`` command as ops use it: JSON on stdout, clean errors, no stack traces."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.cli import SERVED_SERVICE_ENV, ServiceName, components_of, web_app
from services.core.settings import Settings, get_settings
from services.core.web import create_app


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


def test_serve_starts_beside_a_broken_merchant_and_names_it(cli: Any, settings: Settings) -> None:
    assert cli("init").exit_code == 0
    assert cli("merchants", "create", "--slug", "shop", "--name", "Shop").exit_code == 0
    (settings.keys_dir / "pass.dev.passpost.shop.pem").write_text("garbage")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "services", "serve", "all"],
        env=_serve_env(settings, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(lambda: _healthy(port))
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert ready.status_code == 200
    assert ready.json()["signing"]["broken_merchants"] == [
        {"merchant": "shop", "setting": "apple.certificate_path"}
    ]
    assert "warning: merchant 'shop': apple.certificate_path" in stderr.decode()
    assert cli("check").exit_code == 2


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


def test_serve_refuses_several_workers_with_the_apns_standin(cli: Any) -> None:
    result = cli("serve", "--workers", "2", "--apns-standin")
    assert result.exit_code == 2
    assert "one worker" in result.output


def _children(pid: int) -> list[int]:
    """The server workers ``pid`` started (not multiprocessing's resource tracker)."""
    children = [int(child) for task in Path(f"/proc/{pid}/task").iterdir() for child in _read(task)]
    return [c for c in children if b"spawn_main" in _command_line(c)]


def _read(task: Path) -> list[str]:
    """A thread's children; none once the thread has ended (its directory goes with it)."""
    try:
        return (task / "children").read_text().split()
    except FileNotFoundError:
        return []


def _command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:  # reaped meanwhile
        return b""


def test_serve_with_workers_runs_them_restarts_a_dead_one_and_stops_on_sigterm(
    cli: Any, settings: Settings
) -> None:
    assert cli("init").exit_code == 0
    port = _free_port()
    with _serving_with_two_workers(settings, port) as server:
        first, second = _children(server.pid)
        os.kill(first, signal.SIGKILL)
        _wait_for(lambda: first not in _children(server.pid) and len(_children(server.pid)) == 2)
        assert second in _children(server.pid)
        _wait_for(lambda: _healthy(port))
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert not _healthy(port)


def test_workers_of_a_killed_supervisor_stop_themselves(cli: Any, settings: Settings) -> None:
    assert cli("init").exit_code == 0
    port = _free_port()
    with _serving_with_two_workers(settings, port) as server:
        workers = _children(server.pid)
        server.kill()
        server.wait()
        _wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers))
        assert not _healthy(port)


def test_a_worker_started_after_its_supervisor_died_stops_too() -> None:
    """Killed right after it started a worker, the supervisor is gone before the worker looks:
    the worker still stops (SIGTERM to itself), instead of serving the port forever."""
    script = (
        "import signal, sys\n"
        "from services.core.workers import _stop_when_orphaned\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))\n"
        "_stop_when_orphaned(1 << 22)\n"  # a pid that is not its parent: already orphaned
        "signal.pause()\n"
    )
    stopped = subprocess.run([sys.executable, "-c", script], timeout=30)
    assert stopped.returncode == 7


def test_a_second_serve_with_workers_on_the_same_port_is_refused(
    cli: Any, settings: Settings
) -> None:
    """SO_REUSEPORT alone would let the second share the port with the first."""
    assert cli("init").exit_code == 0
    port = _free_port()
    with _serving_with_two_workers(settings, port):
        second = subprocess.run(
            [sys.executable, "-m", "services", "serve", "passes", "--workers", "2"],
            env=_serve_env(settings, port),
            capture_output=True,
            timeout=60,
        )
        assert second.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port}" in second.stderr.decode()
        assert "another `passpost serve --workers` holds it" in second.stderr.decode()
        assert _healthy(port)


def test_metrics_of_any_worker_count_the_whole_group(settings: Settings, tmp_path: Path) -> None:
    """Every scrape, whichever worker answers it, counts every worker's requests, a dead
    worker's too; a previous group's files are cleared at start (one unreadable would fail
    every scrape)."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"left by a previous group")
    port = _free_port()
    with _serving_with_two_workers(settings, port, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)) as s:
        before = _healthz_count(port)
        for _ in range(20):  # a connection each: the kernel spreads them over both workers
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        assert [_healthz_count(port) - before for _ in range(6)] == [20] * 6
        first, _ = _children(s.pid)
        os.kill(first, signal.SIGKILL)
        _wait_for(lambda: first not in _children(s.pid) and len(_children(s.pid)) == 2)
        _wait_for(lambda: _healthy(port))
        after_restart = _healthz_count(port)
        assert after_restart >= before + 20
        assert [_healthz_count(port) for _ in range(4)] == [after_restart] * 4


def _healthz_count(port: int) -> int:
    """``/healthz`` requests answered 200, as one scrape of ``/metrics`` counts them."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples = [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "passpost_http_requests_total"
        and sample.labels == {"method": "GET", "route": "/healthz", "status": "200"}
    ]
    assert len(samples) == 1, samples
    return int(samples[0].value)


@contextlib.contextmanager
def _serving_with_two_workers(
    settings: Settings, port: int, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``passpost serve passes --workers 2`` on ``port``, once both workers answer."""
    server = subprocess.Popen(
        [sys.executable, "-m", "services", "serve", "passes", "--workers", "2"],
        env={**_serve_env(settings, port), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: len(_children(server.pid)) == 2 and _healthy(port))
        yield server
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def _serve_env(settings: Settings, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "PASSPOST_ENVIRONMENT": "test",
        "PASSPOST_DATA_DIR": str(settings.data_dir),
        "PASSPOST_DATABASE_URL": settings.resolved_database_url,
        "PASSPOST_PORT": str(port),
        "PASSPOST_LOG_LEVEL": "warning",
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _wait_for(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the server workers did not get there in time"
        time.sleep(0.1)


def test_a_worker_builds_the_service_it_was_told(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PASSPOST_ENVIRONMENT", "test")
    monkeypatch.setenv("PASSPOST_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("PASSPOST_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv(SERVED_SERVICE_ENV, "passes")
    get_settings.cache_clear()
    try:
        paths = web_app().openapi()["paths"]
    finally:
        get_settings.cache_clear()
    assert "/passkit/v1/passes/{pass_type}/{serial}" in paths
    assert "/v1/orders/events" not in paths


@pytest.mark.parametrize(
    ("service", "served", "not_served"),
    [
        (ServiceName.admin, "/admin/v1/merchants", "/passkit/v1/log"),
        (
            ServiceName.admin,
            "/admin/v1/merchants/{slug}/google",
            "/admin/v1/merchants/{slug}/apple",
        ),
        (ServiceName.passes, "/admin/v1/merchants/{slug}/branding", "/v1/orders/events"),
        (ServiceName.passes, "/admin/v1/merchants", "/v1/orders/events"),
        (ServiceName.orders, "/v1/orders/events", "/admin/v1/merchants"),
        (ServiceName.orders, "/v1/offers", "/passkit/v1/log"),
        (ServiceName.offers, "/v1/campaigns/{campaign_id}", "/v1/orders/events"),
        (ServiceName.all, "/v1/stats", "/nowhere"),
        (ServiceName.push, "/google/callbacks", "/admin/v1/merchants"),
        (ServiceName.all, "/admin/v1/merchants", "/nowhere"),
        (ServiceName.passes, "/admin/v1/merchants/{slug}/connectors", "/v1/connectors/events"),
        (ServiceName.admin, "/admin/v1/merchants/{slug}/connectors/{platform}", "/v1/stats"),
        (
            ServiceName.orders,
            "/v1/connectors/{platform}/{merchant_slug}",
            "/admin/v1/merchants/{slug}/connectors",
        ),
    ],
)
def test_the_admin_api_is_served_alone_or_beside_passes(
    settings: Settings, service: ServiceName, served: str, not_served: str
) -> None:
    paths = create_app(settings, components_of(service, settings)).openapi()["paths"]
    assert served in paths
    assert not_served not in paths


def test_link_templates_with_a_format_spec_are_refused(cli: Any) -> None:
    assert cli("merchants", "create", "--slug", "shop", "--name", "Shop").exit_code == 0
    for template in ("https://s.example.com/{order_id:d}", "https://s.example.com/{order_id!r}"):
        bad = cli("designs", "branding", "--merchant", "shop", "--order-url", template)
        assert bad.exit_code == 2, bad.output
        assert "order_url_template" in bad.stderr
        assert "write {order_id} alone" in bad.stderr


def test_a_merchants_marketing_settings_are_shown_and_changed(cli: Any) -> None:
    assert cli("merchants", "create", "--slug", "shop", "--name", "Shop").exit_code == 0
    shown = cli("merchants", "marketing", "--merchant", "shop")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["marketing"] == {
        "daily_cap": 1,
        "weekly_cap": 3,
        "quiet_start": "21:00:00",
        "quiet_end": "08:00:00",
        "time_zone": "UTC",
    }

    changed = cli(
        "merchants", "marketing", "--merchant", "shop", "--weekly-cap", "2",
        "--quiet-hours", "22:00-07:30", "--time-zone", "Europe/Prague",
    )  # fmt: skip
    assert changed.exit_code == 0, changed.output
    again = json.loads(cli("merchants", "marketing", "--merchant", "shop").stdout)["marketing"]
    assert again == {
        "daily_cap": 1,
        "weekly_cap": 2,
        "quiet_start": "22:00:00",
        "quiet_end": "07:30:00",
        "time_zone": "Europe/Prague",
    }


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--quiet-hours", "22:00", "--quiet-hours"),
        ("--quiet-hours", "22:00-7", "--quiet-hours"),
        ("--time-zone", "Europe/Atlantis", "time_zone"),
        ("--daily-cap", "5", "weekly_cap"),
        ("--daily-cap", "-1", "daily_cap"),
    ],
)
def test_bad_marketing_settings_are_named_and_change_nothing(
    cli: Any, option: str, value: str, named: str
) -> None:
    assert cli("merchants", "create", "--slug", "shop", "--name", "Shop").exit_code == 0
    refused = cli("merchants", "marketing", "--merchant", "shop", option, value)
    assert refused.exit_code == 2
    assert named in refused.stderr
    assert "Traceback" not in refused.output
    shown = json.loads(cli("merchants", "marketing", "--merchant", "shop").stdout)
    assert shown["marketing"]["daily_cap"] == 1
    assert shown["marketing"]["time_zone"] == "UTC"


def test_a_merchants_stores_are_set_listed_and_cleared(cli: Any, tmp_path: Path) -> None:
    assert cli("merchants", "create", "--slug", "shop", "--name", "Shop").exit_code == 0
    stores = [{"latitude": 48.1439, "longitude": 17.1097, "relevant_text": {"en": "Nearby"}}]
    file = tmp_path / "stores.json"
    file.write_text(json.dumps(stores))
    set_ = cli("designs", "locations", "set", "--merchant", "shop", str(file))
    assert set_.exit_code == 0, set_.output
    listed = cli("designs", "locations", "list", "--merchant", "shop")
    assert json.loads(listed.stdout) == {"merchant": "shop", "locations": stores}

    for given, named in [
        (stores * 11, "locations: List should have at most 10 items"),
        ([{"latitude": 91, "longitude": 0}], "locations.0.latitude: Input should be less than"),
    ]:
        file.write_text(json.dumps(given))
        refused = cli("designs", "locations", "set", "--merchant", "shop", str(file))
        assert refused.exit_code == 2
        assert named in refused.stderr
        assert "Traceback" not in refused.output
    file.write_text("[{")
    assert (
        "is not JSON" in cli("designs", "locations", "set", "--merchant", "shop", str(file)).stderr
    )
    same = json.loads(cli("designs", "locations", "list", "--merchant", "shop").stdout)
    assert same["locations"] == stores

    cleared = cli("designs", "locations", "clear", "--merchant", "shop")
    assert cleared.exit_code == 0, cleared.output
    empty = cli("designs", "locations", "list", "--merchant", "shop")
    assert json.loads(empty.stdout)["locations"] == []


def test_review_and_survey_links_are_branding(cli: Any) -> None:
    assert cli("merchants", "create", "--slug", "shop", "--name", "Shop").exit_code == 0
    set_ = cli(
        "designs", "branding", "--merchant", "shop",
        "--review-url", "https://reviews.example.com/{order_id}",
        "--survey-url", "https://shop.example.com/survey?o={order_number}",
    )  # fmt: skip
    assert set_.exit_code == 0, set_.output
    updated = json.loads(set_.stdout)["updated"]
    assert updated == ["review_url_template", "survey_url_template"]
    bad = cli("designs", "branding", "--merchant", "shop", "--review-url", "https://r/{score}")
    assert bad.exit_code == 2
    assert "review_url_template" in bad.stderr


def test_a_journeys_link_template_and_refill_days_are_set_as_written(cli: Any) -> None:
    assert cli("merchants", "create", "--slug", "shop", "--name", "Shop").exit_code == 0
    referral = cli(
        "journeys", "set", "--merchant", "shop", "--journey", "referral", "--on",
        "--url", "https://shop.example.com/invite/{customer_id}",
    )  # fmt: skip
    assert referral.exit_code == 0, referral.output
    assert json.loads(referral.stdout)["url"] == "https://shop.example.com/invite/{customer_id}"

    refill = cli(
        "journeys", "set", "--merchant", "shop", "--journey", "refill",
        "--refill", "tea-green=30", "--refill", "filters=60",
    )  # fmt: skip
    assert refill.exit_code == 0, refill.output
    assert json.loads(refill.stdout)["products"] == {"tea-green": 30, "filters": 60}
    forgot = cli(
        "journeys", "set", "--merchant", "shop", "--journey", "refill", "--refill", "filters=0"
    )
    assert json.loads(forgot.stdout)["products"] == {"tea-green": 30}

    for option, value in (("--refill", "tea-green"), ("--url", "not a url{")):
        refused = cli("journeys", "set", "--merchant", "shop", "--journey", "refill", option, value)
        assert refused.exit_code == 2, refused.output
        assert option.removeprefix("--") in refused.stderr
        assert "Traceback" not in refused.output

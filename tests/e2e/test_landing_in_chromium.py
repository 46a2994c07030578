"""The add-to-wallet page in a real browser (headless Chromium) at phone and desktop sizes.

Screenshots are kept in ``test-artifacts/`` (or ``PASSPOST_TEST_ARTIFACTS``) for a person to look
at. Chromium comes from Debian; the set-up installs it when it is missing and it can (root).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.cards import card_links
from services.core.settings import Settings
from services.merchants import google_wallet
from services.passes.models import Card
from tests.e2e.conftest import installation
from tests.factories import create_card, create_merchant
from tests.passes.test_landing import ANDROID, DESKTOP, IPHONE

ARTIFACTS = Path(os.environ.get("PASSPOST_TEST_ARTIFACTS", "test-artifacts"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def _install_chromium() -> str | None:
    found = shutil.which("chromium")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        subprocess.run(command, check=False, capture_output=True, timeout=600)
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    path = _install_chromium()
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Chromium is needed for the landing page test and could not be installed")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[Settings]:
    """The installation on a real socket, its links pointing at it."""
    port = _free_port()
    live = settings.model_copy(update={"public_base_url": f"http://127.0.0.1:{port}"})
    server = uvicorn.Server(
        uvicorn.Config(installation(live), host="127.0.0.1", port=port, log_config=None)
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110  (uvicorn offers no event)
            await asyncio.sleep(0.02)
    yield live
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _fresh_artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    path.unlink(missing_ok=True)
    return path


async def _chromium(chromium: str, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        chromium,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={ARTIFACTS / '.chromium'}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(60):
        out, _ = await process.communicate()
    return out.decode()


@pytest.mark.parametrize("settings", ["db"], indirect=True)  # the landing page uses no queue
@pytest.mark.parametrize(
    ("device", "user_agent", "size", "first"),
    [
        ("iphone", IPHONE, "390,844", "apple"),
        ("android", ANDROID, "412,915", "google"),
        ("desktop", DESKTOP, "1280,900", "apple"),
    ],
)
async def test_landing_page_in_chromium(
    chromium: str,
    served: Settings,
    session: AsyncSession,
    service_account_info: dict[str, str],
    tmp_path: Path,
    device: str,
    user_agent: str,
    size: str,
    first: str,
) -> None:
    onboarded = await create_merchant(session, served)
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(service_account_info))
    merchant = await session.merge(onboarded.merchant)
    await google_wallet.configure(
        session,
        merchant,
        issuer_id="3388000000012345678",
        service_account_file=key_file,
        origins=[served.base_url()],
    )
    card: Card = await create_card(session, onboarded, locale="sk")
    links = card_links(card, served.base_url(), google=True)
    shot = _fresh_artifact(f"landing-{device}.png")

    dom = await _chromium(
        chromium,
        f"--user-agent={user_agent}",
        f"--window-size={size}",
        "--dump-dom",
        links.landing_url,
    )
    buttons = re.findall(r'<a class="wallet (\w+)" id="\w+" href="([^"]+)"', dom)
    assert next(name for name, _ in buttons) == first
    hrefs = dict(buttons)
    assert hrefs["apple"] == links.apple_pass_url
    assert hrefs["google"] == links.google_save_url
    await _chromium(
        chromium,
        f"--user-agent={user_agent}",
        f"--window-size={size}",
        f"--screenshot={shot.resolve()}",
        links.landing_url,
    )
    assert shot.exists()
    assert shot.read_bytes().startswith(b"\x89PNG")
    async with httpx.AsyncClient() as client:  # the buttons' targets really are the card
        response = await client.get(hrefs["apple"])
        saved = await client.get(hrefs["google"])
    assert response.headers["content-type"] == "application/vnd.apple.pkpass"
    assert saved.status_code == 303
    assert saved.headers["location"].startswith("https://pay.google.com/gp/v/save/")

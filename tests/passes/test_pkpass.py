"""The signed bundle: verified by openssl, hashes re-checked, pass.json complete."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.cards import card_links
from services.core import metrics
from services.core.settings import Settings
from services.onboarding import Onboarded
from services.passes.changes import record_change
from services.passes.models import PassDesign
from services.passes.texts import LOCALES
from tests.factories import create_card, create_merchant

REQUIRED_KEYS = {
    "formatVersion",
    "passTypeIdentifier",
    "serialNumber",
    "teamIdentifier",
    "organizationName",
    "description",
    "webServiceURL",
    "authenticationToken",
    "foregroundColor",
    "backgroundColor",
    "barcodes",
    "storeCard",
}


async def _download(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> tuple[httpx.Response, dict[str, bytes]]:
    onboarded = await create_merchant(session, settings)
    card = await create_card(session, onboarded)
    response = await client.get(card_links(card, settings.base_url()).apple_pass_url)
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
        return response, {name: bundle.read(name) for name in bundle.namelist()}


def _openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The independent second implementation: OpenSSL's CMS code."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to check signatures independently"
    return subprocess.run([openssl, *args], capture_output=True, text=True, check=False)


def _unzip_test(path: Path) -> subprocess.CompletedProcess[str]:
    """A second reader of the ZIP: Info-ZIP's own integrity test."""
    unzip = shutil.which("unzip")
    if unzip is None:
        pytest.skip("Info-ZIP unzip is not installed")
    return subprocess.run([unzip, "-t", path], capture_output=True, text=True, check=False)


def _verify(directory: Path, root: Path) -> subprocess.CompletedProcess[str]:
    return _openssl(
        "cms", "-verify", "-binary", "-inform", "DER", "-in", directory / "signature",
        "-content", directory / "manifest.json", "-CAfile", root, "-purpose", "any",
        "-out", directory / "out",
    )  # fmt: skip


async def test_signature_verifies_with_openssl_against_the_root(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings, tmp_path: Path
) -> None:
    _, files = await _download(client, session, settings)
    root = settings.keys_dir / "dev-root.pem"
    (tmp_path / "manifest.json").write_bytes(files["manifest.json"])
    (tmp_path / "signature").write_bytes(files["signature"])
    verify = _verify(tmp_path, root)
    assert verify.returncode == 0, verify.stderr
    assert "Verification successful" in verify.stderr

    # A manifest changed by one byte must not verify.
    (tmp_path / "manifest.json").write_bytes(files["manifest.json"].replace(b"{", b"{ ", 1))
    assert _verify(tmp_path, root).returncode != 0

    printed = _openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", tmp_path / "signature")
    assert "signingTime" in printed.stdout
    assert "Passpost Development WWDR Certification Authority" in printed.stdout
    assert "Pass Type ID: pass.dev.passpost.shop" in printed.stdout


async def test_manifest_hashes_every_other_file(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    response, files = await _download(client, session, settings)
    assert response.headers["content-type"] == "application/vnd.apple.pkpass"
    assert "last-modified" in response.headers
    manifest = json.loads(files["manifest.json"])
    assert set(manifest) == set(files) - {"manifest.json", "signature"}
    for name, digest in manifest.items():
        assert hashlib.sha1(files[name]).hexdigest() == digest, name  # noqa: S324


async def test_bundle_is_a_plain_zip_that_unzip_accepts(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings, tmp_path: Path
) -> None:
    response, files = await _download(client, session, settings)
    with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
        assert bundle.testzip() is None
        infos = {info.filename: info for info in bundle.infolist()}
    assert set(infos) == set(files)
    assert not any(info.is_dir() for info in infos.values())
    assert infos["icon@2x.png"].compress_type == zipfile.ZIP_STORED
    for name in ("pass.json", "manifest.json", "signature", "sk.lproj/pass.strings"):
        assert infos[name].compress_type == zipfile.ZIP_DEFLATED, name
    (tmp_path / "card.pkpass").write_bytes(response.content)
    tested = _unzip_test(tmp_path / "card.pkpass")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "No errors detected" in tested.stdout


async def test_pass_json_has_every_required_key_and_respects_limits(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    _, files = await _download(client, session, settings)
    document = json.loads(files["pass.json"])
    assert set(document) >= REQUIRED_KEYS
    assert document["formatVersion"] == 1
    assert document["passTypeIdentifier"] == "pass.dev.passpost.shop"
    assert document["teamIdentifier"] == "PASSPOST42"
    assert document["webServiceURL"] == "https://passpost.test/passkit"
    assert len(document["authenticationToken"]) >= 16
    assert document["barcodes"][0]["format"] == "PKBarcodeFormatQR"
    for color in ("foregroundColor", "backgroundColor", "labelColor"):
        assert re.fullmatch(r"rgb\(\d{1,3}, \d{1,3}, \d{1,3}\)", document[color])
    styles = {"boardingPass", "coupon", "eventTicket", "generic", "storeCard"} & set(document)
    assert styles == {"storeCard"}
    card = document["storeCard"]
    assert len(card["headerFields"]) <= 3
    assert len(card["primaryFields"]) <= 1
    assert len(card["secondaryFields"]) + len(card["auxiliaryFields"]) <= 4
    back = {field["key"]: field for field in card["backFields"]}
    assert back["link_account"]["value"] == "https://shop.example.com/account"
    assert back["link_account"]["dataDetectorTypes"] == ["PKDataDetectorTypeLink"]
    assert back["support_phone"]["dataDetectorTypes"] == ["PKDataDetectorTypePhoneNumber"]
    # Links that need an order appear only once the card carries one.
    assert "link_order" not in back


async def test_images_and_localizations(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    _, files = await _download(client, session, settings)
    for name in (
        "icon.png",
        "icon@2x.png",
        "icon@3x.png",
        "logo.png",
        "logo@2x.png",
        "logo@3x.png",
    ):
        assert files[name].startswith(b"\x89PNG\r\n\x1a\n"), name
    assert set(LOCALES) >= {"en", "sk", "cs", "pl", "ru", "de"}
    keys_per_locale = {}
    for locale in LOCALES:
        strings = files[f"{locale}.lproj/pass.strings"].decode("utf-8")
        keys_per_locale[locale] = set(re.findall(r'^"([^"]+)" = ', strings, re.M))
    assert len({frozenset(keys) for keys in keys_per_locale.values()}) == 1
    document = json.loads(files["pass.json"])
    labels = {field["label"] for fields in document["storeCard"].values() for field in fields}
    assert labels <= keys_per_locale["en"], "every label must be translated"
    assert 'label.status" = "Stav"' in files["sk.lproj/pass.strings"].decode()


async def test_bundle_built_once_per_version(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    onboarded = await create_merchant(session, settings)
    card = await create_card(session, onboarded)
    url = card_links(card, settings.base_url()).apple_pass_url
    built = metrics.PASSES_BUILT._value.get()
    first = await client.get(url)
    second = await client.get(url)
    assert first.content == second.content  # the same signature: served from the cache
    assert metrics.PASSES_BUILT._value.get() == built + 1

    card.customer_name = "Jana Horváthová"
    await record_change(session, card)
    await session.commit()
    third = await client.get(url)
    assert third.status_code == 200
    with zipfile.ZipFile(io.BytesIO(third.content)) as bundle:
        assert "Jana Horváthová" in bundle.read("pass.json").decode()
    assert metrics.PASSES_BUILT._value.get() == built + 2


@pytest.mark.parametrize("token", ["nope", "x" * 32, "../../etc/passwd", "a" * 200])
async def test_unknown_link_is_404(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get(f"/c/{token}/pass.pkpass")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def _stored_template(session: AsyncSession, onboarded: Onboarded, template: str) -> None:
    """A template as a design may hold it from before placeholders were checked."""
    await session.execute(
        update(PassDesign)
        .where(PassDesign.id == onboarded.design.id)
        .values(account_url_template=template)
    )
    await session.commit()


def _links(files: dict[str, bytes]) -> dict[str, str]:
    document = json.loads(files["pass.json"])
    return {
        field["key"]: field["value"]
        for field in document["storeCard"]["backFields"]
        if field["key"].startswith("link_")
    }


@pytest.mark.parametrize(
    "template",
    [
        "https://shop.example.com/a/{customer_id:d}",
        "https://shop.example.com/a/{customer_id!r}",
        "https://shop.example.com/a/{customer_id:>100000}",
        "https://shop.example.com/a/{customer_id.__class__}",
        "https://shop.example.com/a/{",
    ],
)
async def test_a_template_stored_before_the_checks_never_breaks_the_pass(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings, template: str
) -> None:
    onboarded = await create_merchant(session, settings)
    await _stored_template(session, onboarded, template)
    card = await create_card(session, onboarded)
    response = await client.get(card_links(card, settings.base_url()).apple_pass_url)
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
        files = {name: bundle.read(name) for name in bundle.namelist()}
    assert len(files["pass.json"]) < 10_000
    assert "link_account" not in _links(files)


async def test_template_values_are_percent_encoded_and_long_links_left_off(
    client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    onboarded = await create_merchant(session, settings)
    await _stored_template(
        session, onboarded, "https://shop.example.com/a/{customer_id}?c={customer_id}#x"
    )
    card = await create_card(session, onboarded, customer_id="a/b?c#d e&f=ü")
    response = await client.get(card_links(card, settings.base_url()).apple_pass_url)
    with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
        links = _links({"pass.json": bundle.read("pass.json")})
    encoded = "a%2Fb%3Fc%23d%20e%26f%3D%C3%BC"
    assert links["link_account"] == f"https://shop.example.com/a/{encoded}?c={encoded}#x"
    assert "link_order" not in links  # its template needs an order: it waits for one

    long_id = "x" * 150  # fifteen times in the link: over 2,048 characters
    await _stored_template(session, onboarded, "https://s.example.com/" + "{customer_id}/" * 15)
    for _ in range(2):
        other = await create_card(session, onboarded, customer_id=long_id)
        response = await client.get(card_links(other, settings.base_url()).apple_pass_url)
        assert response.status_code == 200
        with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
            assert "link_account" not in _links({"pass.json": bundle.read("pass.json")})
        long_id = long_id.replace("x", "y")
    reported = [r for r in caplog.records if r.getMessage().startswith("link left off")]
    assert len(reported) == 1  # once, however many cards
    assert "xxx" not in repr(reported[0].__dict__)  # and without the values

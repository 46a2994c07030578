"""Pass designs: images, Apple settings that may and may not change."""

from __future__ import annotations

import hashlib
import io
import zipfile
import zlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.errors import Conflict, InvalidInput
from services.core.queue import OutboxMessage
from services.core.settings import Settings
from services.onboarding import development_apple_settings
from services.passes.apple.document import pass_strings_for
from services.passes.apple.ziparchive import archive
from services.passes.changes import record_change
from services.passes.designs import (
    DesignAssetCache,
    check_image,
    set_apns_token_key,
    set_image,
    set_text,
    update_apple,
)
from services.passes.png import badge_png, png_size
from tests.factories import create_card, create_merchant


def test_default_artwork_is_a_valid_png() -> None:
    assert png_size(badge_png(87, 87, (10, 20, 30))) == (87, 87)
    assert png_size(badge_png(150, 50, (10, 20, 30), ring=False)) == (150, 50)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("icon.png", b"GIF89a....", "not a PNG image"),
        ("icon.png", badge_png(2, 2, (0, 0, 0))[:-20][:20], "not a PNG image"),
        ("background.png", badge_png(2, 2, (0, 0, 0)), "unknown image name"),
    ],
)
def test_bad_images_are_refused(name: str, data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_image(name, data)


async def test_pass_type_cannot_change_once_cards_exist(
    session: AsyncSession, settings: Settings
) -> None:
    onboarded = await create_merchant(session, settings)
    other = development_apple_settings(settings, "other", "Other")
    await create_card(session, onboarded)
    with pytest.raises(Conflict, match="cannot change"):
        await update_apple(session, onboarded.merchant, onboarded.design, other)


async def test_pass_type_can_change_before_any_card(
    session: AsyncSession, settings: Settings
) -> None:
    onboarded = await create_merchant(session, settings)
    other = development_apple_settings(settings, "other", "Other")
    design = await update_apple(session, onboarded.merchant, onboarded.design, other)
    assert design.pass_type_identifier == "pass.dev.passpost.other"


async def test_apns_token_key_switches_card_updates_to_token_auth(
    session: AsyncSession, settings: Settings, tmp_path: Path
) -> None:
    onboarded = await create_merchant(session, settings)
    card = await create_card(session, onboarded)
    rsa_key = settings.keys_dir / "pass.dev.passpost.shop.key"
    with pytest.raises(InvalidInput, match=r"not a P-256 \.p8 key"):
        await set_apns_token_key(
            session, onboarded.merchant, onboarded.design, rsa_key, "ABCDE12345"
        )
    with pytest.raises(InvalidInput, match="key_id"):
        await set_apns_token_key(session, onboarded.merchant, onboarded.design, rsa_key, "short")

    p8 = tmp_path / "AuthKey.p8"
    p8.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    await set_apns_token_key(session, onboarded.merchant, onboarded.design, p8, "ABCDE12345")
    await record_change(session, card)
    await session.commit()
    message = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()[-1]
    assert message.payload["apns"] == {
        "auth": "token",
        "key_path": str(p8.resolve()),
        "key_id": "ABCDE12345",
        "team_id": "PASSPOST42",
    }


async def test_merchant_texts_override_ours(session: AsyncSession, settings: Settings) -> None:
    onboarded = await create_merchant(session, settings)
    design = onboarded.design
    await set_text(session, design, "sk", "status.shipped", "Už letí k vám")
    await set_text(session, design, "sk", "status.change", "Objednávka {number} – %@")
    card = await create_card(session, onboarded)
    strings = pass_strings_for(design, card)
    assert '"status.shipped" = "Už letí k vám";' in strings["sk"].decode()
    assert '"status.shipped" = "On its way";' in strings["en"].decode()
    await set_text(session, design, "sk", "status.shipped", None)
    assert design.texts == {"sk": {"status.change": "Objednávka {number} – %@"}}
    with pytest.raises(InvalidInput, match="%@"):
        await set_text(session, design, "en", "status.change", "Order moved")
    with pytest.raises(InvalidInput, match="unknown text key"):
        await set_text(session, design, "en", "status.teleported", "Beamed")
    with pytest.raises(InvalidInput, match="locale"):
        await set_text(session, design, "fr", "status.shipped", "En route")


async def test_design_images_are_hashed_once_until_the_design_changes(
    session: AsyncSession, settings: Settings
) -> None:
    onboarded = await create_merchant(session, settings)
    merchant, design = onboarded.merchant, onboarded.design
    cache = DesignAssetCache()
    first = await cache.get(session, merchant, design)
    assert await cache.get(session, merchant, design) is first

    strip = badge_png(375, 123, (10, 20, 30), ring=False)
    await set_image(session, design, "strip.png", strip)
    changed = await cache.get(session, merchant, design)
    assert changed is not first
    assert changed.static.sha1["strip.png"] == hashlib.sha1(strip).hexdigest()  # noqa: S324
    with zipfile.ZipFile(io.BytesIO(archive([], head=changed.static.records))) as images:
        assert images.read("strip.png") == strip
        assert zlib.crc32(strip) == images.getinfo("strip.png").CRC
        assert set(images.namelist()) == set(changed.static.sha1)

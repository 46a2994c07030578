"""Pass designs: images, Apple settings that may and may not change."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.errors import Conflict, InvalidInput
from services.core.settings import Settings
from services.onboarding import development_apple_settings
from services.passes.designs import check_image, update_apple
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

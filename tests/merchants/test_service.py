"""Merchants and their API keys."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.errors import Conflict, Unauthorized
from services.merchants.models import ApiKey
from services.merchants.schemas import MerchantCreate, normalize_locale
from services.merchants.service import (
    authenticate_api_key,
    create_api_key,
    create_merchant,
    revoke_api_keys,
)


async def test_api_key_is_stored_hashed_and_authenticates(session: AsyncSession) -> None:
    merchant, key = await create_merchant(session, MerchantCreate(slug="shop", name="Shop"))
    await session.commit()
    stored = (await session.scalars(select(ApiKey))).one()
    assert key not in (stored.key_hash, stored.hint)
    assert stored.hint == key[-4:]
    assert (await authenticate_api_key(session, key)).id == merchant.id
    with pytest.raises(Unauthorized):
        await authenticate_api_key(session, key + "x")


async def test_revoked_keys_stop_working(session: AsyncSession) -> None:
    merchant, old = await create_merchant(session, MerchantCreate(slug="shop", name="Shop"))
    assert await revoke_api_keys(session, merchant) == 1
    new = await create_api_key(session, merchant)
    await session.commit()
    with pytest.raises(Unauthorized):
        await authenticate_api_key(session, old)
    assert (await authenticate_api_key(session, new)).slug == "shop"


async def test_slug_is_unique(session: AsyncSession) -> None:
    await create_merchant(session, MerchantCreate(slug="shop", name="Shop"))
    with pytest.raises(Conflict):
        await create_merchant(session, MerchantCreate(slug="shop", name="Other"))


@pytest.mark.parametrize(("given", "kept"), [("sk", "sk"), ("sk-SK", "sk"), ("DE_at", "de")])
def test_locales_keep_the_language(given: str, kept: str) -> None:
    assert normalize_locale(given) == kept


@pytest.mark.parametrize("slug", ["", "-shop", "shop-", "Shop", "sh op", "a" * 65])
def test_bad_slugs_are_refused(slug: str) -> None:
    with pytest.raises(ValueError, match="slug"):
        MerchantCreate(slug=slug, name="x")

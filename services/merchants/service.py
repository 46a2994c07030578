"""Merchants and API keys: creation and authentication."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session as SyncSession

from services.core.errors import Conflict, NotFound, Unauthorized
from services.core.models import utcnow
from services.core.transaction import after_commit
from services.merchants.models import ApiKey, Merchant
from services.merchants.schemas import MerchantCreate

API_KEY_PREFIX = "pp_live_"


def hash_api_key(key: str) -> str:
    # Keys carry 256 random bits, so a plain SHA-256 is as strong as a slow hash here
    # and keeps authentication to one indexed lookup.
    return hashlib.sha256(key.encode()).hexdigest()


async def create_merchant(session: AsyncSession, data: MerchantCreate) -> tuple[Merchant, str]:
    if await session.scalar(select(Merchant.id).where(Merchant.slug == data.slug)) is not None:
        raise Conflict(f"a merchant with slug {data.slug!r} exists already", slug=data.slug)
    merchant = Merchant(slug=data.slug, name=data.name, default_locale=data.default_locale)
    session.add(merchant)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a merchant with slug {data.slug!r} exists already") from exc
    return merchant, await create_api_key(session, merchant)


async def create_api_key(session: AsyncSession, merchant: Merchant) -> str:
    """Make a new key for ``merchant`` and return it: the only time it is ever seen."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(merchant_id=merchant.id, key_hash=hash_api_key(key), hint=key[-4:]))
    await session.flush()
    return key


async def get_merchant_by_slug(session: AsyncSession, slug: str) -> Merchant:
    merchant = await session.scalar(select(Merchant).where(Merchant.slug == slug))
    if merchant is None:
        raise NotFound(f"no merchant with slug {slug!r}")
    return merchant


async def list_merchants(session: AsyncSession) -> list[Merchant]:
    return list((await session.scalars(select(Merchant).order_by(Merchant.slug))).all())


API_KEY_CACHE_SECONDS = 5.0
_authenticated: dict[str, tuple[float, Merchant]] = {}
"""Key hash -> (expiry on the monotonic clock, a detached copy of its merchant)."""


async def authenticate_api_key(session: AsyncSession, key: str) -> Merchant:
    """The merchant owning an active ``key``; 401 for anything else.

    Answers are kept in this process for ``API_KEY_CACHE_SECONDS`` (5 s), keyed by the key's
    hash: every order event authenticates, and the lookup was a statement per request. Any
    commit in this process that changes a merchant or an API key (a revoked key, a new signing
    secret) empties the cache at once; a change made by another process is seen within the TTL.
    The merchant returned is a detached copy: read it, never add it to a session.
    """
    key_hash = hash_api_key(key)
    cached = _cached_merchant(key_hash)
    if cached is not None:
        return cached
    merchant = await session.scalar(
        select(Merchant)
        .join(ApiKey, ApiKey.merchant_id == Merchant.id)
        .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    )
    if merchant is None:
        _authenticated.pop(key_hash, None)
        raise Unauthorized("unknown or revoked API key")
    copy = _detached_copy(merchant)
    _authenticated[key_hash] = (time.monotonic() + API_KEY_CACHE_SECONDS, copy)
    return copy


def cached_api_key(key: str) -> Merchant | None:
    """The merchant ``authenticate_api_key`` answered for ``key`` within its TTL, if any: a
    request whose key is cached needs no session at all."""
    return _cached_merchant(hash_api_key(key))


def _cached_merchant(key_hash: str) -> Merchant | None:
    cached = _authenticated.get(key_hash)
    return cached[1] if cached is not None and cached[0] > time.monotonic() else None


def _detached_copy(merchant: Merchant) -> Merchant:
    """A copy no session owns, so a rollback elsewhere never expires what the cache hands out."""
    columns = {c.key: getattr(merchant, c.key) for c in Merchant.__mapper__.column_attrs}
    return Merchant(**columns)


@event.listens_for(SyncSession, "before_flush")
def _note_credential_changes(session: SyncSession, _context: Any, _instances: Any) -> None:
    # Emptied only once the change is durable. A change in a savepoint that rolls back still
    # counts, which at worst empties the cache once for nothing.
    if any(
        isinstance(o, Merchant | ApiKey) for o in (*session.new, *session.dirty, *session.deleted)
    ):
        after_commit(session, _authenticated.clear)


SIGNING_SECRET_PREFIX = "whsec_"  # noqa: S105  (a prefix)


async def rotate_signing_secret(
    session: AsyncSession, merchant: Merchant, *, enable: bool
) -> str | None:
    """A new secret for signing order events (shown once), or ``None`` to stop requiring one."""
    merchant.signing_secret = SIGNING_SECRET_PREFIX + secrets.token_urlsafe(32) if enable else None
    await session.flush()
    return merchant.signing_secret


async def revoke_api_keys(session: AsyncSession, merchant: Merchant) -> int:
    keys = (
        await session.scalars(
            select(ApiKey).where(ApiKey.merchant_id == merchant.id, ApiKey.revoked_at.is_(None))
        )
    ).all()
    for api_key in keys:
        api_key.revoked_at = utcnow()
    return len(keys)

"""How a shop's backend authenticates to the shop API (orders, offers): its API key and,
when the merchant asked for it, a signature of the body."""

from __future__ import annotations

import hmac
import re
import time
from typing import Annotated

from fastapi import Depends, Header, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.cards import CardLinks, customer_links
from services.core.errors import Unauthorized
from services.core.settings import Settings
from services.merchants import google_wallet
from services.merchants.models import Merchant
from services.merchants.service import authenticate_api_key, cached_api_key

SIGNATURE_TOLERANCE_SECONDS = 300

MERCHANT_KEY = HTTPBearer(
    scheme_name="MerchantKey",
    description="`Authorization: Bearer <API key>`: the merchant's API key",
    auto_error=False,
)
"""The shop API's security scheme: a merchant's API key as a bearer token."""


def verify_signature(
    secret: str, header: str | None, body: bytes, now: float | None = None
) -> None:
    """``Passpost-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``."""
    if not header:
        raise Unauthorized("missing Passpost-Signature")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    given_t = parts.get("t", [""])[0]
    # At most 12 ASCII digits: int() would take other scripts' digits, and a huge one overflows
    # the float arithmetic below.
    if not re.fullmatch(r"[0-9]{1,12}", given_t):
        raise Unauthorized("malformed Passpost-Signature: no t=<unix seconds>")
    timestamp = int(given_t)
    if abs((now if now is not None else time.time()) - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        raise Unauthorized("Passpost-Signature is older than 5 minutes (or from the future)")
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, "sha256")
    expected = mac.hexdigest().encode()
    # Compared as bytes: compare_digest refuses a str with non-ASCII in it (a TypeError, a 500).
    given = (value.encode("utf-8", "surrogatepass") for value in parts.get("v1", []))
    if not any(hmac.compare_digest(expected, value) for value in given):
        raise Unauthorized("Passpost-Signature does not match the body")


async def authenticated_merchant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(MERCHANT_KEY)],
    passpost_signature: Annotated[str | None, Header()] = None,
) -> Merchant:
    """The merchant behind ``Authorization: Bearer <API key>``, its signature checked.

    Looked up outside the request's transaction (``read_engine``): a single order event is
    written in a transaction of the intake's, and on SQLite a request holding the write lock
    for its look-up would keep that transaction waiting. A key the process has cached needs no
    session (making and closing one was ~1.5% of a single event's CPU).
    """
    if credentials is None:
        raise Unauthorized("send Authorization: Bearer <API key>")
    key = credentials.credentials.strip()
    merchant = cached_api_key(key)
    if merchant is None:
        async with AsyncSession(request.app.state.read_engine) as session:
            merchant = await authenticate_api_key(session, key)
    if merchant.signing_secret:
        verify_signature(merchant.signing_secret, passpost_signature, await request.body())
    return merchant


CurrentMerchant = Annotated[Merchant, Depends(authenticated_merchant)]
"""The merchant a shop API request is made for (401 without a valid key or signature)."""


def links_for(merchant: Merchant, customer_id: str, settings: Settings) -> CardLinks:
    """The links of the customer's card, whether or not passes has made it yet: what every
    shop API answer about a customer carries (order events, ``customer.registered``)."""
    return customer_links(
        settings.resolved_secret_key(),
        merchant.id,
        customer_id,
        settings.base_url(),
        google=google_wallet.signs_save_links(merchant),
    )

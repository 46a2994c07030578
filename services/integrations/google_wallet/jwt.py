"""The "Save to Google Wallet" link: a JWT signed with the merchant's service account key.

The JWT carries the card's Loyalty object, so Google can create it when the customer saves the
card, whether or not push has inserted it over REST yet (an object Google has already is saved
as it is: the copy in the JWT changes nothing, PATCH does). Google's guide caps a JWT in a web
link at 1,800 characters (browsers truncate longer ones) and we hold the whole URL to that: an
object too big for it goes with its essentials only (``essentials``), and push's PATCH brings
the rest. The link is signed when a customer follows passpost's own ``/c/{link}/google``, so
it always carries the card as it is then.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import jwt

from services.integrations.google_wallet.auth import ServiceAccount

SAVE_URL_PREFIX = "https://pay.google.com/gp/v/save/"
MAX_SAVE_URL_LENGTH = 1800
ESSENTIAL_FIELDS = ("id", "classId", "state", "barcode", "accountId")
"""What a Loyalty object needs to be created and recognised; the rest can come by PATCH."""


class SaveUrlTooLong(ValueError):
    """The link would be longer than browsers carry whole (too many or too long origins)."""


def essentials(card_object: Mapping[str, Any]) -> dict[str, Any]:
    """The object with only what creating it needs, and its status line."""
    kept = {key: card_object[key] for key in ESSENTIAL_FIELDS if key in card_object}
    status = [m for m in card_object.get("textModulesData", ()) if m.get("id") == "status"]
    return {**kept, "textModulesData": status} if status else kept


def save_url(
    account: ServiceAccount,
    card_object: Mapping[str, Any],
    *,
    origins: Sequence[str],
    issued_at: int | None = None,
) -> str:
    """``https://pay.google.com/gp/v/save/<jwt>`` for the Loyalty object ``card_object``: the
    whole object when it fits, else its ``essentials``.

    ``origins`` are the shop's web origins (``https://shop.example``) where the button appears.
    """
    whole = _signed(account, card_object, origins, issued_at)
    if len(whole) <= MAX_SAVE_URL_LENGTH:
        return whole
    url = _signed(account, essentials(card_object), origins, issued_at)
    if len(url) > MAX_SAVE_URL_LENGTH:
        raise SaveUrlTooLong(
            f"the save link would be {len(url)} characters, over {MAX_SAVE_URL_LENGTH}"
        )
    return url


def _signed(
    account: ServiceAccount,
    card_object: Mapping[str, Any],
    origins: Sequence[str],
    issued_at: int | None,
) -> str:
    claims = {
        "iss": account.client_email,
        "aud": "google",
        "typ": "savetowallet",
        "iat": int(time.time()) if issued_at is None else issued_at,
        "origins": list(origins),
        "payload": {"loyaltyObjects": [dict(card_object)]},
    }
    headers = {"kid": account.private_key_id} if account.private_key_id else None
    return SAVE_URL_PREFIX + jwt.encode(
        claims, account.private_key, algorithm="RS256", headers=headers
    )

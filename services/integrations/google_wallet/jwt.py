"""The "Save to Google Wallet" link: a JWT signed with the merchant's service account key.

The JWT names the Loyalty object by its id only, so it stays short: Google's API flow guide caps
a JWT in a web link at 1,800 characters (browsers truncate longer ones), and we hold the whole
URL to that; a JWT carrying the whole object would not fit. The link is handed out before the
object exists (the orders API answers a shop at once); push inserts the object over REST when it
delivers the card's first ``card.updated``, normally well before a customer taps the link, and
until then Google has nothing to show for it. Signing a new link does not change a saved pass
(the object is PATCHed for that), so a link can be made on every request.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jwt

from services.integrations.google_wallet.auth import ServiceAccount

SAVE_URL_PREFIX = "https://pay.google.com/gp/v/save/"
MAX_SAVE_URL_LENGTH = 1800


class SaveUrlTooLong(ValueError):
    """The link would be longer than browsers carry whole (too many or too long origins)."""


def save_url(
    account: ServiceAccount,
    object_id: str,
    *,
    origins: Sequence[str],
    issued_at: int | None = None,
) -> str:
    """``https://pay.google.com/gp/v/save/<jwt>`` for the existing Loyalty object ``object_id``.

    ``origins`` are the shop's web origins (``https://shop.example``) where the button appears.
    """
    claims = {
        "iss": account.client_email,
        "aud": "google",
        "typ": "savetowallet",
        "iat": int(time.time()) if issued_at is None else issued_at,
        "origins": list(origins),
        "payload": {"loyaltyObjects": [{"id": object_id}]},
    }
    headers = {"kid": account.private_key_id} if account.private_key_id else None
    token = jwt.encode(claims, account.private_key, algorithm="RS256", headers=headers)
    url = SAVE_URL_PREFIX + token
    if len(url) > MAX_SAVE_URL_LENGTH:
        raise SaveUrlTooLong(
            f"the save link would be {len(url)} characters, over {MAX_SAVE_URL_LENGTH}"
        )
    return url

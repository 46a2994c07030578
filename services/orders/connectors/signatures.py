"""The platforms' webhook signatures: an HMAC of the raw body, compared in constant time."""

from __future__ import annotations

import base64
import hmac


def _matches(expected: str, given: str | None) -> bool:
    if not given:
        return False
    # As bytes: compare_digest refuses a str with non-ASCII in it (a TypeError, a 500).
    return hmac.compare_digest(expected.encode(), given.strip().encode("utf-8", "surrogatepass"))


def base64_sha256(secrets: list[str], body: bytes, given: str | None) -> bool:
    """Shopify and WooCommerce: base64 of HMAC-SHA256(secret, body), under any secret held."""
    return any(
        _matches(base64.b64encode(hmac.digest(s.encode(), body, "sha256")).decode(), given)
        for s in secrets
    )


def hex_sha1(secrets: list[str], body: bytes, given: str | None) -> bool:
    """Shoptet: hex HMAC-SHA1(signature key, body), under any key held (case-insensitive)."""
    return any(
        _matches(hmac.new(s.encode(), body, "sha1").hexdigest(), (given or "").lower())
        for s in secrets
    )

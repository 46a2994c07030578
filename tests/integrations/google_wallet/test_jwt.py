"""The "Save to Google Wallet" link, checked the way Google checks it."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.integrations.google_wallet.auth import ServiceAccount
from services.integrations.google_wallet.jwt import (
    MAX_SAVE_URL_LENGTH,
    SAVE_URL_PREFIX,
    SaveUrlTooLong,
    save_url,
)
from tests.integrations.google_wallet.conftest import ISSUER_ID

OBJECT_ID = f"{ISSUER_ID}.0f3c9a7e5b1d4c2a8e6f"
CARD_OBJECT = {
    "id": OBJECT_ID,
    "classId": f"{ISSUER_ID}.customer-card",
    "state": "ACTIVE",
    "barcode": {"type": "QR_CODE", "value": "0f3c9a7e5b1d4c2a8e6f"},
    "textModulesData": [{"id": "status", "header": "Order", "body": "Being prepared"}],
    "linksModuleData": {"uris": []},
    "accountId": "c-1",
}


def test_save_url_carries_the_whole_object(service_account: ServiceAccount) -> None:
    """Google creates the object on save if push has not inserted it yet."""
    url = save_url(
        service_account,
        CARD_OBJECT,
        origins=["https://shop.example", "https://www.shop.example"],
        issued_at=1_750_000_000,
    )

    assert url.startswith(SAVE_URL_PREFIX)
    assert len(url) < MAX_SAVE_URL_LENGTH
    token = url.removeprefix(SAVE_URL_PREFIX)
    assert jwt.get_unverified_header(token) == {
        "alg": "RS256",
        "typ": "JWT",
        "kid": service_account.private_key_id,
    }
    claims = jwt.decode(
        token,
        service_account.private_key.public_key(),
        algorithms=["RS256"],
        audience="google",
        issuer=service_account.client_email,
        options={"verify_iat": False},
    )
    assert claims == {
        "iss": service_account.client_email,
        "aud": "google",
        "typ": "savetowallet",
        "iat": 1_750_000_000,
        "origins": ["https://shop.example", "https://www.shop.example"],
        "payload": {"loyaltyObjects": [CARD_OBJECT]},
    }


def test_a_save_url_signed_by_another_key_does_not_verify(
    service_account: ServiceAccount,
) -> None:
    token = save_url(service_account, CARD_OBJECT, origins=[]).removeprefix(SAVE_URL_PREFIX)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, stranger, algorithms=["RS256"], audience="google")


def test_an_object_too_big_for_the_link_goes_with_its_essentials(
    service_account: ServiceAccount,
) -> None:
    """Push's PATCH brings the rest; the link stays within what browsers carry."""
    links = [{"id": f"l{n}", "uri": f"https://shop.example/{'x' * 80}/{n}"} for n in range(12)]
    big = {**CARD_OBJECT, "linksModuleData": {"uris": links}}
    url = save_url(service_account, big, origins=["https://shop.example"])
    assert len(url) <= MAX_SAVE_URL_LENGTH
    claims = jwt.decode(
        url.removeprefix(SAVE_URL_PREFIX),
        service_account.private_key.public_key(),
        algorithms=["RS256"],
        audience="google",
    )
    assert claims["payload"]["loyaltyObjects"] == [
        {k: v for k, v in CARD_OBJECT.items() if k != "linksModuleData"}
    ]


def test_a_save_url_over_1800_characters_is_refused(service_account: ServiceAccount) -> None:
    origins = [f"https://shop-{n}.example" for n in range(60)]
    with pytest.raises(SaveUrlTooLong, match="over 1800"):
        save_url(service_account, CARD_OBJECT, origins=origins)

"""Save and delete callbacks, signed here the way Google signs them (ECv2SigningOnly) with a
root and an intermediate key of our own."""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.integrations.google_wallet.callbacks import (
    CallbackEvent,
    InvalidCallback,
    root_keys_from_json,
    verify_callback,
)
from tests.integrations.google_wallet.conftest import ISSUER_ID, FakeClock

NOW_MILLIS = 1_750_000_000_000
HOUR_MILLIS = 3_600_000
CLASS_ID = f"{ISSUER_ID}.shop-card"
OBJECT_ID = f"{ISSUER_ID}.0f3c9a7e5b1d4c2a8e6f"


def lv(*parts: str) -> bytes:
    """Written apart from the code under test: 4-byte little-endian length, then UTF-8."""
    return b"".join(struct.pack("<I", len(p.encode())) + p.encode() for p in parts)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def spki(key: ec.EllipticCurvePrivateKey) -> str:
    return b64(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> str:
    return b64(key.sign(data, ec.ECDSA(hashes.SHA256())))


@dataclass
class GoogleSigner:
    """Google's side of the protocol with keys of our own."""

    root: ec.EllipticCurvePrivateKey
    intermediate: ec.EllipticCurvePrivateKey
    sender_id: str = "GooglePayPasses"

    def root_keys(self, expires: int = NOW_MILLIS + 24 * HOUR_MILLIS) -> list[dict[str, str]]:
        return [
            {
                "keyValue": spki(self.root),
                "protocolVersion": "ECv2SigningOnly",
                "keyExpiration": str(expires),
            }
        ]

    def callback(
        self,
        *,
        event_type: str = "save",
        message_expires: int = NOW_MILLIS + HOUR_MILLIS,
        key_expires: int = NOW_MILLIS + HOUR_MILLIS,
        issuer_id: str = ISSUER_ID,
        message_key: ec.EllipticCurvePrivateKey | None = None,
        root_key: ec.EllipticCurvePrivateKey | None = None,
        message: dict[str, Any] | None = None,
    ) -> str:
        signed_key = json.dumps(
            {"keyValue": spki(self.intermediate), "keyExpiration": str(key_expires)}
        )
        signed_message = json.dumps(
            message
            if message is not None
            else {
                "classId": CLASS_ID,
                "objectId": OBJECT_ID,
                "expTimeMillis": message_expires,
                "eventType": event_type,
                "nonce": "9d2a4c6e-1b3f-4e5a-8c7d-0f1e2d3c4b5a",
            }
        )
        key_signature = sign(
            root_key or self.root, lv(self.sender_id, "ECv2SigningOnly", signed_key)
        )
        message_signature = sign(
            message_key or self.intermediate,
            lv(self.sender_id, issuer_id, "ECv2SigningOnly", signed_message),
        )
        return json.dumps(
            {
                "signature": message_signature,
                "intermediateSigningKey": {"signedKey": signed_key, "signatures": [key_signature]},
                "protocolVersion": "ECv2SigningOnly",
                "signedMessage": signed_message,
            }
        )


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def google() -> GoogleSigner:
    return GoogleSigner(root=new_key(), intermediate=new_key())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW_MILLIS / 1000)


def verify(google: GoogleSigner, body: str | bytes, clock: FakeClock, **options: Any) -> Any:
    options.setdefault("root_keys", google.root_keys())
    options.setdefault("issuer_id", ISSUER_ID)
    return verify_callback(body, clock=clock, **options)


@pytest.mark.parametrize("event_type", ["save", "del"])
def test_a_valid_callback_gives_its_event(
    google: GoogleSigner, clock: FakeClock, event_type: str
) -> None:
    event = verify(google, google.callback(event_type=event_type), clock)

    assert event == CallbackEvent(
        class_id=CLASS_ID,
        object_id=OBJECT_ID,
        event_type=event_type,  # type: ignore[arg-type]
        nonce="9d2a4c6e-1b3f-4e5a-8c7d-0f1e2d3c4b5a",
        expires_at_millis=NOW_MILLIS + HOUR_MILLIS,
    )


def test_bytes_and_parsed_bodies_are_accepted(google: GoogleSigner, clock: FakeClock) -> None:
    body = google.callback()
    assert verify(google, body.encode(), clock) == verify(google, json.loads(body), clock)


def test_the_rebranded_sender_id_is_accepted(clock: FakeClock) -> None:
    wallet = GoogleSigner(root=new_key(), intermediate=new_key(), sender_id="GoogleWalletPasses")
    assert verify(wallet, wallet.callback(), clock).event_type == "save"
    with pytest.raises(InvalidCallback, match="not signed by a Google root key"):
        verify(wallet, wallet.callback(), clock, sender_ids=["GooglePayPasses"])


def test_the_published_keys_document_loads(google: GoogleSigner, clock: FakeClock) -> None:
    document = json.dumps({"keys": google.root_keys()})
    keys = root_keys_from_json(document)
    assert verify(google, google.callback(), clock, root_keys=keys).object_id == OBJECT_ID
    for broken in ("{", '{"keys": 1}', "[1]"):
        with pytest.raises(ValueError, match="root keys"):
            root_keys_from_json(broken)


def test_an_expired_message_is_refused(google: GoogleSigner, clock: FakeClock) -> None:
    with pytest.raises(InvalidCallback, match="signed message has expired"):
        verify(google, google.callback(message_expires=NOW_MILLIS), clock)


def test_an_expired_intermediate_key_is_refused(google: GoogleSigner, clock: FakeClock) -> None:
    with pytest.raises(InvalidCallback, match="intermediate signing key has expired"):
        verify(google, google.callback(key_expires=NOW_MILLIS - 1), clock)


def test_an_intermediate_key_signed_by_a_stranger_is_refused(
    google: GoogleSigner, clock: FakeClock
) -> None:
    with pytest.raises(InvalidCallback, match="not signed by a Google root key"):
        verify(google, google.callback(root_key=new_key()), clock)


def test_a_message_signed_by_another_key_is_refused(google: GoogleSigner, clock: FakeClock) -> None:
    with pytest.raises(InvalidCallback, match="message signature does not verify"):
        verify(google, google.callback(message_key=new_key()), clock)


def test_a_message_for_another_issuer_is_refused(google: GoogleSigner, clock: FakeClock) -> None:
    body = google.callback(issuer_id="3388000000099999999")
    with pytest.raises(InvalidCallback, match="message signature does not verify"):
        verify(google, body, clock)


def test_a_tampered_message_is_refused(google: GoogleSigner, clock: FakeClock) -> None:
    body = json.loads(google.callback(event_type="save"))
    body["signedMessage"] = body["signedMessage"].replace('"save"', '"del"')
    with pytest.raises(InvalidCallback, match="message signature does not verify"):
        verify(google, json.dumps(body), clock)


def test_expired_or_foreign_root_keys_are_not_used(google: GoogleSigner, clock: FakeClock) -> None:
    body = google.callback()
    expired = google.root_keys(expires=NOW_MILLIS)
    other_protocol = [{**key, "protocolVersion": "ECv2"} for key in google.root_keys()]
    undated = [{k: v for k, v in key.items() if k != "keyExpiration"} for key in google.root_keys()]
    unreadable = [{**key, "keyValue": "bm90IGEga2V5"} for key in google.root_keys()]
    for keys in (expired, other_protocol, undated, unreadable, []):
        with pytest.raises(InvalidCallback, match="no unexpired Google root key"):
            verify(google, body, clock, root_keys=keys)


def test_any_one_good_root_key_is_enough(google: GoogleSigner, clock: FakeClock) -> None:
    stranger = GoogleSigner(root=new_key(), intermediate=new_key())
    keys = stranger.root_keys() + google.root_keys()
    assert verify(google, google.callback(), clock, root_keys=keys).event_type == "save"


def mutate(body: str, change: Any) -> str:
    parsed = json.loads(body)
    change(parsed)
    return json.dumps(parsed)


MALFORMED = [
    pytest.param(lambda g: "", id="empty"),
    pytest.param(lambda g: "{not json", id="not json"),
    pytest.param(lambda g: b"\xff\xfe", id="not utf-8"),
    pytest.param(lambda g: "[" * 100_000 + "]" * 100_000, id="deeply nested"),
    pytest.param(lambda g: "[]", id="a list"),
    pytest.param(lambda g: "{}", id="empty object"),
    pytest.param(
        lambda g: mutate(g.callback(), lambda b: b.update(protocolVersion="ECv1")), id="protocol"
    ),
    pytest.param(lambda g: mutate(g.callback(), lambda b: b.pop("signature")), id="no signature"),
    pytest.param(
        lambda g: mutate(g.callback(), lambda b: b.update(signature="***")), id="bad base64"
    ),
    pytest.param(
        lambda g: mutate(g.callback(), lambda b: b.update(signature=b64(b"not der"))),
        id="not a DER signature",
    ),
    pytest.param(
        lambda g: mutate(g.callback(), lambda b: b.update(signedMessage=7)), id="message type"
    ),
    pytest.param(
        lambda g: mutate(g.callback(), lambda b: b.update(intermediateSigningKey="k")),
        id="key not an object",
    ),
    pytest.param(
        lambda g: mutate(g.callback(), lambda b: b["intermediateSigningKey"].update(signatures=[])),
        id="no key signatures",
    ),
    pytest.param(
        lambda g: mutate(
            g.callback(), lambda b: b["intermediateSigningKey"].update(signatures=[1])
        ),
        id="key signature type",
    ),
    pytest.param(
        lambda g: mutate(
            g.callback(), lambda b: b["intermediateSigningKey"].update(signatures=["%%"])
        ),
        id="key signature base64",
    ),
    pytest.param(
        lambda g: mutate(g.callback(), lambda b: b["intermediateSigningKey"].pop("signedKey")),
        id="no signed key",
    ),
]


@pytest.mark.parametrize("make_body", MALFORMED)
def test_malformed_callbacks_are_refused_cleanly(
    google: GoogleSigner, clock: FakeClock, make_body: Any
) -> None:
    with pytest.raises(InvalidCallback):
        verify(google, make_body(google), clock)


class SignedAnyway(GoogleSigner):
    """Google's signatures over contents that are themselves malformed."""

    def with_signed_key(self, signed_key: str) -> str:
        signed_message = json.dumps({"classId": CLASS_ID})
        return json.dumps(
            {
                "signature": sign(
                    self.intermediate,
                    lv(self.sender_id, ISSUER_ID, "ECv2SigningOnly", signed_message),
                ),
                "intermediateSigningKey": {
                    "signedKey": signed_key,
                    "signatures": [
                        sign(self.root, lv(self.sender_id, "ECv2SigningOnly", signed_key))
                    ],
                },
                "protocolVersion": "ECv2SigningOnly",
                "signedMessage": signed_message,
            }
        )


@pytest.mark.parametrize(
    ("signed_key", "error"),
    [
        ("not json", "intermediate signing key is not JSON"),
        ("[1]", "intermediate signing key is not a JSON object"),
        ('{"keyValue": "x"}', "no expiration date"),
        ('{"keyValue": "x", "keyExpiration": "soon"}', "no expiration date"),
        ('{"keyValue": "bm90IGEga2V5", "keyExpiration": "9999999999999"}', "not a P-256"),
    ],
)
def test_a_signed_but_malformed_intermediate_key_is_refused(
    clock: FakeClock, signed_key: str, error: str
) -> None:
    signer = SignedAnyway(root=new_key(), intermediate=new_key())
    with pytest.raises(InvalidCallback, match=error):
        verify(signer, signer.with_signed_key(signed_key), clock)


def test_a_p384_intermediate_key_is_refused(clock: FakeClock) -> None:
    signer = SignedAnyway(root=new_key(), intermediate=new_key())
    p384 = ec.generate_private_key(ec.SECP384R1())
    signed_key = json.dumps({"keyValue": spki(p384), "keyExpiration": "9999999999999"})
    with pytest.raises(InvalidCallback, match="not a P-256"):
        verify(signer, signer.with_signed_key(signed_key), clock)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("not json", "not JSON"),
        (["a"], "not a JSON object"),
        ({"classId": CLASS_ID}, "lacks"),
        (
            {
                "classId": CLASS_ID,
                "objectId": OBJECT_ID,
                "expTimeMillis": NOW_MILLIS + HOUR_MILLIS,
                "eventType": "update",
                "nonce": "n",
            },
            "eventType",
        ),
        (
            {
                "classId": CLASS_ID,
                "objectId": OBJECT_ID,
                "expTimeMillis": True,
                "eventType": "save",
                "nonce": "n",
            },
            "lacks",
        ),
    ],
)
def test_a_signed_but_malformed_message_is_refused(
    google: GoogleSigner, clock: FakeClock, message: Any, error: str
) -> None:
    if isinstance(message, str):
        body = json.loads(google.callback())
        body["signedMessage"] = message
        body["signature"] = sign(
            google.intermediate, lv("GooglePayPasses", ISSUER_ID, "ECv2SigningOnly", message)
        )
        raw = json.dumps(body)
    else:
        raw = google.callback(message=message)
    with pytest.raises(InvalidCallback, match=error):
        verify(google, raw, clock)


def test_expiry_as_a_decimal_string_is_read(google: GoogleSigner, clock: FakeClock) -> None:
    message = {
        "classId": CLASS_ID,
        "objectId": OBJECT_ID,
        "expTimeMillis": str(NOW_MILLIS + 1),
        "eventType": "del",
        "nonce": "n",
    }
    event = verify(google, google.callback(message=message), clock)
    assert (event.event_type, event.expires_at_millis) == ("del", NOW_MILLIS + 1)

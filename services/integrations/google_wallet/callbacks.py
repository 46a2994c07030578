"""Verifying Google Wallet's save and delete callbacks (protocol ECv2SigningOnly).

The chain, as Tink's ``PaymentMethodTokenRecipient`` checks it:
1. one of ``intermediateSigningKey.signatures`` is an ECDSA-SHA256 signature, by a root key of
   this protocol that has not expired, over the length-prefixed (sender id, protocol version,
   ``signedKey``);
2. ``signedKey`` (JSON: ``keyValue``, ``keyExpiration``) has not expired;
3. ``signature`` is the intermediate key's signature over the length-prefixed (sender id, our
   issuer id, protocol version, ``signedMessage``);
4. ``signedMessage`` (JSON: ``classId``, ``objectId``, ``eventType``, ``nonce``,
   ``expTimeMillis``) has not expired.
Length-prefixed means each part as a 4-byte little-endian length followed by its UTF-8 bytes.

Google's pages name the sender ``GooglePayPasses``; pages revised for the Wallet rebrand say
``GoogleWalletPasses``. Both name Google's passes callbacks, so both are accepted by default.
Anything wrong raises ``InvalidCallback`` with a fixed message, never another exception.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

PROTOCOL_VERSION = "ECv2SigningOnly"
SENDER_IDS = ("GooglePayPasses", "GoogleWalletPasses")


CALLBACK_PATH = "/google/callbacks"
"""Where Google posts a merchant's save and delete callbacks (named in its Loyalty class)."""


class InvalidCallback(Exception):
    """The callback is not a well-formed, correctly signed, unexpired Google Wallet callback."""


@dataclass(frozen=True, slots=True)
class CallbackEvent:
    """A verified callback: the pass ``object_id`` was saved (``save``) or deleted (``del``).

    Google retries deliveries, so the same ``nonce`` can arrive more than once.
    """

    class_id: str
    object_id: str
    event_type: Literal["save", "del"]
    nonce: str
    expires_at_millis: int


def root_keys_from_json(document: str | bytes) -> list[dict[str, Any]]:
    """The entries of Google's published root keys (``{"keys": [...]}``, or a bare list)."""
    try:
        parsed = json.loads(document)
    except (ValueError, RecursionError) as exc:
        raise ValueError("the Google root keys are not JSON") from exc
    keys = parsed.get("keys") if isinstance(parsed, dict) else parsed
    if not isinstance(keys, list) or not all(isinstance(key, dict) for key in keys):
        raise ValueError('the Google root keys are not a list of keys (or {"keys": [...]})')
    return keys


def verify_callback(
    body: str | bytes | Mapping[str, Any],
    *,
    root_keys: Sequence[Mapping[str, Any]],
    issuer_id: str,
    sender_ids: Sequence[str] = SENDER_IDS,
    clock: Callable[[], float] = time.time,
) -> CallbackEvent:
    """The event a callback body carries, once its signatures and expiry dates check out."""
    now_millis = int(clock() * 1000)
    envelope = _envelope(body)
    intermediate = envelope["intermediateSigningKey"]
    signed_key: str = intermediate["signedKey"]
    key_signatures = [_b64(item) for item in intermediate["signatures"]]
    message_signature = _b64(envelope["signature"])
    signed_message: str = envelope["signedMessage"]
    roots = _usable_root_keys(root_keys, now_millis)
    if not roots:
        raise InvalidCallback("no unexpired Google root key for ECv2SigningOnly")

    for sender_id in sender_ids:
        key_bytes = _length_prefixed(sender_id, PROTOCOL_VERSION, signed_key)
        if not any(
            _verifies(root, signature, key_bytes) for root in roots for signature in key_signatures
        ):
            continue
        intermediate_key = _intermediate_key(signed_key, now_millis)
        message_bytes = _length_prefixed(sender_id, issuer_id, PROTOCOL_VERSION, signed_message)
        if not _verifies(intermediate_key, message_signature, message_bytes):
            raise InvalidCallback("the message signature does not verify for this issuer")
        return _event(signed_message, now_millis)
    raise InvalidCallback("the intermediate signing key is not signed by a Google root key")


def _envelope(body: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(body, str | bytes):
        try:
            body = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise InvalidCallback("the callback body is not JSON") from exc
    if not isinstance(body, Mapping):
        raise InvalidCallback("the callback body is not a JSON object")
    if body.get("protocolVersion") != PROTOCOL_VERSION:
        raise InvalidCallback("the callback's protocol version is not ECv2SigningOnly")
    intermediate = body.get("intermediateSigningKey")
    if not (
        isinstance(body.get("signature"), str)
        and isinstance(body.get("signedMessage"), str)
        and isinstance(intermediate, Mapping)
        and isinstance(intermediate.get("signedKey"), str)
        and isinstance(intermediate.get("signatures"), list)
        and intermediate["signatures"]
        and all(isinstance(item, str) for item in intermediate["signatures"])
    ):
        raise InvalidCallback("the callback lacks its signatures, signed key or signed message")
    return body


def _usable_root_keys(
    root_keys: Sequence[Mapping[str, Any]], now_millis: int
) -> list[ec.EllipticCurvePublicKey]:
    """Root keys of this protocol that have not expired. As in Tink, a key without an
    expiration date is not used, and an unreadable one is skipped like an expired one."""
    usable = []
    for entry in root_keys:
        if entry.get("protocolVersion") != PROTOCOL_VERSION:
            continue
        expires = _millis(entry.get("keyExpiration"))
        if expires is None or expires <= now_millis:
            continue
        key = _public_key(entry.get("keyValue"))
        if key is not None:
            usable.append(key)
    return usable


def _intermediate_key(signed_key: str, now_millis: int) -> ec.EllipticCurvePublicKey:
    try:
        fields = json.loads(signed_key)
    except (ValueError, RecursionError) as exc:
        raise InvalidCallback("the intermediate signing key is not JSON") from exc
    if not isinstance(fields, dict):
        raise InvalidCallback("the intermediate signing key is not a JSON object")
    expires = _millis(fields.get("keyExpiration"))
    if expires is None:
        raise InvalidCallback("the intermediate signing key has no expiration date")
    if expires <= now_millis:
        raise InvalidCallback("the intermediate signing key has expired")
    key = _public_key(fields.get("keyValue"))
    if key is None:
        raise InvalidCallback("the intermediate signing key is not a P-256 public key")
    return key


def _event(signed_message: str, now_millis: int) -> CallbackEvent:
    try:
        fields = json.loads(signed_message)
    except (ValueError, RecursionError) as exc:
        raise InvalidCallback("the signed message is not JSON") from exc
    if not isinstance(fields, dict):
        raise InvalidCallback("the signed message is not a JSON object")
    class_id = fields.get("classId")
    object_id = fields.get("objectId")
    event_type = fields.get("eventType")
    nonce = fields.get("nonce")
    expires = _millis(fields.get("expTimeMillis"))
    if not (
        isinstance(class_id, str)
        and isinstance(object_id, str)
        and isinstance(nonce, str)
        and nonce
        and expires is not None
    ):
        raise InvalidCallback("the signed message lacks classId, objectId, nonce or expTimeMillis")
    if event_type == "save":
        kind: Literal["save", "del"] = "save"
    elif event_type == "del":
        kind = "del"
    else:
        raise InvalidCallback('the signed message\'s eventType is neither "save" nor "del"')
    if expires <= now_millis:
        raise InvalidCallback("the signed message has expired")
    return CallbackEvent(class_id, object_id, kind, nonce, expires)


def _length_prefixed(*parts: str) -> bytes:
    """Tink's ``toLengthValue``: each part as a 4-byte little-endian length, then UTF-8.

    A lone surrogate (possible in JSON) is kept as is: such bytes then just fail to verify.
    """
    out = bytearray()
    for part in parts:
        encoded = part.encode("utf-8", "surrogatepass")
        out += struct.pack("<I", len(encoded)) + encoded
    return bytes(out)


def _verifies(key: ec.EllipticCurvePublicKey, signature: bytes | None, data: bytes) -> bool:
    """ECDSA-SHA256 with a DER-encoded signature, as Google signs."""
    if signature is None:
        return False
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def _b64(value: str) -> bytes | None:
    """Standard base64; None for anything else, which then simply fails to verify."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _public_key(value: object) -> ec.EllipticCurvePublicKey | None:
    """A base64 DER SubjectPublicKeyInfo holding a P-256 key, or None."""
    der = _b64(value) if isinstance(value, str) else None
    if der is None:
        return None
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        return None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        return None
    return key


def _millis(value: object) -> int | None:
    """Milliseconds since the epoch, sent as a decimal string (or, leniently, a JSON number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None

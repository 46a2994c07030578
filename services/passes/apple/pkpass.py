"""The .pkpass bundle: pass.json, images, localizations, manifest and detached signature."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from services.passes.apple import ziparchive
from services.passes.apple.signing import SigningMaterial

MEDIA_TYPE = "application/vnd.apple.pkpass"

REQUIRED_IMAGES = ("icon.png", "icon@2x.png", "icon@3x.png")
IMAGE_NAMES = frozenset(
    {
        f"{base}{scale}.png"
        for base in ("icon", "logo", "strip", "thumbnail")
        for scale in ("", "@2x", "@3x")
    }
)
"""Images a storeCard can show (thumbnail only on some styles, but harmless)."""

# storeCard limits (Apple's Wallet Developer Guide).
MAX_HEADER_FIELDS = 3
MAX_PRIMARY_FIELDS = 1
MAX_SECONDARY_AND_AUXILIARY = 4  # together, with a square (QR) barcode


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class StaticFiles:
    """The images every card of one design shares: hashed (SHA-1 for the manifest, CRC-32 for
    the ZIP) and laid out as the bundle's first ZIP records once per design, not once per pass.
    """

    sha1: Mapping[str, str]
    records: ziparchive.Records
    size: int
    """The images' bytes in all."""

    @classmethod
    def for_images(cls, images: Mapping[str, bytes]) -> StaticFiles:
        missing = [name for name in REQUIRED_IMAGES if name not in images]
        if missing:
            raise ValueError(f"a pass needs {', '.join(missing)}")
        return cls(
            sha1={name: _sha1(data) for name, data in images.items()},
            # PNGs are compressed already: storing them saves time and loses nothing.
            records=ziparchive.layout(
                ziparchive.Entry.stored(name, data) for name, data in images.items()
            ),
            size=sum(len(data) for data in images.values()),
        )


def rgb(hex_color: str) -> str:
    """``#RRGGBB`` as Wallet's ``rgb(r, g, b)``."""
    value = hex_color.lstrip("#")
    return f"rgb({int(value[0:2], 16)}, {int(value[2:4], 16)}, {int(value[4:6], 16)})"


def check_field_limits(store_card: Mapping[str, list[Any]]) -> None:
    """Refuse a front that Wallet would cut or reject."""
    if len(store_card.get("headerFields", [])) > MAX_HEADER_FIELDS:
        raise ValueError("a storeCard shows at most 3 header fields")
    if len(store_card.get("primaryFields", [])) > MAX_PRIMARY_FIELDS:
        raise ValueError("a storeCard shows at most 1 primary field")
    front = len(store_card.get("secondaryFields", [])) + len(store_card.get("auxiliaryFields", []))
    if front > MAX_SECONDARY_AND_AUXILIARY:
        raise ValueError(
            "with a QR code a storeCard shows at most 4 secondary and auxiliary fields"
        )
    keys = [f["key"] for fields in store_card.values() for f in fields]
    if len(keys) != len(set(keys)):
        raise ValueError("field keys must be unique across the pass")


_PASS_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_MANIFEST_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


@lru_cache(maxsize=4096)
def _localization(locale: str, strings: bytes) -> tuple[str, ziparchive.Entry]:
    """One language's pass.strings as the manifest (SHA-1) and the ZIP (deflated) take it.

    Cached like ``texts.pass_strings``: every version of a card that shows the same order
    repeats the same texts, so only a new order number deflates them again.
    """
    return _sha1(strings), ziparchive.Entry.deflated(f"{locale}.lproj/pass.strings", strings)


def build_pkpass(
    document: Mapping[str, Any],
    strings: Mapping[str, bytes],
    static: StaticFiles,
    signer: SigningMaterial,
) -> bytes:
    """Serialise, hash, sign and zip one pass; ``strings`` is each locale's pass.strings."""
    pass_json = _PASS_JSON.encode(document).encode("utf-8")
    localized = [_localization(locale, data) for locale, data in strings.items()]
    manifest = {
        "pass.json": _sha1(pass_json),
        **static.sha1,
        **{entry.name: digest for digest, entry in localized},
    }
    manifest_json = _MANIFEST_JSON.encode(manifest).encode("utf-8")
    signature = signer.sign(manifest_json)
    return ziparchive.archive(
        [
            ziparchive.Entry.deflated("pass.json", pass_json),
            *(entry for _, entry in localized),
            ziparchive.Entry.deflated("manifest.json", manifest_json),
            ziparchive.Entry.deflated("signature", signature),
        ],
        head=static.records,
    )

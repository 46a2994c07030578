"""Apple's rules for a Wallet order package, checked independently of the code that builds it.

From Apple's Wallet Orders documentation: the required keys of ``Order``, ``Merchant``,
``ShippingFulfillment`` and ``PickupFulfillment``, their allowed values, RFC 3339 dates, a
manifest with the SHA-256 of every other file, a detached PKCS#7 signature that OpenSSL's CMS
code verifies against the chain, the same keys in every ``xx.lproj/order.strings``, and an
``updatedAt`` that only rises from one version to the next.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import shutil
import subprocess
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

ORDER_REQUIRED = {
    "schemaVersion",
    "orderTypeIdentifier",
    "orderIdentifier",
    "orderType",
    "orderManagementURL",
    "status",
    "createdAt",
    "updatedAt",
    "merchant",
}
MERCHANT_REQUIRED = {"displayName", "merchantIdentifier", "url"}
ORDER_STATUSES = {"open", "completed", "cancelled"}
SHIPPING_REQUIRED = {"fulfillmentIdentifier", "fulfillmentType", "status"}
SHIPPING_STATUSES = {
    "open", "processing", "onTheWay", "outForDelivery",
    "delivered", "shipped", "issue", "cancelled",
}  # fmt: skip
PICKUP_REQUIRED = {"fulfillmentIdentifier", "fulfillmentType", "status", "displayName"}
PICKUP_STATUSES = {"open", "processing", "readyForPickup", "pickedUp", "issue", "cancelled"}
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
DATES = ("createdAt", "updatedAt")
FULFILLMENT_DATES = ("shippedAt", "deliveredAt", "estimatedDeliveryAt", "pickedUpAt", "pickupAt")
STRING = re.compile(r'^"((?:[^"\\]|\\.)*)" = "((?:[^"\\]|\\.)*)";$', re.M)


def _date(value: Any, where: str) -> datetime:
    assert isinstance(value, str), f"{where}: not a string: {value!r}"
    assert RFC3339.fullmatch(value), f"{where}: not RFC 3339: {value!r}"
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def check_document(order: dict[str, Any]) -> None:
    """order.json against Apple's schema (the keys we rely on)."""
    missing = ORDER_REQUIRED - order.keys()
    assert not missing, f"order.json lacks {sorted(missing)}"
    assert order["schemaVersion"] == 1
    assert order["orderType"] == "ecommerce"
    assert order["status"] in ORDER_STATUSES, order["status"]
    assert order["orderManagementURL"].startswith(("https://", "http://"))
    assert not MERCHANT_REQUIRED - order["merchant"].keys(), order["merchant"]
    for key in DATES:
        _date(order[key], key)
    assert _date(order["updatedAt"], "updatedAt") >= _date(order["createdAt"], "createdAt")
    if "authenticationToken" in order:
        assert len(order["authenticationToken"]) >= 16
        assert "webServiceURL" in order
    for item in order.get("lineItems", []):
        assert {"title", "quantity"} <= item.keys(), item
    for fulfillment in order.get("fulfillments", []):
        kind = fulfillment.get("fulfillmentType")
        required, statuses = {
            "shipping": (SHIPPING_REQUIRED, SHIPPING_STATUSES),
            "pickup": (PICKUP_REQUIRED, PICKUP_STATUSES),
        }[kind]
        assert not required - fulfillment.keys(), fulfillment
        assert fulfillment["status"] in statuses, fulfillment
        for key in FULFILLMENT_DATES:
            if key in fulfillment:
                _date(fulfillment[key], key)


def read_strings(data: bytes) -> dict[str, str]:
    text = data.decode("utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else data.decode()
    return dict(STRING.findall(text))


def check_package(package: bytes, root: Path, workdir: Path) -> dict[str, Any]:
    """Every rule for one package; its order.json."""
    archive = zipfile.ZipFile(io.BytesIO(package))
    names = set(archive.namelist())
    assert {"order.json", "manifest.json", "signature"} <= names, names
    manifest = json.loads(archive.read("manifest.json"))
    assert set(manifest) == names - {"manifest.json", "signature"}
    for name, digest in manifest.items():
        assert hashlib.sha256(archive.read(name)).hexdigest() == digest, name
    order: dict[str, Any] = json.loads(archive.read("order.json"))
    check_document(order)
    strings = {
        n: read_strings(archive.read(n)) for n in names if n.endswith(".lproj/order.strings")
    }
    keys = {frozenset(s) for s in strings.values()}
    assert len(keys) <= 1, "every order.strings holds the same keys"
    shown = [order.get("statusDescription")] + [
        f.get("statusDescription") for f in order.get("fulfillments", [])
    ]
    for key in filter(None, shown):
        assert all(key in s for s in strings.values()), f"{key} is not localized"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "manifest.json").write_bytes(archive.read("manifest.json"))
    (workdir / "signature").write_bytes(archive.read("signature"))
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to check signatures independently"
    verified = subprocess.run(
        [
            openssl, "cms", "-verify", "-binary", "-inform", "DER",
            "-in", workdir / "signature", "-content", workdir / "manifest.json",
            "-CAfile", root, "-purpose", "any", "-out", workdir / "out",
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    signed = subprocess.run(
        [openssl, "cms", "-cmsout", "-print", "-inform", "DER", "-in", workdir / "signature"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "signingTime" in signed.stdout, "Wallet wants the signing time"
    assert "Development WWDR" in signed.stdout, "the WWDR intermediate travels in the signature"
    return order


def check_rising(versions: list[dict[str, Any]]) -> None:
    """``updatedAt`` only ever rises (Apple: monotonically increasing), strictly per version."""
    moments = [_date(v["updatedAt"], "updatedAt") for v in versions]
    assert all(a < b for a, b in itertools.pairwise(moments)), moments

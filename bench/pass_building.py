"""Figure 1: signed .pkpass bundles per second on one core, beside the bare RSA-2048 signature.

The card is realistic: the current order with its items, total, carrier, tracking number and
estimated delivery, back fields with the four links and the support phone, the six
localizations, icon and logo at 1x/2x/3x (the default artwork). The work timed is exactly what
``PassBuilder`` does for a new version once the design's assets are cached: ``pass_document``,
``pass_strings_for`` and ``build_pkpass``. Building the same card again is a new version of a
card that shows the same order, so its pass.strings (texts and ZIP entries) come from the caches
every such version uses; ``new_order_number`` shows the bundle of a card whose order number is new
to the caches. The reference is the same private key signing a manifest-sized message with
PKCS#1 v1.5 and SHA-256, timed in the same process, in rounds that alternate with the bundle's, so
both see the same machine.
"""

from __future__ import annotations

import itertools
import os
import shutil
import struct
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bench.common import FULL_ORDER, OUT, Result, RunConfig, log, median
from services.core.settings import Settings
from services.passes.apple.devchain import ensure_dev_chain, ensure_pass_type_certificate
from services.passes.apple.document import pass_document, pass_strings_for
from services.passes.apple.pkpass import StaticFiles, build_pkpass
from services.passes.apple.signing import SigningFiles, SigningMaterial, load_signing_material
from services.passes.designs import DEFAULT_IMAGE_SIZES
from services.passes.models import Card, PassDesign
from services.passes.png import SIGNATURE, _chunk, badge_png

FIGURE = "pass_building"
TARGET_RATIO = 0.45
PASS_TYPE = "pass.dev.passpost.bench"
TEAM = "PASSPOST42"
BIG_IMAGES_BYTES = 500 * 1024


def _signer(keys: Path) -> SigningMaterial:
    chain = ensure_dev_chain(keys)
    files = ensure_pass_type_certificate(keys, PASS_TYPE, TEAM, "Bench Shop")
    return load_signing_material(
        SigningFiles(
            merchant="bench",
            pass_type_identifier=PASS_TYPE,
            team_identifier=TEAM,
            certificate_path=files.certificate,
            key_path=files.key,
            wwdr_path=chain.wwdr_certificate,
        )
    )


def _design() -> PassDesign:
    return PassDesign(
        id=uuid.uuid4(),
        merchant_id=uuid.uuid4(),
        pass_type_identifier=PASS_TYPE,
        team_identifier=TEAM,
        certificate_path="unused",
        key_path="unused",
        wwdr_path="unused",
        organization_name="Bench Shop",
        description="Bench Shop customer card",
        logo_text="Bench Shop",
        foreground_color="#FFFFFF",
        background_color="#1F2937",
        label_color="#D1D5DB",
        support_phone="+421 2 1234 5678",
        order_url_template="https://shop.example.com/orders/{order_id}",
        tracking_url_template="https://track.example.com/{tracking_number}",
        returns_url_template="https://shop.example.com/returns?order={order_number}",
        account_url_template="https://shop.example.com/account",
        texts={},
    )


def _card() -> Card:
    order = {
        "id": "A-1001",
        "revision": 3,
        "status": "shipped",
        "placed_at": "2026-11-23T10:15:00+00:00",
        "number": "1001",
        **FULL_ORDER,
    }
    return Card(
        id=uuid.uuid4(),
        merchant_id=uuid.uuid4(),
        pass_type_identifier=PASS_TYPE,
        customer_id="c-42",
        customer_name="Jana Nováková",
        locale="sk",
        serial_number=uuid.uuid4().hex,
        authentication_token="a" * 32,
        link_token="b" * 32,
        version=3,
        content={"orders": {"A-1001": order}},
    )


def _noise_png(width: int, height: int) -> bytes:
    """A valid RGB PNG of random pixels: photos and gradients compress about as badly."""
    rows = b"".join(b"\x00" + os.urandom(width * 3) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows, 1))
        + _chunk(b"IEND", b"")
    )


def default_images() -> dict[str, bytes]:
    return {
        name: badge_png(width, height, (0x1F, 0x29, 0x37))
        for name, (width, height) in DEFAULT_IMAGE_SIZES.items()
    }


def big_images() -> dict[str, bytes]:
    """The default icon and logo plus a strip at 1x/2x/3x: about 500 KiB in all."""
    images = default_images()
    budget = BIG_IMAGES_BYTES - sum(len(data) for data in images.values())
    unit = budget / 14  # 1x, 2x, 3x strips: 1 + 4 + 9 areas
    for scale, suffix in ((1, ""), (2, "@2x"), (3, "@3x")):
        width = 375 * scale
        height = max(1, round(unit * scale * scale / (width * 3)))
        images[f"strip{suffix}.png"] = _noise_png(width, height)
    return images


MANIFEST_SIZED = b'{"icon.png":"' + b"0" * 40 + b'"}' * 20
"""What the signatures sign: about a manifest's size."""


def _bare_signature(key: rsa.RSAPrivateKey) -> Callable[[], object]:
    def bare_sign() -> object:
        return key.sign(MANIFEST_SIZED, padding.PKCS1v15(), hashes.SHA256())

    return bare_sign


def bare_signing_rate(keys: Path, seconds: float) -> float:
    """Bare RSA-2048 signatures per second (figure 1's reference), for other figures' tables."""
    key = _signer(keys).private_key
    assert isinstance(key, rsa.RSAPrivateKey)
    return _rate(_bare_signature(key), seconds)


def _rate(work: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``work`` over about ``seconds`` (after one untimed call)."""
    work()
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        work()
        count += 1
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started)


async def run(cfg: RunConfig) -> list[Result]:
    keys = OUT / FIGURE / "keys"
    shutil.rmtree(keys.parent, ignore_errors=True)
    signer = _signer(keys)
    key = signer.private_key
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    design, card = _design(), _card()
    settings = Settings(public_base_url="https://passpost.example.com")
    statics = {
        "realistic": StaticFiles.for_images(default_images()),
        "images_500k": StaticFiles.for_images(big_images()),
    }
    sizes = {name: static.size for name, static in statics.items()}
    message = MANIFEST_SIZED
    bare_sign = _bare_signature(key)

    def pkcs7_only() -> object:
        return signer.sign(message)

    def bundle(static: StaticFiles) -> Callable[[], object]:
        def build() -> object:
            return build_pkpass(
                pass_document(design, card, settings),
                pass_strings_for(design, card),
                static,
                signer,
            )

        return build

    numbers = itertools.count(1_000_000)
    renumbered = _card()
    order = renumbered.content["orders"]["A-1001"]

    def bundle_of_new_order() -> object:
        order["number"] = str(next(numbers))  # a number no cache has seen
        return build_pkpass(
            pass_document(design, renumbered, settings),
            pass_strings_for(design, renumbered),
            statics["realistic"],
            signer,
        )

    seconds = 0.3 if cfg.quick else 1.0
    rounds = 1 if cfg.quick else 5
    series: dict[str, list[float]] = {
        "sign": [],
        "pkcs7": [],
        **{k: [] for k in statics},
        "new_order_number": [],
    }
    for _ in range(rounds):
        series["sign"].append(_rate(bare_sign, seconds))
        series["pkcs7"].append(_rate(pkcs7_only, seconds))
        for name, static in statics.items():
            series[name].append(_rate(bundle(static), seconds))
        series["new_order_number"].append(_rate(bundle_of_new_order, seconds))
    sign = median(series["sign"])
    log(
        f"{FIGURE}: sign {sign:.0f}/s, "
        + ", ".join(f"{k} {median(v):.0f}/s" for k, v in series.items() if k != "sign")
    )
    how = (
        f"one process, one thread, {rounds} alternating rounds of {seconds:g} s each "
        f"(bare signature, PKCS#7 alone, each bundle); medians, ratio = median of the per-round "
        f"ratios; RSA-2048 key of a development pass type certificate"
    )
    results = []
    for name, label in (
        (
            "realistic",
            "realistic card (pass.json with back fields, 6 localizations, "
            f"icon and logo at 1x/2x/3x: {sizes['realistic'] / 1024:.0f} KiB of images)",
        ),
        (
            "images_500k",
            f"realistic card with {sizes['images_500k'] / 1024:.0f} KiB of images "
            "(icon, logo and a photo-like strip at 1x/2x/3x), otherwise the same",
        ),
    ):
        per_round = [b / s for b, s in zip(series[name], series["sign"], strict=True)]
        value_ratio = median(per_round)
        results.append(
            Result(
                name=f"{FIGURE}.{name}",
                value=median(series[name]),
                unit="bundles/s",
                reference="bare RSA-2048 PKCS#1 v1.5 SHA-256 signatures/s, same key",
                reference_value=sign,
                ratio=value_ratio,
                target=f">= {TARGET_RATIO:.0%} of the bare signing rate",
                met=value_ratio >= TARGET_RATIO,
                method=f"Bundles of a {label}: pass_document + pass_strings_for + build_pkpass "
                f"(JSON, SHA-1 manifest, PKCS#7 detached signature with signing time and WWDR, "
                f"ZIP), as PassBuilder runs them per new version of a card that shows the same "
                f"order (its pass.strings from the caches); {how}.",
            )
        )
    results.append(
        Result(
            name=f"{FIGURE}.new_order_number",
            value=median(series["new_order_number"]),
            unit="bundles/s",
            reference="bare RSA-2048 PKCS#1 v1.5 SHA-256 signatures/s, same key",
            reference_value=sign,
            ratio=median(
                b / s for b, s in zip(series["new_order_number"], series["sign"], strict=True)
            ),
            target="none (where the time goes)",
            met=None,
            method=f"The realistic card with an order number new to every bundle: its six "
            f"pass.strings written, hashed and deflated again; {how}.",
        )
    )
    pkcs7 = median(series["pkcs7"])
    results.append(
        Result(
            name=f"{FIGURE}.pkcs7_signature_only",
            value=pkcs7,
            unit="signatures/s",
            reference="bare RSA-2048 PKCS#1 v1.5 SHA-256 signatures/s, same key",
            reference_value=sign,
            ratio=median(p / s for p, s in zip(series["pkcs7"], series["sign"], strict=True)),
            target="none (where the time goes)",
            met=None,
            method=f"SigningMaterial.sign alone (the PKCS#7 around the signature); {how}.",
        )
    )
    return results

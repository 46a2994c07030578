"""Pass designs: a merchant's Apple signing settings, branding, links and images."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.errors import Conflict, InvalidInput, NotConfigured, named_by_caller
from services.core.models import utcnow
from services.core.transaction import Slot
from services.merchants import wallet_orders as merchant_wallet_orders
from services.merchants.models import Merchant
from services.passes.apple.pkpass import IMAGE_NAMES, StaticFiles
from services.passes.apple.signing import SigningFiles, SigningMaterial, load_signing_material
from services.passes.models import Card, DesignImage, PassDesign
from services.passes.png import NotAPNG, badge_png, png_size
from services.passes.schemas import AppleSettings, Branding
from services.passes.texts import check_override
from services.passes.wallet_orders.settings import OrderSignerCache

DEFAULT_IMAGE_SIZES = {
    "icon.png": (29, 29),
    "icon@2x.png": (58, 58),
    "icon@3x.png": (87, 87),
    "logo.png": (50, 50),
    "logo@2x.png": (100, 100),
    "logo@3x.png": (150, 150),
}
MAX_IMAGE_BYTES = 2 * 1024 * 1024


def signing_files(merchant: Merchant, design: PassDesign) -> SigningFiles:
    return SigningFiles(
        merchant=merchant.slug,
        pass_type_identifier=design.pass_type_identifier,
        team_identifier=design.team_identifier,
        certificate_path=Path(design.certificate_path),
        key_path=Path(design.key_path),
        wwdr_path=Path(design.wwdr_path),
    )


def _hex_to_rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


async def create_design(
    session: AsyncSession,
    merchant: Merchant,
    apple: AppleSettings,
    branding: Branding | None = None,
) -> PassDesign:
    """A merchant's design with checked signing material and default artwork."""
    design = PassDesign(
        merchant_id=merchant.id,
        organization_name=merchant.name,
        description=f"{merchant.name} customer card",
        **apple.model_dump(),
    )
    if branding is not None:
        for field, value in branding.model_dump(exclude_unset=True).items():
            setattr(design, field, value)
    load_signing_material(signing_files(merchant, design))
    session.add(design)
    await session.flush()
    background = _hex_to_rgb(design.background_color or "#1F2937")
    for name, (width, height) in DEFAULT_IMAGE_SIZES.items():
        session.add(
            DesignImage(
                design_id=design.id, name=name, content=badge_png(width, height, background)
            )
        )
    await session.flush()
    return design


_DESIGNS = Slot[dict[uuid.UUID, PassDesign]](
    "design of each merchant", dict, forget_at_savepoint_rollback=True
)
"""Read once per transaction: a consumer's batch issues and changes many cards of a few
merchants. (Forgotten at a savepoint's rollback, which may have undone a design made in it.)"""


async def get_design(session: AsyncSession, merchant: Merchant) -> PassDesign:
    """The merchant's design, or ``NotConfigured`` while it has none."""
    designs = _DESIGNS.get(session)
    if (design := designs.get(merchant.id)) is not None:
        return design
    query = select(PassDesign).where(PassDesign.merchant_id == merchant.id)
    if not any(isinstance(pending, PassDesign) for pending in session.new):
        # The read needs none of the caller's changes written first: a consumer's batch would
        # otherwise write its first card here, and then again with the rest.
        query = query.execution_options(autoflush=False)
    design = await session.scalar(query)
    if design is None:
        raise NotConfigured(
            f"merchant {merchant.slug!r} has no pass design: set its Apple settings first "
            f"(passpost designs apple --merchant {merchant.slug} ...)",
            merchant=merchant.slug,
        )
    designs[merchant.id] = design
    return design


async def update_apple(
    session: AsyncSession, merchant: Merchant, design: PassDesign, apple: AppleSettings
) -> PassDesign:
    """Switch signing material; the new files are checked before anything is saved.

    Devices know a pass by its pass type id, so it cannot change once cards exist.
    """
    if apple.pass_type_identifier != design.pass_type_identifier and await session.scalar(
        select(Card.id).where(Card.merchant_id == merchant.id).limit(1)
    ):
        raise Conflict(
            f"merchant {merchant.slug!r} has cards of {design.pass_type_identifier!r}: "
            "its pass type id cannot change (renew the certificate of the same pass type)"
        )
    candidate = PassDesign(**{**_apple_of(design), **apple.model_dump()})
    with named_by_caller():
        load_signing_material(signing_files(merchant, candidate))
    for field, value in apple.model_dump().items():
        setattr(design, field, value)
    await session.flush()
    return design


APNS_KEY_ID = re.compile(r"[A-Z0-9]{10}")


def check_apns_token_key(merchant: Merchant, key_path: Path, key_id: str) -> str:
    """The key file's absolute path once it holds a P-256 key; a clear error otherwise."""
    if not APNS_KEY_ID.fullmatch(key_id):
        raise InvalidInput("apns.key_id: the 10-character key id from Apple's portal")

    def problem(what: str) -> NotConfigured:
        return NotConfigured(
            f"merchant {merchant.slug!r}: apns.token_key_path ({key_path}): {what}",
            setting="apns.token_key_path",
            path=str(key_path),
        )

    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except OSError as exc:
        raise problem(f"cannot be read ({exc.strerror})") from None
    except (ValueError, TypeError):
        raise problem("not a P-256 .p8 key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise problem("not a P-256 .p8 key")
    return str(key_path.resolve())


async def set_apns_token_key(
    session: AsyncSession, merchant: Merchant, design: PassDesign, key_path: Path, key_id: str
) -> PassDesign:
    """Push with a .p8 token key (ES256) instead of the pass type certificate."""
    with named_by_caller():
        design.apns_token_key_path = check_apns_token_key(merchant, key_path, key_id)
    design.apns_token_key_id = key_id
    await session.flush()
    return design


def _apple_of(design: PassDesign) -> dict[str, str]:
    return {field: getattr(design, field) for field in AppleSettings.model_fields}


async def update_branding(
    session: AsyncSession, design: PassDesign, branding: Branding
) -> PassDesign:
    for field, value in branding.model_dump(exclude_unset=True).items():
        setattr(design, field, value)
    await session.flush()
    return design


async def set_text(
    session: AsyncSession, design: PassDesign, locale: str, key: str, value: str | None
) -> PassDesign:
    """The merchant's own wording of one text in one language; ``None`` restores ours."""
    if value is not None:
        try:
            check_override(locale, key, value)
        except ValueError as exc:
            raise InvalidInput(str(exc), locale=locale, key=key) from None
    texts = {code: dict(entries) for code, entries in (design.texts or {}).items()}
    if value is None:
        texts.get(locale, {}).pop(key, None)
    else:
        texts.setdefault(locale, {})[key] = value
    design.texts = {code: entries for code, entries in texts.items() if entries}
    await session.flush()
    return design


def check_image(name: str, data: bytes) -> None:
    if name not in IMAGE_NAMES:
        raise InvalidInput(
            f"unknown image name {name!r}; use one of {', '.join(sorted(IMAGE_NAMES))}", name=name
        )
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidInput(f"{name} is larger than 2 MiB", name=name)
    try:
        png_size(data)
    except NotAPNG as exc:
        raise InvalidInput(f"{name}: {exc}", name=name) from None


async def set_image(session: AsyncSession, design: PassDesign, name: str, data: bytes) -> None:
    check_image(name, data)
    image = await session.get(DesignImage, (design.id, name))
    if image is None:
        session.add(DesignImage(design_id=design.id, name=name, content=data))
    else:
        image.content = data
    design.updated_at = utcnow()  # invalidates DesignAssetCache entries in every process
    await session.flush()


@dataclass(frozen=True, slots=True)
class DesignAssets:
    signer: SigningMaterial
    static: StaticFiles


class DesignAssetCache:
    """Signing material and hashed static files per design, rebuilt when the design changes.

    The key includes the files' modification times, so a renewed certificate dropped in place is
    picked up without a restart.
    """

    def __init__(self) -> None:
        self._entries: dict[uuid.UUID, tuple[tuple[object, ...], DesignAssets]] = {}

    async def get(
        self, session: AsyncSession, merchant: Merchant, design: PassDesign
    ) -> DesignAssets:
        files = signing_files(merchant, design)
        key = (
            design.updated_at,
            *(_mtime(p) for p in (files.certificate_path, files.key_path, files.wwdr_path)),
        )
        cached = self._entries.get(design.id)
        if cached is not None and cached[0] == key:
            return cached[1]
        images = {
            image.name: image.content
            for image in await session.scalars(
                select(DesignImage).where(DesignImage.design_id == design.id)
            )
        }
        try:
            static = StaticFiles.for_images(images)
        except ValueError as exc:
            raise NotConfigured(
                f"merchant {merchant.slug!r}: {exc}", merchant=merchant.slug
            ) from None
        assets = DesignAssets(signer=load_signing_material(files), static=static)
        self._entries[design.id] = (key, assets)
        return assets


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


async def design_problems(
    session: AsyncSession,
    cache: DesignAssetCache | None = None,
    orders: OrderSignerCache | None = None,
) -> list[NotConfigured]:
    """Every merchant whose signing material or images are unusable, with what is wrong: its
    pass material, and its Order Type ID material while it has Wallet Orders on.

    One merchant's broken material stops only that merchant's passes (their builds answer 503),
    so the server starts anyway and reports these; ``cache`` and ``orders`` (the builder's)
    keep a recheck down to a query and a ``stat`` per file while nothing changed.
    """
    problems = []
    rows = await session.execute(
        select(Merchant, PassDesign).join(PassDesign, PassDesign.merchant_id == Merchant.id)
    )
    cache = cache or DesignAssetCache()
    orders = orders or OrderSignerCache()
    for merchant, design in rows:
        try:
            await cache.get(session, merchant, design)
        except NotConfigured as exc:
            problems.append(exc)
        if merchant_wallet_orders.enabled(merchant) and merchant.order_type_identifier:
            try:
                orders.get(merchant, design, merchant.order_type_identifier)
            except NotConfigured as exc:
                problems.append(exc)
    return problems


async def check_designs(session: AsyncSession) -> list[str]:
    """Every merchant's signing material and images, checked; one line per problem."""
    return [problem.message for problem in await design_problems(session)]

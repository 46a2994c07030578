"""The passes service's part of the admin API: a merchant's pass design and its cards."""

from __future__ import annotations

from services.contracts.cards import CardLinks
from services.core.admin import AdminSettings, admin_file, admin_router
from services.core.db import Session
from services.core.errors import Conflict, InvalidInput, NotConfigured, NotFound
from services.core.settings import Settings
from services.merchants import service as merchants
from services.merchants.schemas import SlugPath
from services.passes import designs, issuing, locations
from services.passes.schemas import AppleSettings, Branding, CardIssue, StoreLocations

router = admin_router()
_missing = NotFound.openapi("No such merchant")


@router.put(
    "/merchants/{slug}/apple",
    status_code=204,
    responses={
        **_missing,
        **Conflict.openapi(),
        **InvalidInput.openapi("A named file is unusable, or outside the admin files directory"),
        **NotConfigured.openapi(),
    },
)
async def set_apple(
    slug: SlugPath, body: AppleSettings, session: Session, settings: AdminSettings
) -> None:
    merchant = await merchants.get_merchant_by_slug(session, slug)
    design = await designs.get_design(session, merchant)
    await designs.update_apple(session, merchant, design, apple_files(settings, body, ("body",)))


def apple_files(settings: Settings, apple: AppleSettings, at: tuple[str, ...]) -> AppleSettings:
    """``apple`` with its files resolved in the admin files directory (422 for one outside)."""
    fields = ("certificate_path", "key_path", "wwdr_path")
    return apple.model_copy(
        update={f: admin_file(settings, getattr(apple, f), field=(*at, f)) for f in fields}
    )


@router.patch("/merchants/{slug}/branding", status_code=204, responses=_missing)
async def set_branding(slug: SlugPath, body: Branding, session: Session) -> None:
    merchant = await merchants.get_merchant_by_slug(session, slug)
    await designs.update_branding(session, await designs.get_design(session, merchant), body)


@router.post("/merchants/{slug}/cards", response_model=CardLinks, responses=_missing)
async def issue_card(
    slug: SlugPath, body: CardIssue, session: Session, settings: AdminSettings
) -> CardLinks:
    """A card without an order (the orders API issues them with the first order)."""
    merchant = await merchants.get_merchant_by_slug(session, slug)
    card = await issuing.issue_card(session, merchant, body, settings.resolved_secret_key())
    return issuing.links_of(merchant, card, settings)


@router.get(
    "/merchants/{slug}/locations",
    response_model=StoreLocations,
    responses={**_missing, **NotConfigured.openapi()},
)
async def list_locations(slug: SlugPath, session: Session) -> StoreLocations:
    """The merchant's stores, as its cards carry them."""
    merchant = await merchants.get_merchant_by_slug(session, slug)
    design = await designs.get_design(session, merchant)
    return StoreLocations.model_validate({"locations": design.locations or []})


@router.put(
    "/merchants/{slug}/locations",
    response_model=StoreLocations,
    responses={**_missing, **NotConfigured.openapi()},
)
async def set_locations(slug: SlugPath, body: StoreLocations, session: Session) -> StoreLocations:
    """Replace the merchant's stores (at most 10): near one, Apple Wallet shows the card on the
    lock screen with its relevant text (a shown offer's title instead while there is one), and
    Google Wallet may notify. Every card gets a new version carrying them, without a
    notification."""
    merchant = await merchants.get_merchant_by_slug(session, slug)
    design = await designs.get_design(session, merchant)
    await locations.set_locations(session, design, body.locations)
    return body


@router.delete(
    "/merchants/{slug}/locations",
    status_code=204,
    responses={**_missing, **NotConfigured.openapi()},
)
async def clear_locations(slug: SlugPath, session: Session) -> None:
    """No stores on the merchant's cards any more (every card gets a new version)."""
    merchant = await merchants.get_merchant_by_slug(session, slug)
    await locations.set_locations(session, await designs.get_design(session, merchant), [])

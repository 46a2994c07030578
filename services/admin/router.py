"""The admin API for ops: merchants, their keys and signing secret, onboarding and Google
Wallet, behind the admin token (a merchant's design and cards are the passes service's own
admin routes, ``services/passes/admin.py``).

The same operations as the ``passpost`` command, for automation. Nothing here ever returns a key,
a token or a secret other than the one it has just made.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from services.admin.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    GoogleSettings,
    GoogleSettingsRead,
    MerchantOnboard,
    MerchantOnboarded,
    SigningSecret,
    SigningSecretChange,
)
from services.core.admin import AdminSettings, admin_file, admin_router
from services.core.db import Session
from services.core.errors import Conflict, InvalidInput, NotConfigured, NotFound
from services.merchants import google_wallet, journeys, marketing
from services.merchants import service as merchants
from services.merchants.journeys import JourneyChange, JourneyName, JourneyRead
from services.merchants.marketing import MarketingChange, MarketingSettings
from services.merchants.schemas import MerchantCreate, MerchantRead, SlugPath
from services.onboarding import onboard_merchant
from services.passes import changes
from services.passes.admin import apple_files

router = admin_router()
_missing = NotFound.openapi("No such merchant")


@router.post(
    "/merchants",
    status_code=201,
    response_model=MerchantOnboarded,
    responses={**Conflict.openapi(), **InvalidInput.openapi(), **NotConfigured.openapi()},
)
async def create_merchant(
    body: MerchantOnboard, session: Session, settings: AdminSettings
) -> MerchantOnboarded:
    onboarded = await onboard_merchant(
        session,
        settings,
        MerchantCreate(slug=body.slug, name=body.name, default_locale=body.default_locale),
        body.apple and apple_files(settings, body.apple, ("body", "apple")),
        body.branding,
    )
    return MerchantOnboarded(
        merchant=MerchantRead.model_validate(onboarded.merchant),
        api_key=onboarded.api_key,
        pass_type_identifier=onboarded.design.pass_type_identifier,
    )


@router.get("/merchants", response_model=list[MerchantRead])
async def list_merchants(session: Session) -> list[MerchantRead]:
    return [MerchantRead.model_validate(m) for m in await merchants.list_merchants(session)]


@router.get("/merchants/{slug}", response_model=MerchantRead, responses=_missing)
async def read_merchant(slug: SlugPath, session: Session) -> MerchantRead:
    return MerchantRead.model_validate(await merchants.get_merchant_by_slug(session, slug))


@router.post(
    "/merchants/{slug}/api-keys", status_code=201, response_model=ApiKeyCreated, responses=_missing
)
async def create_api_key(slug: SlugPath, body: ApiKeyCreate, session: Session) -> ApiKeyCreated:
    merchant = await merchants.get_merchant_by_slug(session, slug)
    revoked = await merchants.revoke_api_keys(session, merchant) if body.revoke_others else 0
    return ApiKeyCreated(api_key=await merchants.create_api_key(session, merchant), revoked=revoked)


@router.put("/merchants/{slug}/signing-secret", response_model=SigningSecret, responses=_missing)
async def change_signing_secret(
    slug: SlugPath, body: SigningSecretChange, session: Session
) -> SigningSecret:
    merchant = await merchants.get_merchant_by_slug(session, slug)
    secret = await merchants.rotate_signing_secret(session, merchant, enable=body.enabled)
    return SigningSecret(signing_secret=secret)


@router.put(
    "/merchants/{slug}/google",
    response_model=GoogleSettingsRead,
    responses={**_missing, **InvalidInput.openapi(), **NotConfigured.openapi()},
)
async def set_google(
    slug: SlugPath, body: GoogleSettings, session: Session, settings: AdminSettings
) -> GoogleSettingsRead:
    account_file = admin_file(
        settings, body.service_account_file, field=("body", "service_account_file")
    )
    merchant = await merchants.get_merchant_by_slug(session, slug)
    await google_wallet.configure(
        session,
        merchant,
        issuer_id=body.issuer_id,
        service_account_file=Path(account_file),
        origins=body.origins,
    )
    announced = await changes.announce_all(session, merchant)
    return GoogleSettingsRead(
        issuer_id=body.issuer_id, origins=body.origins, cards_announced=announced
    )


@router.get("/merchants/{slug}/marketing", response_model=MarketingSettings, responses=_missing)
async def read_marketing(slug: SlugPath, session: Session) -> MarketingSettings:
    """How often the merchant's cards may notify offers, and when not (defaults if never set)."""
    return marketing.settings_of(await merchants.get_merchant_by_slug(session, slug))


@router.patch(
    "/merchants/{slug}/marketing",
    response_model=MarketingSettings,
    responses=_missing,
)
async def change_marketing(
    slug: SlugPath, body: MarketingChange, session: Session
) -> MarketingSettings:
    """Change some marketing settings; fields left out stay, ``null`` resets one to its default.
    They apply to the next marketing decisions; order statuses never depend on them."""
    merchant = await merchants.get_merchant_by_slug(session, slug)
    try:
        return await marketing.update_marketing(session, merchant, body.changes())
    except ValidationError as exc:  # the change does not fit the settings it joins
        raise _in_body(exc) from None


@router.get("/merchants/{slug}/journeys", response_model=list[JourneyRead], responses=_missing)
async def list_journeys(slug: SlugPath, session: Session) -> list[JourneyRead]:
    """Every journey of the merchant with its settings (defaults where never set)."""
    merchant = await merchants.get_merchant_by_slug(session, slug)
    return [
        JourneyRead(journey=name, settings=settings)
        for name, settings in journeys.journeys_of(merchant).items()
    ]


@router.get("/merchants/{slug}/journeys/{journey}", response_model=JourneyRead, responses=_missing)
async def read_journey(slug: SlugPath, journey: JourneyName, session: Session) -> JourneyRead:
    """One journey's settings."""
    merchant = await merchants.get_merchant_by_slug(session, slug)
    return JourneyRead(journey=journey, settings=journeys.journeys_of(merchant)[journey])


@router.patch(
    "/merchants/{slug}/journeys/{journey}", response_model=JourneyRead, responses=_missing
)
async def change_journey(
    slug: SlugPath, journey: JourneyName, body: JourneyChange, session: Session
) -> JourneyRead:
    """Change one journey: fields left out stay, ``null`` resets one to its default. Steps
    already scheduled keep their due time; their words and offer are taken when they are due."""
    merchant = await merchants.get_merchant_by_slug(session, slug)
    try:
        settings = await journeys.update_journey(session, merchant, journey, body.changes())
    except ValidationError as exc:  # the change does not fit the settings it joins
        raise _in_body(exc) from None
    return JourneyRead(journey=journey, settings=settings)


def _in_body(exc: ValidationError) -> RequestValidationError:
    """A settings model's error as the 422 of the request body it came from."""
    return RequestValidationError(
        [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
    )

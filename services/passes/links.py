"""The customer-facing links of a card: unguessable, one card each, working from the moment
the shop has them (``issuing.card_behind_link`` issues a card its shop's event has not made
yet)."""

from __future__ import annotations

from email.utils import format_datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from services.contracts.cards import GOOGLE_LINK_SUFFIX, LINK_PATH, LINK_TOKEN
from services.core.db import Session, public_base_url
from services.core.errors import NotConfigured, NotFound
from services.core.settings import Settings
from services.core.web import AppSettings
from services.merchants import google_wallet as merchant_google
from services.merchants import wallet_orders as merchant_wallet_orders
from services.merchants.models import Merchant
from services.passes import landing
from services.passes.apple.pkpass import MEDIA_TYPE
from services.passes.bundles import PassBuilder, SignedPass
from services.passes.card_view import current_order
from services.passes.designs import get_design
from services.passes.google_wallet import object_body
from services.passes.issuing import card_behind_link, links_of
from services.passes.models import Card, DesignImage, PassDesign

router = APIRouter(prefix=LINK_PATH, tags=["customer links"])


async def get_pass_builder(request: Request) -> PassBuilder:
    builder: PassBuilder = request.app.state.pass_builder
    return builder


Builder = Annotated[PassBuilder, Depends(get_pass_builder)]


LinkToken = Annotated[
    str,
    Path(
        description="The card's link token; any other is a 404",
        json_schema_extra={"type": "string", "pattern": f"^{LINK_TOKEN.pattern}$"},
    ),
]


async def linked_card(
    link_token: LinkToken,
    session: Session,
    settings: AppSettings,
    accept_language: Annotated[str, Header()] = "",
) -> Card:
    """The card behind the link, issued now if need be, in the visitor's language."""
    return await card_behind_link(
        session,
        link_token,
        settings.resolved_secret_key(),
        locale=landing.locale_of(accept_language),
    )


LinkedCard = Annotated[Card, Depends(linked_card)]


def pkpass_response(signed: SignedPass) -> Response:
    return Response(
        content=signed.content,
        media_type=MEDIA_TYPE,
        headers={
            "Last-Modified": format_datetime(signed.changed_at, usegmt=True),
            "Content-Disposition": 'attachment; filename="card.pkpass"',
            "Cache-Control": "private, no-cache",
        },
    )


@router.get(
    "/{link_token}/pass.pkpass",
    response_class=Response,
    responses={
        200: {"content": {MEDIA_TYPE: {}}, "description": "The signed card"},
        **NotFound.openapi("No card behind this link"),
        **NotConfigured.openapi("The merchant's signing material is unusable"),
    },
)
async def download_pass(session: Session, builder: Builder, card: LinkedCard) -> Response:
    return pkpass_response(await builder.signed_pass(session, card))


@router.get(
    "/{link_token}" + GOOGLE_LINK_SUFFIX,
    status_code=303,
    response_class=RedirectResponse,
    responses={
        303: {"description": "To Google's save page, with the card's object signed in"},
        **NotFound.openapi("No card behind this link"),
        **NotConfigured.openapi("The merchant's Google Wallet key cannot sign"),
    },
)
async def save_to_google(session: Session, card: LinkedCard) -> Response:
    """The Google save link, signed now with the card as it is now, so Google can create the
    object even before push has inserted it (what Google's Wallet team advises for links in
    mail: google-wallet/rest-samples#8)."""
    merchant = await session.get_one(Merchant, card.merchant_id)
    url = None
    if merchant_google.signs_save_links(merchant):
        design = await get_design(session, merchant)
        url = merchant_google.save_link(
            merchant, object_body(merchant, design, card, public_base_url(session))
        )
    if url is None:
        raise NotConfigured(
            f"merchant {merchant.slug!r}: Google Wallet cannot sign save links",
            setting="google.service_account_file",
        )
    return RedirectResponse(url, status_code=303, headers=LINK_HEADERS)


@router.get(
    "/{link_token}",
    response_class=HTMLResponse,
    responses={
        200: {"description": "The add-to-wallet page"},
        404: {"description": "No card behind this link", "content": {"text/html": {}}},
    },
)
async def landing_page(
    link_token: LinkToken,
    session: Session,
    settings: AppSettings,
    accept_language: Annotated[str, Header()] = "",
    user_agent: Annotated[str, Header()] = "",
) -> HTMLResponse:
    """The page a shop links from its thank-you page: add the card to Apple or Google Wallet.

    A customer opens it in a browser, so a wrong link is a page too, not JSON."""
    try:
        card = await linked_card(link_token, session, settings, accept_language)
    except NotFound:
        return HTMLResponse(landing.NOT_FOUND_PAGE, status_code=404, headers=LANDING_HEADERS)
    merchant = await session.get_one(Merchant, card.merchant_id)
    design = await get_design(session, merchant)
    links = links_of(merchant, card, settings)
    page = landing.render(
        merchant,
        design,
        card,
        page_url=links.landing_url,
        apple_url=links.apple_pass_url,
        google_url=links.google_save_url,
        logo_url=f"{settings.base_url()}/assets/{merchant.slug}/logo@2x.png",
        platform=landing.platform_of(user_agent),
        order_url=_latest_wallet_order(merchant, card, settings),
    )
    return HTMLResponse(page, headers=LANDING_HEADERS)


def _latest_wallet_order(merchant: Merchant, card: Card, settings: Settings) -> str | None:
    """The package link of the order the card shows, while the merchant has Wallet Orders on."""
    order = current_order(card.content)
    if order is None:
        return None
    links = merchant_wallet_orders.wallet_order_of(merchant, str(order["id"]), settings)
    return links.url if links is not None else None


LINK_HEADERS = {"Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer"}
"""A redirect carrying a signed link: never cached, never passed on as a referrer."""
LANDING_HEADERS = {
    "Cache-Control": "private, no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
}


assets = APIRouter(prefix="/assets", tags=["customer links"])


@assets.get("/{merchant_slug}/{name}", response_class=Response, responses=NotFound.openapi())
async def design_image(merchant_slug: str, name: str, session: Session) -> Response:
    """A merchant's card images, public (Google Wallet fetches the logo from here)."""
    image = await session.scalar(
        select(DesignImage)
        .join(PassDesign, PassDesign.id == DesignImage.design_id)
        .join(Merchant, Merchant.id == PassDesign.merchant_id)
        .where(Merchant.slug == merchant_slug, DesignImage.name == name)
    )
    if image is None:
        raise NotFound("no such image")
    return Response(
        image.content, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"}
    )

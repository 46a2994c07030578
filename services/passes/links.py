"""The customer-facing links of a card: unguessable, one card each."""

from __future__ import annotations

from email.utils import format_datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from services.core.db import Session
from services.core.errors import NotConfigured, NotFound
from services.passes.apple.pkpass import MEDIA_TYPE
from services.passes.cards import LINK_PATH, PassBuilder, SignedPass, get_card_by_link

router = APIRouter(prefix=LINK_PATH, tags=["customer links"])


def get_pass_builder(request: Request) -> PassBuilder:
    builder: PassBuilder = request.app.state.pass_builder
    return builder


Builder = Annotated[PassBuilder, Depends(get_pass_builder)]


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
async def download_pass(link_token: str, session: Session, builder: Builder) -> Response:
    card = await get_card_by_link(session, link_token)
    return pkpass_response(await builder.signed_pass(session, card))

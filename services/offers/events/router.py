"""``POST /v1/events`` and ``POST /v1/events:batch``: the shop's events about its customers,
authenticated like the rest of the shop API (``merchants.api``)."""

from __future__ import annotations

from fastapi import APIRouter

from services.contracts.shop_api import BatchIn, BatchResult, answer_batch
from services.contracts.shop_events import ShopEventBody, ShopEventIn
from services.core.db import Session
from services.core.errors import Conflict, InvalidInput, PasspostError, Unauthorized
from services.core.web import AppSettings
from services.merchants.api import CurrentMerchant
from services.offers.events import service
from services.offers.events.schemas import ShopEventAccepted

router = APIRouter(prefix="/v1", tags=["events"], responses=Unauthorized.openapi())
_errors = {**Conflict.openapi(), **InvalidInput.openapi()}


@router.post("/events", status_code=202, response_model=ShopEventAccepted, responses=_errors)
async def post_event(
    body: ShopEventBody, merchant: CurrentMerchant, session: Session, settings: AppSettings
) -> ShopEventAccepted:
    """Tell us what a customer did: signed up, left or recovered a cart, watches a product,
    a watched price dropped, a trial is ending. The same ``id`` with the same body answers
    the same (``duplicate`` true); another body under it is 409."""
    (outcome,) = await service.ingest_events(session, merchant, [body.root], settings)
    if isinstance(outcome, PasspostError):
        raise outcome
    return outcome


@router.post("/events:batch", response_model=BatchResult)
async def post_events(
    batch: BatchIn, merchant: CurrentMerchant, session: Session, settings: AppSettings
) -> BatchResult:
    """Up to 500 events, each accepted and answered on its own (``status`` per event)."""

    async def ingest(events: list[ShopEventIn]) -> list[ShopEventAccepted | PasspostError]:
        return await service.ingest_events(session, merchant, events, settings)

    return await answer_batch(batch, _validate, ingest)


def _validate(raw: object) -> ShopEventIn:
    return ShopEventBody.model_validate(raw).root

"""The orders API for e-shop backends: thin endpoints over ``services.orders.service``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from services.contracts.shop_api import BatchIn, BatchResult, answer_batch
from services.core.db import Session
from services.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PasspostError,
    Unauthorized,
)
from services.core.text import IDENTIFIER_PATTERN
from services.core.web import AppSettings
from services.merchants.api import CurrentMerchant
from services.orders import service
from services.orders.intake import EventIntake
from services.orders.schemas import (
    EventAccepted,
    OrderEventIn,
    OrderRead,
)

router = APIRouter(prefix="/v1/orders", tags=["orders"], responses=Unauthorized.openapi())
_errors = {**Conflict.openapi(), **InvalidInput.openapi()}


@router.post("/events", status_code=202, response_model=EventAccepted, responses=_errors)
async def post_event(
    event: OrderEventIn, merchant: CurrentMerchant, request: Request
) -> EventAccepted:
    """Tell us what happened to an order; answers with the customer's card links.

    Answered once the event has committed, in a transaction it may share with other events
    posted at the same time (``intake.EventIntake``), each answered on its own.
    """
    intake: EventIntake = request.app.state.order_intake
    return await intake.ingest(merchant, event)


@router.post("/events:batch", response_model=BatchResult)
async def post_events(
    batch: BatchIn, merchant: CurrentMerchant, session: Session, settings: AppSettings
) -> BatchResult:
    """Up to 500 events, each applied and answered on its own (``status`` per event)."""

    async def ingest(events: list[OrderEventIn]) -> list[EventAccepted | PasspostError]:
        return await service.ingest_events(session, merchant, events, settings)

    return await answer_batch(batch, OrderEventIn.model_validate, ingest)


@router.get("/{order_id}", response_model=OrderRead, responses=NotFound.openapi())
async def read_order(
    order_id: Annotated[str, Path(min_length=1, max_length=200, pattern=IDENTIFIER_PATTERN)],
    merchant: CurrentMerchant,
    session: Session,
) -> OrderRead:
    """The order as it stands, with every event received for it."""
    return await service.get_order(session, merchant, order_id)

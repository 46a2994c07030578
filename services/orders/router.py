"""The orders API for e-shop backends: thin endpoints over ``services.orders.service``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import ValidationError

from services.core.db import Session
from services.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PasspostError,
    Unauthorized,
    invalid_body,
)
from services.core.text import IDENTIFIER_PATTERN
from services.core.web import AppSettings
from services.merchants.api import CurrentMerchant
from services.orders import service
from services.orders.intake import EventIntake
from services.orders.schemas import (
    BatchIn,
    BatchItem,
    BatchResult,
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
    results: dict[int, BatchItem] = {}
    valid: list[tuple[int, OrderEventIn]] = []
    for index, raw in enumerate(batch.events):
        try:
            valid.append((index, OrderEventIn.model_validate(raw)))
        except ValidationError as exc:
            body = invalid_body("the event is invalid", exc.errors())
            results[index] = BatchItem(index=index, status=422, body=body)
    outcomes = await service.ingest_events(session, merchant, [e for _, e in valid], settings)
    for (index, _), outcome in zip(valid, outcomes, strict=True):
        if isinstance(outcome, PasspostError):
            results[index] = BatchItem(
                index=index, status=outcome.status_code, body=outcome.to_dict()
            )
        else:
            body = outcome.model_dump(mode="json")
            results[index] = BatchItem(index=index, status=202, body=body)
    return BatchResult(results=[results[index] for index in range(len(batch.events))])


@router.get("/{order_id}", response_model=OrderRead, responses=NotFound.openapi())
async def read_order(
    order_id: Annotated[str, Path(min_length=1, max_length=200, pattern=IDENTIFIER_PATTERN)],
    merchant: CurrentMerchant,
    session: Session,
) -> OrderRead:
    """The order as it stands, with every event received for it."""
    return await service.get_order(session, merchant, order_id)

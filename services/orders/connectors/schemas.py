"""The connectors at the edge: webhook answers, the deliveries list, the admin API's bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from services.contracts.orders import OrderStatus
from services.core.text import PlainText
from services.orders.connectors.common import Outcome, Platform

Secret = Annotated[PlainText, Field(min_length=8, max_length=200)]


class WebhookAnswer(BaseModel):
    """What a platform is answered: 200 whatever became of the delivery, so that a payload we
    cannot use never makes it retry or switch the webhook off."""

    delivery_id: uuid.UUID | None = Field(description="Ours; None for a ping")
    outcome: str
    reason: str | None = None


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    platform: Platform
    topic: str
    delivery: str | None = Field(description="The platform's id of the delivery, if it has one")
    order_ref: str | None = Field(description="The platform's order id: our order's id")
    occurred_at: datetime | None
    received_at: datetime
    outcome: Outcome
    reason: str | None
    event_id: str | None = Field(description="The order event it made, in the order's history")
    attempts: int = Field(description="Shoptet: fetches of the order tried")


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryRead]


class ConnectorConfigure(BaseModel):
    """A platform's secret (one, or two during a rotation: the new one last), Shoptet's API
    token, and whether to stop accepting the previous secret."""

    model_config = ConfigDict(extra="forbid")

    secrets: Annotated[list[Secret], Field(min_length=1, max_length=2)] | None = None
    api_token: Annotated[PlainText, Field(min_length=8, max_length=500)] | None = None
    revoke_old: StrictBool = False


class MappingSet(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: Annotated[PlainText, Field(min_length=1, max_length=64, alias="from")]
    to: OrderStatus


class ConnectorRead(BaseModel):
    """A connector as ops see it: never its secrets or token, only whether they are set."""

    platform: Platform
    webhook_url: str
    previous_secret_accepted: bool
    api_token_set: bool
    mapping: dict[str, str] = Field(description="The merchant's overrides of the platform's table")
    shop_statuses: dict[str, str] | None = Field(
        description="Shoptet: the shop's own statuses by id, as read from its API"
    )

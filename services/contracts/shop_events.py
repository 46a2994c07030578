"""Shop events (``POST /v1/events``): what a shop tells us of its customers beyond orders, one
model per ``type`` with its own ``data``, as the offers service takes them at the edge and as
passes receives them (``messages.ShopEventReceived``) to run the journeys they trigger.

A discriminated union on ``type``: an unknown type is a 422 naming the allowed ones, and the
OpenAPI description shows each type's ``data`` exactly.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import (
    Field,
    HttpUrl,
    RootModel,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from services.contracts.shop_api import Customer, Edge, EventIn, Money, OccurredAt, Text
from services.core.text import Identifier


class CartItem(Edge):
    name: Text
    quantity: Annotated[int, Field(ge=1, le=100_000)] = 1
    product_id: Identifier | None = None
    price: Money | None = None


class NoData(Edge):
    """A type whose event needs nothing beyond the customer."""


class CartAbandoned(Edge):
    cart_id: Identifier
    items: Annotated[list[CartItem], Field(max_length=200)] = Field(default_factory=list)
    total: Money | None = None
    url: HttpUrl = Field(description="Where the customer finds the cart again.")


class CartRecovered(Edge):
    cart_id: Identifier


class Product(Edge):
    id: Identifier
    name: Text
    url: HttpUrl | None = None


class PriceDropped(Edge):
    product: Product
    old_price: Money
    new_price: Money

    @model_validator(mode="after")
    def _dropped(self) -> PriceDropped:
        if self.new_price.currency != self.old_price.currency:
            raise ValueError("new_price and old_price in one currency")
        if self.new_price.amount >= self.old_price.amount:
            raise ValueError("new_price below old_price: a drop")
        return self


class Watch(Edge):
    product_id: Identifier


class TrialEnding(Edge):
    ends_at: OccurredAt = Field(description="When the trial ends (RFC 3339).")
    url: HttpUrl | None = None


class _Event(EventIn):
    customer: Customer


class CustomerRegistered(_Event):
    type: Literal["customer.registered"]
    data: NoData = Field(default_factory=NoData)


class CartAbandonedEvent(_Event):
    type: Literal["cart.abandoned"]
    data: CartAbandoned


class CartRecoveredEvent(_Event):
    type: Literal["cart.recovered"]
    data: CartRecovered


class PriceDroppedEvent(_Event):
    type: Literal["price.dropped"]
    data: PriceDropped


class CustomerWatch(_Event):
    type: Literal["customer.watch"]
    data: Watch


class CustomerUnwatch(_Event):
    type: Literal["customer.unwatch"]
    data: Watch


class TrialEndingEvent(_Event):
    type: Literal["trial.ending"]
    data: TrialEnding


ShopEventIn = Annotated[
    CustomerRegistered
    | CartAbandonedEvent
    | CartRecoveredEvent
    | PriceDroppedEvent
    | CustomerWatch
    | CustomerUnwatch
    | TrialEndingEvent,
    Field(discriminator="type"),
]
EVENT_TYPES: tuple[str, ...] = tuple(
    get_args(model.model_fields["type"].annotation)[0]
    for model in get_args(get_args(ShopEventIn)[0])
)
CREATES_CUSTOMER = frozenset({"customer.registered", "cart.abandoned"})
"""The types about an unknown customer that make their card (and answer its links)."""


class ShopEventBody(RootModel[ShopEventIn]):
    """A shop event as posted: its errors' paths are the body's own (``type``, ``data.url``),
    without the union's tag in them, and an unknown ``type`` names the allowed ones."""

    @model_validator(mode="wrap")
    @classmethod
    def _paths(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            raise ValidationError.from_exception_data(
                exc.title, [_body_path(error) for error in exc.errors()]
            ) from None


def _body_path(error: Any) -> InitErrorDetails:
    loc = tuple(error["loc"])
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        allowed = ", ".join(EVENT_TYPES)
        return {
            "type": PydanticCustomError("unknown_type", "one of {allowed}", {"allowed": allowed}),
            "loc": ("type",),
            "input": value_at(error["input"], "type"),
        }
    if loc and loc[0] in EVENT_TYPES:
        loc = loc[1:]
    details: InitErrorDetails = {"type": error["type"], "loc": loc, "input": error["input"]}
    if "ctx" in error:
        details["ctx"] = error["ctx"]
    return details


def value_at(body: Any, key: str) -> Any:
    return body.get(key) if isinstance(body, dict) else body

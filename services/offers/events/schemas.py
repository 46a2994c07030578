"""The shop events API's answers (the bodies are ``contracts.shop_events``: passes reads the
same models)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from services.contracts.cards import CardLinks


class ShopEventAccepted(BaseModel):
    event_id: str
    type: str
    duplicate: bool
    card: CardLinks | None = Field(
        default=None,
        description="The customer's card links, for the types that make the card"
        " (customer.registered, cart.abandoned): show 'Add to Wallet' at once.",
    )

"""Feedback at the edge: a rating as the shop sends it, and what the API answers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from services.core.text import Identifier, MultilineText

Score = Annotated[StrictInt, Field(ge=0, le=10, description="0 (not at all) to 10 (surely).")]
ScoreQuery = Annotated[int, Field(ge=0, le=10)]
MAX_TEXT = 2000
FeedbackText = Annotated[MultilineText, Field(min_length=1, max_length=MAX_TEXT)]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: Identifier = Field(description="The shop's id of the rated order.")
    score: Score
    text: FeedbackText | None = None


class FeedbackRead(BaseModel):
    customer_id: str
    order_id: str
    score: int
    text: str | None
    source: Literal["api", "card"] = Field(
        description="api: the shop's call; card: the customer on the card's page."
    )
    rated_at: datetime = Field(description="When the rating that holds was given.")
    created_at: datetime = Field(description="When the order was first rated.")


class FeedbackRecorded(FeedbackRead):
    replaced: bool = Field(description="The order had a rating, which this one replaced.")


class FeedbackPage(BaseModel):
    items: list[FeedbackRead]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; None: last.")


class Nps(BaseModel):
    """Net Promoter Score over the ratings given in a period (each order's latest rating)."""

    responses: int
    promoters: int = Field(description="Scores 9 and 10.")
    passives: int = Field(description="Scores 7 and 8.")
    detractors: int = Field(description="Scores 0 to 6.")
    score: float | None = Field(
        description="Promoters minus detractors, in percent of the responses (-100 to 100, "
        "one decimal); None without responses."
    )

"""The base of every message on the queue: a typed, versioned model named by its topic.

The messages themselves are the services' agreement and live in ``services.contracts``; the
queue only needs to know how one is named, stored and read back.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict


class Part(BaseModel):
    """A part of a message: read-only, unknown fields ignored (a newer publisher's additions)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Contract(Part):
    """A message between services, published on ``topic``; ``schema_version`` names its shape."""

    topic: ClassVar[str]
    schema_version: Literal[1] = 1

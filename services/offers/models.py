"""Tables owned by the offers service: offers, their campaigns, redemptions, channel counts."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from services.core.models import Base, IdMixin, UTCDateTime

SCHEDULED = "state = 'scheduled'"


class Offer(IdMixin, Base):
    """An offer as the shop made it, and the answer its id was given (idempotency)."""

    __tablename__ = "offers"
    __table_args__ = (
        UniqueConstraint("merchant_id", "external_id"),
        Index("ix_offers_merchant_id_created_at", "merchant_id", "created_at", "id"),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(String(2000))
    coupon_code: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str | None] = mapped_column(String(2100))
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    texts: Mapped[dict[str, Any]] = mapped_column(JSON)
    notify: Mapped[bool] = mapped_column(Boolean)
    target: Mapped[dict[str, Any]] = mapped_column(JSON)
    """``{"customer_ids": [...]}`` or ``{"segment": {...}}``, as the shop sent it."""
    redemptions: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    body_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    """What ``POST /v1/offers`` answered, to answer a replay the same."""


class Campaign(IdMixin, Base):
    """The delivery of an offer to its audience, and what passes reported of it so far."""

    __tablename__ = "campaigns"
    __table_args__ = (
        Index("ix_campaigns_merchant_id_created_at", "merchant_id", "created_at", "id"),
        # The scheduled job finds campaigns due to start through this, never by a scan.
        Index(
            "ix_campaigns_scheduled_starts_at",
            "starts_at",
            postgresql_where=text(SCHEDULED),
            sqlite_where=text(SCHEDULED),
        ),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"))
    offer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("offers.id", ondelete="CASCADE"), unique=True
    )
    state: Mapped[str] = mapped_column(String(16))
    """scheduled, running, done or cancelled."""
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    parts: Mapped[int | None] = mapped_column(Integer)
    """How many audience parts there are, once known (None while a segment is still paged)."""
    parts_done: Mapped[list[int]] = mapped_column(JSON, default=list)
    """The parts passes reported on: a part reported twice is counted once."""
    targeted: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    notified: Mapped[int] = mapped_column(Integer, default=0)
    deferred: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    silent: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    skipped: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)


class Redemption(IdMixin, Base):
    """A coupon used by a customer: once per offer and customer."""

    __tablename__ = "offer_redemptions"
    __table_args__ = (UniqueConstraint("offer_id", "customer_id"),)

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"))
    offer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("offers.id", ondelete="CASCADE"))
    customer_id: Mapped[str] = mapped_column(String(200))
    code: Mapped[str] = mapped_column(String(64))
    redeemed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ChannelCount(Base):
    """A merchant's channel counter on one UTC day (``channel.counted`` deltas added up)."""

    __tablename__ = "channel_counts"

    merchant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("merchants.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)

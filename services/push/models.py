"""Tables owned by the push service: what each device should get, and what it got."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from services.core.models import Base, BigIntPK, UTCDateTime, utcnow

PENDING = text("status = 'active' AND wanted_version > sent_version")
GOOGLE_DUE = text("wanted_version > synced_version OR messages_due")


class PushTarget(Base):
    """One card on one device: the newest version it should hear of, and the newest it did.

    Versions only move up, so a device never hears of a version twice nor of an older one after
    a newer; changes that arrive while a push is pending are coalesced into one push.
    """

    __tablename__ = "push_targets"
    __table_args__ = (
        Index(
            "ix_push_targets_due", "available_at", postgresql_where=PENDING, sqlite_where=PENDING
        ),
    )

    card_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    device_library_identifier: Mapped[str] = mapped_column(String(128), primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    pass_type_identifier: Mapped[str] = mapped_column(String(255))
    push_token: Mapped[str] = mapped_column(String(200))
    apns: Mapped[dict[str, Any]] = mapped_column(JSON)
    """How to authenticate to APNs for this card's merchant (file paths, never key material)."""
    wanted_version: Mapped[int] = mapped_column(Integer, default=0)
    sent_version: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="active")
    """``active``, or ``dead`` once APNs rejected the token for good."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Delivery(Base):
    """One push attempt and its outcome, for ops and support (never the whole token)."""

    __tablename__ = "push_deliveries"
    __table_args__ = (Index("ix_push_deliveries_card_id_version", "card_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    card_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    version: Mapped[int] = mapped_column(Integer)
    device_library_identifier: Mapped[str] = mapped_column(String(128))
    push_token_suffix: Mapped[str] = mapped_column(String(8))
    outcome: Mapped[str] = mapped_column(String(16))
    """``delivered``, ``rejected`` (token dead), ``retry`` or ``failed`` (gave up)."""
    status_code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    apns_id: Mapped[str | None] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class GoogleTarget(Base):
    """One card's Google Wallet object: the version it should show, and the messages to add."""

    __tablename__ = "google_targets"
    __table_args__ = (
        Index(
            "ix_google_targets_due",
            "available_at",
            postgresql_where=GOOGLE_DUE,
            sqlite_where=GOOGLE_DUE,
        ),
    )

    card_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    merchant_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    """Whose card: the channel's stats (``channel.counted``) are per merchant."""
    object_id: Mapped[str] = mapped_column(String(255), unique=True)
    issuer_id: Mapped[str] = mapped_column(String(32))
    service_account_path: Mapped[str] = mapped_column(String(1024))
    object_body: Mapped[dict[str, Any]] = mapped_column(JSON)
    wanted_version: Mapped[int] = mapped_column(Integer, default=0)
    synced_version: Mapped[int] = mapped_column(Integer, default=0)
    pending_messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    """Messages not yet on the object: ``GoogleMessage`` as JSON (``id``, ``header``, ``body``,
    ``important``, ``kind``, ``display_until``)."""
    withdrawn_messages: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Ids of messages to take off the object (an offer expired, redeemed or cancelled)."""
    messages_due: Mapped[bool] = mapped_column(default=False)
    """Messages to add or to take off: the worker has work even when the object is current."""
    kept_messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    """The messages we put on the object, oldest first (at most 10 stay), as a rewrite of the
    list sends them: ``TEXT``, so rewriting never notifies again."""
    notified_at: Mapped[list[float]] = mapped_column(JSON, default=list)
    """When notifications went out (seconds on ``core.clock``): Google allows 3 per object in
    24 hours, shared by order statuses and marketing (``push/google.py:notification_allowed``)."""
    removed: Mapped[bool] = mapped_column(default=False)
    """The customer removed the card from Google Wallet: no more notifications."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class GoogleDelivery(Base):
    """One Google call and its outcome: an object sync or a message (and if it notified)."""

    __tablename__ = "google_deliveries"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    card_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    """``object``; a message ``notified``, ``plain`` (not worth a notification) or
    ``downgraded`` (worth one, but over Google's budget of 3 a day)."""
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class GoogleCallbackNonce(Base):
    """Google retries callbacks: each nonce is applied once."""

    __tablename__ = "google_callback_nonces"

    nonce: Mapped[str] = mapped_column(String(200), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

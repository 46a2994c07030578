"""Merchants (the shops we serve) and their orders-API keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from services.core.models import Base, IdMixin, TimestampMixin, UTCDateTime, utcnow


class Merchant(IdMixin, TimestampMixin, Base):
    __tablename__ = "merchants"

    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    default_locale: Mapped[str] = mapped_column(String(16), default="en")
    # Google Wallet: the issuer, the service account acting for it (a key file, never shown),
    # and the shop's web origins where the save button may appear. Unset: no Google Wallet.
    google_issuer_id: Mapped[str | None] = mapped_column(String(32))
    google_service_account_path: Mapped[str | None] = mapped_column(String(1024))
    google_origins: Mapped[list[str]] = mapped_column(JSON, default=list)
    signing_secret: Mapped[str | None] = mapped_column(String(100))
    """When set, order events must carry a valid ``Passpost-Signature``; never shown again."""
    marketing: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """Marketing settings that differ from the defaults (``merchants/marketing.py``)."""
    # Apple Wallet Orders: the switch and the Order Type ID live here, so the orders service
    # answers an event with the Wallet order without asking passes; the certificate and key
    # are the pass design's (``passes.wallet_orders``), with the rest of the signing material.
    wallet_orders_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    order_type_identifier: Mapped[str | None] = mapped_column(String(255))
    journeys: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """Per journey, its settings that differ from the defaults (``merchants/journeys.py``)."""

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="merchant", lazy="raise")


class ApiKey(IdMixin, Base):
    """Only the SHA-256 of a key is kept: a key is shown once, when it is made."""

    __tablename__ = "merchant_api_keys"

    merchant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("merchants.id", ondelete="CASCADE"), index=True
    )
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    merchant: Mapped[Merchant] = relationship(back_populates="api_keys", lazy="raise")

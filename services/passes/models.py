"""Tables owned by the passes service: pass designs, their images, cards and built bundles."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from services.contracts.cards import MAX_LINK_TOKEN_LENGTH
from services.core.models import Base, IdMixin, TimestampMixin, UTCDateTime, utcnow


class PassDesign(IdMixin, TimestampMixin, Base):
    """How one merchant's card looks and is signed (one design per merchant)."""

    __tablename__ = "pass_designs"

    merchant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("merchants.id", ondelete="CASCADE"), unique=True
    )
    # Apple
    pass_type_identifier: Mapped[str] = mapped_column(String(255))
    team_identifier: Mapped[str] = mapped_column(String(32))
    certificate_path: Mapped[str] = mapped_column(String(1024))
    key_path: Mapped[str] = mapped_column(String(1024))
    wwdr_path: Mapped[str] = mapped_column(String(1024))
    apns_token_key_path: Mapped[str | None] = mapped_column(String(1024))
    """A .p8 key for APNs token auth; without it pushes authenticate with the certificate."""
    apns_token_key_id: Mapped[str | None] = mapped_column(String(10))
    # Apple Wallet Orders (the switch and the Order Type ID are the merchant's)
    order_certificate_path: Mapped[str | None] = mapped_column(String(1024))
    """The Order Type ID certificate: signs the packages and authenticates their pushes."""
    order_key_path: Mapped[str | None] = mapped_column(String(1024))
    apple_merchant_identifier: Mapped[str | None] = mapped_column(String(255))
    """order.json's ``merchant.merchantIdentifier`` (Apple's Merchant ID, ``merchant....``)."""
    # Branding
    organization_name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(200))
    logo_text: Mapped[str | None] = mapped_column(String(60))
    foreground_color: Mapped[str] = mapped_column(String(7), default="#FFFFFF")
    background_color: Mapped[str] = mapped_column(String(7), default="#1F2937")
    label_color: Mapped[str] = mapped_column(String(7), default="#D1D5DB")
    support_phone: Mapped[str | None] = mapped_column(String(40))
    # Link templates: {order_id}, {order_number}, {customer_id}, {tracking_number}
    order_url_template: Mapped[str | None] = mapped_column(String(1024))
    tracking_url_template: Mapped[str | None] = mapped_column(String(1024))
    returns_url_template: Mapped[str | None] = mapped_column(String(1024))
    account_url_template: Mapped[str | None] = mapped_column(String(1024))
    review_url_template: Mapped[str | None] = mapped_column(String(1024))
    """Where a customer who rated an order 9-10 is invited to review it."""
    survey_url_template: Mapped[str | None] = mapped_column(String(1024))
    """Where a customer who rated an order 0-6 can tell the shop what went wrong."""
    locations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    """The merchant's stores (at most 10): ``latitude``, ``longitude`` and ``relevant_text``
    (locale -> text), shown on the lock screen near one (``designs.set_locations``)."""
    texts: Mapped[dict[str, dict[str, str]]] = mapped_column(JSON, default=dict)
    """The merchant's own wording: locale -> text key -> text (see ``passes.texts``)."""

    images: Mapped[list[DesignImage]] = relationship(
        back_populates="design", lazy="raise", cascade="all, delete-orphan"
    )


class DesignImage(Base):
    """A PNG of the design, under its file name in the bundle (``icon@2x.png``...)."""

    __tablename__ = "pass_design_images"

    design_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pass_designs.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)

    design: Mapped[PassDesign] = relationship(back_populates="images", lazy="raise")


class Card(IdMixin, Base):
    """One customer's card at one merchant: an Apple storeCard (and later a Google object)."""

    __tablename__ = "cards"

    merchant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("merchants.id", ondelete="CASCADE"), index=True
    )
    customer_id: Mapped[str] = mapped_column(String(200))
    pass_type_identifier: Mapped[str] = mapped_column(String(255))
    """Fixed at issue, like the serial number: devices know the pass by both."""
    customer_name: Mapped[str | None] = mapped_column(String(200))
    locale: Mapped[str] = mapped_column(String(16))
    serial_number: Mapped[str] = mapped_column(String(64), unique=True)
    authentication_token: Mapped[str] = mapped_column(String(64))
    link_token: Mapped[str] = mapped_column(String(MAX_LINK_TOKEN_LENGTH), unique=True)
    """The link the card was issued with: sealed (``contracts.cards.seal_customer``), or the
    HMAC token of a card issued before links were sealed, which keeps working."""
    version: Mapped[int] = mapped_column(Integer, default=1)
    content: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """What the card currently shows beyond the customer (the latest order, later offers)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    """When what the card shows last changed: the pass's Last-Modified (whole seconds, rising)."""
    update_tag: Mapped[int] = mapped_column(BigInteger, default=0)
    """Position in its pass type's change order: what ``passesUpdatedSince`` compares."""
    time_zone: Mapped[str | None] = mapped_column(String(64))
    """The customer's IANA zone from their orders: their calendar days and quiet hours."""
    google_saved: Mapped[bool] = mapped_column(Boolean, default=False)
    """The customer saved the card's Google object and has not removed it (push's callbacks)."""
    google_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    marketing_notified: Mapped[list[str]] = mapped_column(JSON, default=list)
    """When marketing messages on the card notified (ISO times, the last days the caps see)."""

    __table_args__ = (
        UniqueConstraint("merchant_id", "customer_id"),
        Index("ix_cards_pass_type_identifier_update_tag", "pass_type_identifier", "update_tag"),
    )


class PassBundle(Base):
    """The signed .pkpass of a card's latest version, built once and served many times."""

    __tablename__ = "pass_bundles"

    card_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("cards.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    built_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PassTypeCounter(Base):
    """The last update tag handed out per pass type.

    Taking the next tag locks this row until the change commits, so tags commit in the order
    they are handed out and a device listing with ``passesUpdatedSince`` can never skip one.
    """

    __tablename__ = "pass_type_counters"

    pass_type_identifier: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class Registration(IdMixin, Base):
    """A device that holds a card and wants pushes for it (Apple's PassKit web service)."""

    __tablename__ = "registrations"
    __table_args__ = (UniqueConstraint("device_library_identifier", "card_id"),)

    device_library_identifier: Mapped[str] = mapped_column(String(128))
    card_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("cards.id", ondelete="CASCADE"), index=True
    )
    push_token: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WalletOrder(IdMixin, Base):
    """An order's Apple Wallet order: its package's version and what it shows.

    Its identifier, token and link are derived (``contracts.wallet_orders``); the order type is
    fixed at the first version, as devices know the order by both.
    """

    __tablename__ = "wallet_orders"
    __table_args__ = (
        UniqueConstraint("merchant_id", "order_id"),
        UniqueConstraint("order_type_identifier", "order_identifier"),
        Index(
            "ix_wallet_orders_order_type_identifier_update_tag",
            "order_type_identifier",
            "update_tag",
        ),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"))
    order_id: Mapped[str] = mapped_column(String(200))
    """The shop's order id."""
    card_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("cards.id", ondelete="CASCADE"), index=True
    )
    order_type_identifier: Mapped[str] = mapped_column(String(255))
    order_identifier: Mapped[str] = mapped_column(String(64))
    revision: Mapped[int] = mapped_column(Integer)
    """The order's revision shown (``order.changed``): an older copy changes nothing."""
    version: Mapped[int] = mapped_column(Integer, default=1)
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The order as the package shows it (status, number, total, shipping, items, links)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    """order.json's ``createdAt``: when the customer placed the order."""
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    """order.json's ``updatedAt``: rises by at least a millisecond per version."""
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    """The package's Last-Modified (whole seconds, rising by at least one per version)."""
    update_tag: Mapped[int] = mapped_column(BigInteger, default=0)
    """Position in its order type's change order: what ``ordersModifiedSince`` compares."""


class WalletOrderPackage(Base):
    """The signed package of a Wallet order's latest version, built once (like ``PassBundle``)."""

    __tablename__ = "wallet_order_packages"

    wallet_order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("wallet_orders.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    built_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WalletOrderRegistration(IdMixin, Base):
    """A device that holds a Wallet order and wants pushes for it (the Orders web service)."""

    __tablename__ = "wallet_order_registrations"
    __table_args__ = (UniqueConstraint("device_identifier", "wallet_order_id"),)

    device_identifier: Mapped[str] = mapped_column(String(128))
    wallet_order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("wallet_orders.id", ondelete="CASCADE"), index=True
    )
    push_token: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

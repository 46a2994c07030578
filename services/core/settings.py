"""Settings from the environment (``PASSPOST_*``), refusing unsafe defaults outside development."""

from __future__ import annotations

import os
import secrets
import ssl
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


ADMIN_TOKEN_FILE = "admin_token"  # noqa: S105  (a file name)
SECRET_KEY_FILE = "secret_key"  # noqa: S105  (a file name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PASSPOST_", env_file=".env", extra="ignore")

    _secrets: dict[str, str] = PrivateAttr(default_factory=dict)
    """The development secrets read from or made in ``_secrets_of`` (``data_dir``), by file: a
    secret file is written once and never changed (``_create_once``), and reading it on every
    use was two system calls per card link, a third of applying an order event in development
    (the embedded default)."""
    _secrets_of: Path | None = PrivateAttr(default=None)

    environment: Environment = Environment.development
    data_dir: Path = Path("./var")
    database_url: str = ""
    """Empty means the embedded default: SQLite in ``data_dir``."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_base_url: str = "http://127.0.0.1:8000"
    admin_token: SecretStr | None = None
    """Unset in development means the token ``passpost init`` wrote to ``data_dir``."""
    secret_key: SecretStr | None = None
    """Derives card links and serial numbers: never change it once cards exist.
    Unset in development means the key kept in ``data_dir``."""

    queue_backend: Literal["db", "nats"] = "db"
    """``db``: consumers claim outbox rows; ``nats``: a relay moves them to NATS JetStream."""
    nats_url: str = ""
    """Where NATS JetStream runs (``nats://host:4222``), for the ``nats`` backend."""
    nats_stream: str = Field(default="passpost", pattern=r"^[A-Za-z0-9_-]+$")
    """The JetStream stream of the ``nats`` backend; its subjects are ``<stream>.<topic>``."""
    nats_max_age_seconds: float = Field(default=7 * 24 * 3600.0)
    """How long the stream keeps a message (0: for ever). Only ids travel, so a week is small;
    a message no consumer took within it is dropped from the stream (its row stays)."""
    nats_max_bytes: int = Field(default=1 << 30)
    """The most the stream keeps (0: no limit); beyond it the oldest messages go."""
    nats_max_msgs: int = Field(default=0)
    """The most messages the stream keeps (0: no limit)."""
    nats_duplicate_window_seconds: float = Field(default=120.0, ge=25.0)
    """How long JetStream drops a message id it has seen: at least the relay's retry horizon
    (25 s: a relay's lease of 15 s and its 10 s wait for acks)."""
    nats_ca_file: Path | None = None
    """The CA that signed the NATS server's certificate, for ``tls://`` (default: the system's)."""
    nats_cert_file: Path | None = None
    nats_key_file: Path | None = None
    """A client certificate and key, for a NATS server that verifies clients (mutual TLS)."""
    queue_poll_interval: float = Field(default=0.2, gt=0)
    queue_lease_seconds: float = Field(default=30.0, gt=0)
    queue_max_attempts: int = Field(default=10, ge=1)

    apns_url: str = "https://api.push.apple.com"
    apns_ca_file: Path | None = None
    """An extra CA to trust for APNs (the local stand-in's root in development)."""
    apns_timeout: float = Field(default=10.0, gt=0)
    apns_max_connections: int = Field(default=4, ge=1)
    apns_connection_max_requests: int = Field(default=50_000, ge=1)
    """Recycle an APNs connection after this many pushes (aioapns keeps per-stream state)."""
    push_max_attempts: int = Field(default=8, ge=1)
    push_in_flight: int = Field(default=200, ge=1)
    """Pushes one delivery worker keeps between their claim and the record of their answers:
    enough to cover the round trips to APNs and to the database while the next ones go out."""
    push_lease_seconds: float = Field(default=60.0, gt=0)
    """How long a push worker keeps the pushes it claimed from other workers (longer than a
    send may take): also how long those of a worker killed outright wait for another one."""

    max_devices_per_card: int = Field(default=32, ge=1)
    """Devices one card may be registered on (an Apple account has a handful); more are 429."""
    max_passes_per_device: int = Field(default=100, ge=1)
    """Passes one device library identifier may register for; more are 429."""
    pass_cache_seconds: float = Field(default=10.0, ge=0)
    """How long a process may answer a device's pass request from what it read of the card
    (0: never). Changes reach the cache at once (``passes/apple/pass_cache.py``); this bounds
    a stale answer should every way of hearing of a change fail."""
    pass_bundle_cache_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    """Signed bundles a process keeps in memory for the PassKit web service's 200s."""

    google_api_url: str = "https://walletobjects.googleapis.com/walletobjects/v1"
    shoptet_api_url: str = "https://api.myshoptet.com"
    """Where the Shoptet connector fetches the orders a shop's webhooks name."""
    google_root_keys_file: Path | None = None
    """Google's callback signing keys (JSON, as Google publishes them); unset, callbacks are 503."""

    admin_files_dir: Path | None = None
    """The only directory whose files the admin API may name (certificates, keys, service
    accounts); unset means ``data_dir/keys``. The CLI, run on the machine, may name any file."""

    retention_outbox_days: float = Field(default=7, gt=0)
    """Applied outbox messages: a week to trace a change across services; the inbox keeps
    their ids longer (a pending message is never pruned)."""
    retention_failed_messages_days: float = Field(default=30, gt=0)
    """Outbox messages given up on: a month for ops to see (``passpost_outbox_failed``),
    fix and replay them."""
    retention_inbox_days: float = Field(default=14, gt=0)
    """Consumers' records of applied message ids, which make a redelivery a no-op: kept twice
    as long as the outbox (at least as long, enforced), so no message that can still be
    delivered (a row the ``db`` queue or the NATS relay could resend, or a JetStream
    redelivery, which the stream's ``max_age`` bounds well below this) lacks its record."""
    retention_push_deliveries_days: float = Field(default=30, gt=0)
    """APNs attempt records (support: "did the phone get told?"): a month."""
    retention_google_deliveries_days: float = Field(default=30, gt=0)
    """Google Wallet call records: a month, as for APNs."""
    retention_callback_nonces_days: float = Field(default=30, gt=0)
    """Google callback nonces, which make Google's retries no-ops: a callback is refused once
    its signed message expires (``expTimeMillis``, minutes to hours), so a month is far past
    any retry that could still be accepted."""
    retention_connector_deliveries_days: float = Field(default=30, gt=0)
    """Platform webhook deliveries (their payloads, outcomes and dedupe keys): a month, far past
    any platform's retries (Shopify's last 48 hours) and Shoptet's fetches (hours)."""
    retention_order_events_days: float = Field(default=400, gt=0)
    """Order event history, also the idempotency record of each event id (a replayed id gets
    its stored answer): 13 months, a year of audits plus the returns period, far past any
    shop's retries. Orders themselves keep their last status."""
    retention_shop_events_days: float = Field(default=90, gt=0)
    """Shop events (``POST /v1/events``), the idempotency record of each event id: a quarter,
    far past any shop's retries; what they started lives on in the journeys' own rows."""
    retention_batch_size: int = Field(default=1000, ge=1, le=100_000)
    """Rows deleted per transaction: short transactions, however large the backlog."""
    retention_interval_seconds: float = Field(default=600, gt=0)
    """Seconds between prune rounds once a round finds nothing to delete."""

    shutdown_grace_seconds: float = Field(default=10.0, gt=0)
    """On SIGTERM: how long requests in flight may take to finish, and then how long the
    queue and the push workers may take to finish or hand back what they hold; a process
    exits within twice this (and a second)."""

    log_level: str = "INFO"
    log_json: bool = True
    max_request_bytes: int = Field(default=256 * 1024, gt=0)
    http_header_timeout: float = Field(default=10.0, gt=0)
    """Seconds a client has to send a request's headers, from its first byte (``core/http.py``)."""

    def nats_tls(self) -> ssl.SSLContext | None:
        """How to verify the NATS server (and show our certificate), when configured."""
        if self.nats_ca_file is None and self.nats_cert_file is None:
            return None
        context = ssl.create_default_context(
            cafile=str(self.nats_ca_file) if self.nats_ca_file else None
        )
        if self.nats_cert_file is not None and self.nats_key_file is not None:
            context.load_cert_chain(str(self.nats_cert_file), str(self.nats_key_file))
        return context

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'passpost.db'}"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def resolved_admin_files_dir(self) -> Path:
        return (self.admin_files_dir or self.keys_dir).resolve()

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    def base_url(self) -> str:
        return self.public_base_url.rstrip("/")

    def resolved_admin_token(self) -> str | None:
        """The admin token: the setting, or in development the one ``passpost init`` saved."""
        return self._secret(self.admin_token, ADMIN_TOKEN_FILE, create=False)

    def ensure_admin_token(self) -> str:
        """Return the admin token, creating the development one on first use."""
        token = self._secret(self.admin_token, ADMIN_TOKEN_FILE, create=True)
        assert token is not None
        return token

    def resolved_secret_key(self) -> bytes:
        key = self._secret(self.secret_key, SECRET_KEY_FILE, create=True)
        assert key is not None
        return key.encode()

    def _secret(self, value: SecretStr | None, file_name: str, *, create: bool) -> str | None:
        """A secret setting, or outside production one kept in ``data_dir`` (made on demand)."""
        if value is not None:
            return value.get_secret_value()
        if self.environment == Environment.production:
            return None
        if self._secrets_of is not self.data_dir:  # a copy of these settings, elsewhere
            self._secrets, self._secrets_of = {}, self.data_dir
        if (kept := self._secrets.get(file_name)) is not None:
            return kept
        path = self.data_dir / file_name
        if path.exists() and (saved := path.read_text().strip()):
            self._secrets[file_name] = saved
            return saved
        if not create:
            return None
        self._secrets[file_name] = made = _create_once(path, secrets.token_urlsafe(32))
        return made

    @model_validator(mode="after")
    def _refuse_nats_without_url(self) -> Settings:
        if self.queue_backend == "nats" and not self.nats_url:
            raise ValueError(
                "PASSPOST_QUEUE_BACKEND=nats needs PASSPOST_NATS_URL "
                "(where NATS JetStream runs, for example nats://127.0.0.1:4222)"
            )
        return self

    @model_validator(mode="after")
    def _refuse_inbox_shorter_than_outbox(self) -> Settings:
        # A failed message was never applied, so it has no record to keep.
        if self.retention_inbox_days < self.retention_outbox_days:
            raise ValueError(
                "PASSPOST_RETENTION_INBOX_DAYS must be at least PASSPOST_RETENTION_OUTBOX_DAYS: "
                "an applied message still kept (and so deliverable again) must find its record"
            )
        return self

    @model_validator(mode="after")
    def _refuse_a_window_longer_than_the_stream_keeps(self) -> Settings:
        if 0 < self.nats_max_age_seconds < self.nats_duplicate_window_seconds:
            raise ValueError(
                "PASSPOST_NATS_DUPLICATE_WINDOW_SECONDS must not exceed "
                "PASSPOST_NATS_MAX_AGE_SECONDS (JetStream refuses such a stream)"
            )
        if (self.nats_cert_file is None) != (self.nats_key_file is None):
            raise ValueError("PASSPOST_NATS_CERT_FILE and PASSPOST_NATS_KEY_FILE go together")
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment != Environment.production:
            return self
        problems = []
        if self.admin_token is None or len(self.admin_token.get_secret_value()) < 32:
            problems.append("PASSPOST_ADMIN_TOKEN must be set to at least 32 characters")
        if self.secret_key is None or len(self.secret_key.get_secret_value()) < 32:
            problems.append("PASSPOST_SECRET_KEY must be set to at least 32 characters")
        if not self.public_base_url.startswith("https://"):
            problems.append("PASSPOST_PUBLIC_BASE_URL must be https:// (Apple Wallet requires it)")
        if not self.database_url:
            problems.append("PASSPOST_DATABASE_URL must be set explicitly in production")
        if problems:
            raise ValueError("unsafe production settings: " + "; ".join(problems))
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()


def _create_once(path: Path, made: str) -> str:
    """Keep ``made`` in ``path`` unless another process got there first, and return whichever
    is kept: ``serve --workers N`` before ``init`` starts N processes that all look for it.

    The secret is written to a file of its own and linked into place, which fails if the path
    exists: no process ever sees a half-written secret, and none overwrites another's.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(made + "\n")
    try:
        os.link(draft, path)
    except FileExistsError:
        if not path.read_text().strip():  # left empty by a crash of an older version
            os.replace(draft, path)
    finally:
        draft.unlink(missing_ok=True)
    return path.read_text().strip()

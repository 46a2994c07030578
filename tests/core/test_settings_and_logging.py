"""Settings refuse unsafe production defaults; logs never carry secrets."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.core.logging import JSONFormatter, redact
from services.core.settings import Environment, Settings


def test_development_defaults_need_no_server() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.resolved_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.queue_backend == "db"
    assert settings.public_base_url == "http://127.0.0.1:8000"


def test_production_refuses_unsafe_defaults() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(environment=Environment.production, _env_file=None)  # type: ignore[call-arg]
    message = str(caught.value)
    assert "PASSPOST_ADMIN_TOKEN" in message
    assert "PASSPOST_PUBLIC_BASE_URL must be https://" in message
    assert "PASSPOST_DATABASE_URL" in message
    assert "PASSPOST_SECRET_KEY" in message


def test_production_accepts_safe_settings() -> None:
    settings = Settings(
        environment=Environment.production,
        admin_token="x" * 40,
        secret_key="k" * 40,
        public_base_url="https://cards.example.com",
        database_url="postgresql+asyncpg://passpost@db/passpost",
        _env_file=None,  # type: ignore[call-arg]
    )
    assert settings.resolved_admin_token() == "x" * 40
    assert "x" * 40 not in repr(settings)
    assert "k" * 40 not in repr(settings)


def test_the_nats_backend_needs_its_url() -> None:
    with pytest.raises(ValidationError, match="PASSPOST_NATS_URL"):
        Settings(queue_backend="nats", _env_file=None)  # type: ignore[call-arg]
    settings = Settings(queue_backend="nats", nats_url="nats://127.0.0.1:4222", _env_file=None)  # type: ignore[call-arg]
    assert settings.nats_stream == "passpost"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer pp_live_abcdef123456", "abcdef123456"),
        ("Authorization: ApplePass 0IiZw5Nag8xCXEP_NDyM", "0IiZw5Nag8xCXEP_NDyM"),
        ('{"api_key": "hunter2hunter2"}', "hunter2hunter2"),
        ("made key pp_live_Zm9vYmFyYmF6", "Zm9vYmFyYmF6"),
        ("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----", "MIIE"),
        ("cannot reach nats://alice:s3cret-pw@nats.example:4222", "s3cret-pw"),
    ],
)
def test_secrets_are_redacted(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_json_log_lines_carry_extras_and_no_secret() -> None:
    record = logging.makeLogRecord(
        {"msg": "got %s", "args": ("token=abcdefgh12345678",), "levelname": "INFO", "topic": "x"}
    )
    line = json.loads(JSONFormatter().format(record))
    assert line["topic"] == "x"
    assert "abcdefgh12345678" not in line["message"]


def test_secrets_in_extra_fields_are_redacted_too() -> None:
    """Errors are logged in ``extra`` (``error=repr(exc)``), and an error can quote a header, a
    key or a URL with its password."""
    record = logging.makeLogRecord(
        {
            "msg": "queue relay failed",
            "levelname": "WARNING",
            "error": "ConnectionError('nats://alice:s3cret-pw@nats.example:4222')",
            "details": {
                "header": "Authorization: Bearer pp_live_abcdef",
                "tries": [1, "token=xyz9"],
            },
            "attempt": 3,
        }
    )
    line = json.loads(JSONFormatter().format(record))
    text = json.dumps(line)
    for secret in ("s3cret-pw", "pp_live_abcdef", "xyz9"):
        assert secret not in text
    assert line["attempt"] == 3
    assert line["details"]["tries"][0] == 1


def test_processes_starting_together_keep_one_development_secret_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve --workers N`` before ``init``: every worker looks for the key at once. One that
    looked before another had written it must take the written one, not overwrite it (links
    derived from two keys would point at two different cards)."""
    first = Settings(environment=Environment.development, data_dir=tmp_path)
    kept = first.resolved_secret_key()
    late = Settings(environment=Environment.development, data_dir=tmp_path)
    real_exists = Path.exists
    looked: list[Path] = []

    def not_yet_written(path: Path) -> bool:  # as if it looked just before ``first`` wrote
        if path.name == "secret_key" and not looked:
            looked.append(path)
            return False
        return real_exists(path)

    monkeypatch.setattr(Path, "exists", not_yet_written)
    assert late.resolved_secret_key() == kept
    assert looked, "the late process did look before the key was there"
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"], "no draft left behind"


def test_a_development_secret_is_read_once_and_a_copy_elsewhere_has_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every card link needs the key: the file is read on first use only, and settings copied
    to another data directory (as tests and ``serve`` do) never answer with this one's key."""
    settings = Settings(environment=Environment.development, data_dir=tmp_path / "a")
    kept = settings.resolved_secret_key()
    reads: list[Path] = []
    real_read = Path.read_text

    def counted(path: Path, *args: Any, **kwargs: Any) -> str:
        reads.append(path)
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counted)
    assert [settings.resolved_secret_key() for _ in range(3)] == [kept] * 3
    assert reads == []
    elsewhere = settings.model_copy(update={"data_dir": tmp_path / "b"})
    assert elsewhere.resolved_secret_key() != kept
    assert settings.resolved_secret_key() == kept
    assert (
        elsewhere.resolved_secret_key() == real_read(tmp_path / "b" / "secret_key").strip().encode()
    )

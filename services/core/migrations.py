"""Alembic from code: ``passpost migrate`` and ``passpost init`` bring the schema to head."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations
from services.core.settings import Settings


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["database_url"] = settings.resolved_database_url
    return config


def upgrade_to_head(settings: Settings) -> None:
    """Synchronous: Alembic's env runs its own event loop."""
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings), "head")

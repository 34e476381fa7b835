"""Settings, read from the environment.

Secure by default: an empty or unknown `ORGSAFE_ENV` means production, and every
relaxation (the `X-Org-Id` header, cookies without `Secure`) needs an explicit
development or test environment.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    production = "production"
    development = "development"
    test = "test"


def parse_environment(raw: object) -> Environment:
    """Map a raw setting to an environment; anything unrecognised is production."""
    text = str(raw or "").strip().lower()
    if text in (Environment.development.value, Environment.test.value):
        return Environment(text)
    return Environment.production


def default_data_dir() -> Path:
    # PostgreSQL refuses to run as root, so as root the embedded server runs as a
    # system user that must traverse every parent of its folder: /root would have
    # to be opened to everyone, /var/lib need not.
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/orgsafe")
    return Path(platformdirs.user_data_dir("orgsafe", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORGSAFE_", extra="ignore")

    env: Environment = Environment.production
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "ORGSAFE_DATABASE_URL"),
    )
    # The URL the service connects with; derived from database_url when unset.
    app_database_url: str | None = None
    app_role: str = "orgsafe_app"
    app_password: str | None = None
    data_dir: Path = Field(default_factory=default_data_dir)

    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    session_absolute_hours: int = Field(default=12, ge=1, le=24 * 30)
    cookie_name: str = "orgsafe_session"

    login_account_failures: int = Field(default=5, ge=1, le=1000)
    login_address_failures: int = Field(default=30, ge=1, le=100_000)
    login_window_seconds: int = Field(default=900, ge=1, le=86_400)
    login_lockout_seconds: int = Field(default=300, ge=1, le=86_400)

    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Comma-separated origins, besides the service's own, allowed to send
    # state-changing requests (e.g. "https://app.example.com").
    allowed_origins: str = ""

    # Bearer token for GET /metrics. Unset, /metrics answers only outside
    # production: request counts and denial reasons are not for every client.
    metrics_token: str | None = Field(default=None, min_length=16, max_length=512)

    pool_min_size: int = Field(default=2, ge=1, le=100)
    pool_max_size: int = Field(default=10, ge=1, le=500)
    pool_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    statement_timeout_ms: int = Field(default=5000, ge=100, le=600_000)
    # "transaction" when a transaction pooler (PgBouncer) sits in front of the
    # database: nothing session-level may then be relied on, prepared statements
    # included.
    pooler: Literal["none", "transaction"] = "none"

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Environment:
        return parse_environment(value)

    @field_validator("database_url", "app_database_url", "app_password", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @property
    def origins(self) -> frozenset[str]:
        found = (part.strip().rstrip("/") for part in self.allowed_origins.split(","))
        return frozenset(origin.lower() for origin in found if origin)

    @property
    def is_production(self) -> bool:
        return self.env is Environment.production


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)

"""Settings, read from the environment (prefix ``PARLEY_``) and ``.env``."""

from __future__ import annotations

import secrets
from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "change-me"  # noqa: S105


class Environment(StrEnum):
    development = "development"
    testing = "testing"
    production = "production"


class EventBusBackend(StrEnum):
    memory = "memory"
    redis = "redis"
    rabbitmq = "rabbitmq"


class FlowBackendName(StrEnum):
    database = "database"
    redis = "redis"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARLEY_", env_file=".env", extra="ignore")

    env: Environment = Environment.development
    data_dir: Path = Path("var")
    database_url: str = ""
    # Empty means "generate one on first run and keep it in data_dir" (embedded default only).
    secret_key: SecretStr = SecretStr("")
    base_url: str = "http://127.0.0.1:8000"

    event_bus: EventBusBackend = EventBusBackend.memory
    redis_url: str = "redis://127.0.0.1:6379/0"
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"

    log_level: str = "INFO"
    log_json: bool | None = None  # None: JSON unless stderr is a terminal

    session_cookie_name: str = "parley_session"
    session_max_age_s: int = 60 * 60 * 12
    cookie_secure: bool = False
    login_max_failures: int = 10
    login_failure_window_s: int = 60

    default_locale: str = "en"
    default_timezone: str = "UTC"

    max_body_bytes: int = 1024 * 1024
    max_inflight_inbound: int = Field(default=256, ge=1)

    # Delivery (parley/delivery): where flow-control state lives, and how workers claim.
    flow_backend: FlowBackendName = FlowBackendName.database
    delivery_lease_s: float = Field(default=30.0, gt=0)
    delivery_batch_size: int = Field(default=200, ge=1)
    delivery_concurrency: int = Field(default=64, ge=1)
    delivery_poll_s: float = Field(default=0.1, gt=0)
    delivery_max_attempts: int = Field(default=8, ge=1)

    # Contact import and follower sync (parley/contacts/imports, parley/contacts/sync).
    contacts_job_lease_s: float = Field(default=30.0, gt=0)
    import_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{(self.data_dir / 'parley.db').as_posix()}"
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def resolved_secret_key(self) -> str:
        """Returns the configured secret, or the embedded default's generated one.

        Outside development a missing or default secret is refused, so that a
        production node can never run with a key an attacker could guess.
        """
        value = self.secret_key.get_secret_value()
        if value and value != DEFAULT_SECRET:
            return value
        if self.env == Environment.production:
            raise RuntimeError(
                "PARLEY_SECRET_KEY must be set to a long random value when PARLEY_ENV=production"
            )
        key_file = self.data_dir / "secret_key"
        if key_file.exists():
            return key_file.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        generated = secrets.token_urlsafe(48)
        key_file.write_text(generated)
        key_file.chmod(0o600)
        return generated


_settings: Settings | None = None


def get_settings() -> Settings:
    """Returns the process's settings, read once from the environment."""
    global _settings
    if _settings is None:
        _settings = Settings()
    return _settings


def configure(settings: Settings) -> Settings:
    """Replaces the process's settings (the CLI and tests build their own)."""
    global _settings
    _settings = settings
    return settings

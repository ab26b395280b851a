"""The one settings class of the service, read from `REUNITE_*` environment variables.

Development (the embedded default) needs no configuration at all: SQLite and keys
live in `data_dir`, and a missing secret is generated there once. Any other
environment fails closed: it refuses to start with a missing, default or short
secret, so a forgotten variable can never run production with a guessable key.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

INSECURE_SECRETS = {"", "change-me", "changeme", "secret", "dev", "development"}
MIN_SECRET_LENGTH = 32


class InsecureSettings(ValueError):
    """Raised at start-up when a production setting would be unsafe."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REUNITE_", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("reunite-data")
    database_url: str | None = None  # default: SQLite file in data_dir
    secret_key: SecretStr = SecretStr("")

    access_token_minutes: int = Field(15, ge=1, le=60)
    refresh_token_days: int = Field(14, ge=1, le=90)
    login_failures_per_account: int = Field(5, ge=1)
    login_failures_per_address: int = Field(20, ge=1)
    login_window_minutes: int = Field(15, ge=1)
    totp_issuer: str = "Reunite"
    bootstrap_admin_email: str = "admin@reunite.local"

    vetting_period_days: int = Field(365, ge=1)
    denylist_path: Path | None = None  # extra law-enforcement domains, one per line

    audit_key_path: Path | None = None  # Ed25519 signing key; default in data_dir
    audit_checkpoint_every: int = Field(100, ge=1)

    @model_validator(mode="after")
    def _fail_closed(self) -> Settings:
        if self.environment == "development":
            return self
        secret = self.secret_key.get_secret_value()
        if secret.lower() in INSECURE_SECRETS or len(secret) < MIN_SECRET_LENGTH:
            raise InsecureSettings(
                f"REUNITE_SECRET_KEY must be set to a random value of at least {MIN_SECRET_LENGTH} "
                f"characters when REUNITE_ENVIRONMENT={self.environment}"
            )
        if self.database_url is None:
            raise InsecureSettings(f"REUNITE_DATABASE_URL must be set when REUNITE_ENVIRONMENT={self.environment}")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'reunite.db').resolve()}"

    @property
    def audit_key_file(self) -> Path:
        return self.audit_key_path or self.data_dir / "audit-signing-key.pem"

    def signing_secret(self) -> str:
        """The JWT secret; in development a random one is created once in data_dir."""
        secret = self.secret_key.get_secret_value()
        if secret:
            return secret
        path = self.data_dir / "secret-key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

"""The one settings class of the service, read from `REUNITE_*` environment variables.

Development (the embedded default) needs no configuration at all: SQLite and keys
live in `data_dir`, and a missing secret is generated there once. Any other
environment fails closed: it refuses to start with a missing, default or short
secret, so a forgotten variable can never run production with a guessable key.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from matching.quality import DEFAULT_MAX_ASYMMETRY, DEFAULT_MIN_FACE_PX, DEFAULT_MIN_SHARPNESS, QualityGates
from vetting.review import DEFAULT_NEW_ACCOUNT_DAYS

if TYPE_CHECKING:
    from matching.faces import FaceSettings

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
    # Per account, after login_failures_per_account failures since the last success, each further try
    # waits login_backoff_seconds * 2^(extra failures), at most login_backoff_max_seconds: slower, never locked.
    login_backoff_seconds: int = Field(2, ge=1)
    login_backoff_max_seconds: int = Field(900, ge=1)
    # Addresses or networks of reverse proxies whose X-Forwarded-For is believed; none by default.
    trusted_proxies: list[str] = []
    # Public applications, per client address and for everyone together, within the window.
    applications_per_address: int = Field(3, ge=1)
    applications_globally: int = Field(30, ge=1)
    application_window_minutes: int = Field(60, ge=1)
    totp_issuer: str = "Reunite"
    bootstrap_admin_email: str = "admin@reunite.local"

    vetting_period_days: int = Field(365, ge=1)
    invitation_days: int = Field(7, ge=1, le=30)  # how long an invitation link can be accepted
    denylist_path: Path | None = None  # extra law-enforcement domains, one per line

    audit_key_path: Path | None = None  # Ed25519 signing key; default in data_dir
    audit_checkpoint_every: int = Field(100, ge=1)

    # Photos: 32-byte master key (base64) wrapping each photo's own data key.
    master_key: SecretStr = SecretStr("")
    photo_dir: Path | None = None  # default: data_dir/photos
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_upload_pixels: int = Field(40_000_000, ge=10_000)
    # Checked from the header before decoding: no camera's side is longer, no face photo is a strip.
    max_upload_side: int = Field(12_000, ge=100)
    max_upload_aspect: float = Field(20.0, ge=1)
    max_faces_per_photo: int = Field(8, ge=1, le=50)
    case_retention_days: int = Field(30, ge=1)
    # A record's consent may last at most this long from when it was obtained, so that
    # every family re-confirms it at least this often.
    consent_max_days: int = Field(730, ge=1)
    daily_cases_per_user: int = Field(50, ge=1)
    daily_cases_per_organisation: int = Field(500, ge=1)
    review_top_k: int = Field(10, ge=1, le=100)
    # Two-person rule: a reviewer account younger than this when it confirms does not count as
    # the independent, established confirmer every confirmation needs (vetting.review).
    review_new_account_days: int = Field(DEFAULT_NEW_ACCOUNT_DAYS, ge=0, le=3650)
    # Quality gates: a face below one is still enrolled and searched, and flagged low quality
    # for reviewers. Defaults measured by bench/quality_gates.py (docs/accuracy.md, "Quality gates");
    # flags are worked out from each face's stored figures when shown, so a change applies to all.
    quality_min_face_px: int = Field(DEFAULT_MIN_FACE_PX, ge=0, le=10_000)
    quality_min_sharpness: float = Field(DEFAULT_MIN_SHARPNESS, ge=0)
    quality_max_asymmetry: float = Field(DEFAULT_MAX_ASYMMETRY, ge=0, le=1)
    # `reunite calibrate` sets the review threshold where this share of impostor pairs match.
    calibration_target_fmr: float = Field(1e-3, gt=0, lt=1)

    # The gallery index every searching worker keeps: exact search ("flat") is right up to a few
    # hundred thousand photos; "pq-refine" (4-bit PQ scan, exact re-ranking) measured p95 2.7 ms
    # and recall@10 0.997 at 1M against 50 ms exact (docs/performance.md). HNSW is not offered:
    # its removal compaction rebuilds the graph inside a search worker.
    index_kind: Literal["flat", "pq-refine"] = "flat"

    # Lets confirmed-match webhooks reach a receiver on this machine (127.0.0.1, ::1), over plain http
    # too: for the tests and local development only, refused in production (service.reviews.webhook_address).
    webhook_allow_loopback: bool = False

    # Celery: a broker that needs no server by default (files in data_dir/broker).
    broker_url: str | None = None
    processing_timeout_minutes: int = Field(10, ge=1)  # the reaper re-queues older claims

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, proxies: list[str]) -> list[str]:
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError as exc:
                raise ValueError(f"REUNITE_TRUSTED_PROXIES: {proxy!r} is not an IP address or network") from exc
        return proxies

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
        if len(_decode_key(self.master_key.get_secret_value())) != 32:
            raise InsecureSettings("REUNITE_MASTER_KEY must be 32 random bytes, base64-encoded")
        if self.webhook_allow_loopback and self.environment == "production":
            raise InsecureSettings("REUNITE_WEBHOOK_ALLOW_LOOPBACK is for tests and local development only")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'reunite.db').resolve()}"

    @property
    def audit_key_file(self) -> Path:
        return self.audit_key_path or self.data_dir / "audit-signing-key.pem"

    @property
    def photo_root(self) -> Path:
        return self.photo_dir or self.data_dir / "photos"

    @property
    def index_dir(self) -> Path:
        """Where index replicas keep their snapshots (service.photos.index_files)."""
        return self.data_dir / "index"

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    def quality_gates(self) -> QualityGates:
        return QualityGates(
            min_face_px=self.quality_min_face_px,
            min_sharpness=self.quality_min_sharpness,
            max_asymmetry=self.quality_max_asymmetry,
        )

    def face_settings(self) -> FaceSettings:
        """The one place the service's face settings are made from these settings."""
        # Imported here: matching.faces loads dlib, which most users of Settings never need.
        from matching.faces import FaceSettings

        return FaceSettings(
            max_faces=self.max_faces_per_photo,
            min_face_px=self.quality_min_face_px,
            min_sharpness=self.quality_min_sharpness,
            max_asymmetry=self.quality_max_asymmetry,
        )

    def signing_secret(self) -> str:
        """The JWT secret; in development a random one is created once in data_dir."""
        return self.secret_key.get_secret_value() or self._generated("secret-key", lambda: secrets.token_urlsafe(48))

    def photo_master_key(self) -> bytes:
        """The photo master key; in development a random one is created once in data_dir."""
        encoded = self.master_key.get_secret_value() or self._generated(
            "master-key", lambda: base64.b64encode(secrets.token_bytes(32)).decode()
        )
        return _decode_key(encoded)

    def _generated(self, name: str, make) -> str:
        path = self.data_dir / name
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(make())
            path.chmod(0o600)
        return path.read_text().strip()


def _decode_key(encoded: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return b""

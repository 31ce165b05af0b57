"""Typed settings for every Locard process, built once by a cached factory and validated at start-up."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_HOME = Path.home() / ".locard"
MIN_SECRET_LENGTH = 32
# Known values that must never protect real data (the development fallbacks, and the obvious ones).
DEVELOPMENT_TOKEN_SECRET = "locard-development-token-secret-not-for-use"  # noqa: S105 - refused outside development
DEVELOPMENT_AUDIT_KEY = "locard-development-audit-key-not-for-real-use"
WEAK_SECRETS = frozenset({DEVELOPMENT_TOKEN_SECRET, DEVELOPMENT_AUDIT_KEY, "changeme" * 4, "secret" * 6,
                          "0" * 32, "x" * 32})


class Settings(BaseSettings):
    """All of Locard's configuration, read from `LOCARD_*` environment variables (or a `.env` file)."""

    model_config = SettingsConfigDict(env_prefix="LOCARD_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    home: Path = DEFAULT_HOME

    # Record store. Empty means the embedded SQLite file under `home`.
    database_url: str = ""

    # Object store (any S3 endpoint: MinIO in production, SeaweedFS embedded).
    s3_endpoint: str = "127.0.0.1:8333"
    s3_access_key: str = ""
    s3_secret_key: SecretStr = SecretStr("")
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    evidence_bucket: str = "locard-evidence"
    derived_bucket: str = "locard-derived"
    retention_mode: Literal["COMPLIANCE", "GOVERNANCE"] = "COMPLIANCE"
    retention_days: int = Field(default=3650, ge=1)

    # Intake.
    max_upload_bytes: int = Field(default=2 * 1024**3, gt=0)
    presign_expiry_seconds: int = Field(default=600, ge=60, le=900)  # presigned URLs: short-lived, one object
    webhook_token: SecretStr = SecretStr("")
    sweep_interval_seconds: float = Field(default=5.0, gt=0)
    # An API upload claims its object key before storing it; the sweep leaves a claimed key to its uploader
    # this long (after it, a key whose upload never finished is taken in from the bucket).
    upload_claim_seconds: float = Field(default=3600.0, gt=0)
    unassigned_case_reference: str = "INBOX"

    # API.
    api_host: str = "127.0.0.1"
    api_port: int = 8600
    operator_name: str = "local-operator"
    # Request limits, enforced before a body is parsed: JSON (and any other non-upload) bodies, the text fields
    # of an evidence upload (count and total bytes), and how long the API waits for the next piece of a body.
    max_json_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_form_fields: int = Field(default=16, ge=1, le=1000)
    max_form_bytes: int = Field(default=64 * 1024, ge=1024)
    body_read_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Reverse proxies whose X-Forwarded-For is believed (addresses or CIDR blocks, comma-separated); empty: none,
    # the socket peer is the client (audit log, login throttling).
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Authentication. Outside development, secrets must be set and strong (see `_validate`).
    token_secret: SecretStr = SecretStr("")  # signs access tokens (HS256); 32+ characters
    access_token_minutes: int = Field(default=15, ge=1, le=60)
    refresh_token_hours: int = Field(default=12, ge=1, le=24 * 7)
    login_max_failures: int = Field(default=5, ge=1)  # failures per account, and per client address, before backoff
    login_window_seconds: int = Field(default=900, ge=1)  # a key's failures are forgotten this long after its last
    login_backoff_max_seconds: int = Field(default=300, ge=1)  # longest wait after repeated failures (storage.logins)
    # An external OpenID Connect provider (optional): its tokens are accepted as well as Locard's own.
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_url: str = ""  # the provider's JWKS endpoint
    oidc_jwks_file: str = ""  # or its keys in a file (air-gapped networks)
    oidc_username_claim: str = "preferred_username"
    oidc_roles_claim: str = "roles"

    # Audit. The key of the HMAC chain over the audit log and the chain of custody; 32+ characters.
    audit_key: SecretStr = SecretStr("")
    # Signed checkpoints of the chain heads, kept outside the record store: a bucket under object lock (created
    # by the worker service) and, when set, a file the operator keeps; written every interval while heads move.
    checkpoint_bucket: str = Field(default="locard-checkpoints", min_length=3, max_length=63)
    checkpoint_file: Path | None = None
    checkpoint_interval_seconds: float = Field(default=60.0, gt=0)

    # Analysis.
    ray_address: str = ""
    ray_auth_mode: Literal["token", "disabled"] = "token"
    ray_num_cpus: int = Field(default=0, ge=0)
    job_lease_seconds: float = Field(default=60.0, gt=0)
    job_max_attempts: int = Field(default=3, ge=1)
    worker_restart_seconds: float = Field(default=15.0, ge=0)  # wait before retrying on a restarted actor
    max_image_pixels: int = Field(default=120_000_000, gt=0)
    analyzers: str = ""  # comma-separated names; empty means every registered analyzer
    # Resource bounds of one analysis job. Budgets override each analyzer's default, as "name=value,...":
    # wall-clock seconds (a job past it is stopped, its worker replaced, and the run failed), and MiB a job may
    # add to its worker's loaded size (a watchdog stops the job past it and the worker is replaced).
    analyzer_time_budgets: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    analyzer_memory_budgets: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    worker_recycle_mb: float = Field(default=1024.0, gt=0)  # a worker this far above its loaded size is replaced
    worker_max_losses: int = Field(default=4, ge=1)  # lost or restarting workers one job outlasts before failing
    max_pages_per_job: int = Field(default=20, ge=1)  # longer documents are read as page-range jobs
    max_document_pages: int = Field(default=2000, ge=1)  # pages of one document read at most

    # Matching: actors holding the indexes (each a full copy), taking cross-matching, searches and re-matching.
    matcher_actors: int = Field(default=1, ge=1, le=64)
    # Fingerprint matching.
    fingerprint_match_threshold: int = Field(default=40, ge=1)  # Bozorth3 score reported as a probable match
    fingerprint_search_rerank: int = Field(default=100, ge=1, le=10_000)  # index candidates re-scored by Bozorth3

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, value: object) -> object:
        if isinstance(value, str):
            value = [item for item in value.split(",") if item.strip()]
        if isinstance(value, list):
            for item in value:
                try:
                    ipaddress.ip_network(str(item).strip(), strict=False)
                except ValueError as exc:
                    raise ValueError(f"LOCARD_TRUSTED_PROXIES: {item!r} is not an IP address or CIDR block") from exc
            return [str(item).strip() for item in value]
        return value

    @field_validator("analyzer_time_budgets", "analyzer_memory_budgets", mode="before")
    @classmethod
    def _budgets(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        budgets: dict[str, float] = {}
        for item in (part.strip() for part in value.split(",") if part.strip()):
            name, _, amount = item.partition("=")
            try:
                budgets[name.strip()] = float(amount)
            except ValueError:
                raise ValueError(f"analyzer budget {item!r} is not name=number") from None
            if not name.strip() or budgets[name.strip()] <= 0:
                raise ValueError(f"analyzer budget {item!r} is not name=positive number")
        return budgets

    @model_validator(mode="after")
    def _validate(self) -> Settings:
        if self.environment != "development":
            for name in ("token_secret", "audit_key"):
                value = getattr(self, name).get_secret_value()
                if len(value) < MIN_SECRET_LENGTH or value in WEAK_SECRETS or len(set(value)) < 8:
                    raise ValueError(f"LOCARD_{name.upper()} must be a random secret of at least "
                                     f"{MIN_SECRET_LENGTH} characters outside development")
        if self.oidc_issuer and not (self.oidc_jwks_url or self.oidc_jwks_file):
            raise ValueError("LOCARD_OIDC_ISSUER needs LOCARD_OIDC_JWKS_URL or LOCARD_OIDC_JWKS_FILE")
        if self.environment == "production":
            if not self.database_url:
                raise ValueError("LOCARD_DATABASE_URL is required in production")
            if len(self.webhook_token.get_secret_value()) < 24:
                raise ValueError("LOCARD_WEBHOOK_TOKEN must be a secret of at least 24 characters in production")
        return self

    @property
    def effective_database_url(self) -> str:
        """The configured database URL, or the embedded SQLite file under `home`."""
        return self.database_url or f"sqlite:///{self.home / 'locard.db'}"

    @property
    def token_key(self) -> str:
        """The access-token signing secret (the development fallback only in development)."""
        return self.token_secret.get_secret_value() or DEVELOPMENT_TOKEN_SECRET

    @property
    def chain_key(self) -> bytes:
        """The audit chain's HMAC key (the development fallback only in development)."""
        return (self.audit_key.get_secret_value() or DEVELOPMENT_AUDIT_KEY).encode()

    @property
    def analyzer_names(self) -> list[str]:
        return [name.strip() for name in self.analyzers.split(",") if name.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, built on first use (never at import time)."""
    return Settings()

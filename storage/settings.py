"""Typed settings for every Locard process, built once by a cached factory and validated at start-up."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOME = Path.home() / ".locard"


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
    presign_expiry_seconds: int = Field(default=900, ge=60, le=7 * 24 * 3600)
    webhook_token: SecretStr = SecretStr("")
    sweep_interval_seconds: float = Field(default=5.0, gt=0)
    unassigned_case_reference: str = "INBOX"

    # API.
    api_host: str = "127.0.0.1"
    api_port: int = 8600
    operator_name: str = "local-operator"

    # Analysis.
    ray_address: str = ""
    ray_auth_mode: Literal["token", "disabled"] = "token"
    ray_num_cpus: int = Field(default=0, ge=0)
    job_lease_seconds: float = Field(default=60.0, gt=0)
    job_max_attempts: int = Field(default=3, ge=1)
    worker_restart_seconds: float = Field(default=15.0, ge=0)  # wait before retrying on a restarted actor
    max_image_pixels: int = Field(default=120_000_000, gt=0)
    analyzers: str = ""  # comma-separated names; empty means every registered analyzer

    # Fingerprint matching.
    fingerprint_match_threshold: int = Field(default=40, ge=1)  # Bozorth3 score reported as a probable match
    fingerprint_search_rerank: int = Field(default=100, ge=1, le=10_000)  # index candidates re-scored by Bozorth3

    @model_validator(mode="after")
    def _validate(self) -> Settings:
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
    def analyzer_names(self) -> list[str]:
        return [name.strip() for name in self.analyzers.split(",") if name.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, built on first use (never at import time)."""
    return Settings()

"""Every environment variable the app reads, in one pydantic-settings class (SPEC section 2)."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Literal

from limits import parse_many
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Rate limits of SPEC section 8; `CHAT_APP_RATE_LIMITS` overrides them per name.
DEFAULT_RATE_LIMITS: dict[str, str] = {
    "create": "10/minute;100/day",
    "validate": "60/minute",
    "failed_validate": "20/minute",
    "reset": "5/minute",
    "messages": "30/minute",
    "upload": "20/minute",
    "read": "120/minute",
}

SECRET_FILE_NAME = "secret_key"


class Settings(BaseSettings):
    """Application configuration; a bad value fails start-up naming the variable."""

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore", frozen=True)

    data_dir: Path = Field(Path("./data"), validation_alias="CHAT_APP_DATA_DIR")
    database_url_raw: str | None = Field(None, validation_alias="DATABASE_URL")
    redis_url: str | None = Field(None, validation_alias="REDIS_URL")
    s3_bucket: str | None = Field(None, validation_alias="CHAT_APP_S3_BUCKET")
    s3_endpoint_url: str | None = Field(None, validation_alias="CHAT_APP_S3_ENDPOINT_URL")
    s3_region: str = Field("us-east-1", validation_alias="CHAT_APP_S3_REGION")
    dev_controls: bool = Field(False, validation_alias="CHAT_APP_DEV_CONTROLS")
    session_idle_days: float = Field(14, gt=0, validation_alias="CHAT_APP_SESSION_IDLE_DAYS")
    session_max_days: float = Field(90, gt=0, validation_alias="CHAT_APP_SESSION_MAX_DAYS")
    max_upload_mb: float = Field(25, gt=0, validation_alias="CHAT_APP_MAX_UPLOAD_MB")
    max_files_per_session: int = Field(
        20, ge=1, validation_alias="CHAT_APP_MAX_FILES_PER_SESSION"
    )
    allowed_extensions: str = Field(
        "txt,md,csv,json,pdf,png,jpg,jpeg,gif,webp",
        validation_alias="CHAT_APP_ALLOWED_EXTENSIONS",
    )
    orphan_grace_minutes: float = Field(
        60, ge=0, validation_alias="CHAT_APP_ORPHAN_GRACE_MINUTES"
    )
    sweep_interval_minutes: float = Field(
        15, ge=0, validation_alias="CHAT_APP_SWEEP_INTERVAL_MINUTES"
    )
    secret_key_raw: str | None = Field(None, validation_alias="CHAT_APP_SECRET_KEY")
    admin_token: str | None = Field(None, validation_alias="CHAT_APP_ADMIN_TOKEN")
    assistant: Literal["auto", "retrieval", "openai"] = Field(
        "auto", validation_alias="CHAT_APP_ASSISTANT"
    )
    openai_base_url: str | None = Field(None, validation_alias="OPENAI_BASE_URL")
    openai_api_key: str | None = Field(None, validation_alias="OPENAI_API_KEY")
    openai_model: str = Field("gpt-4o-mini", validation_alias="CHAT_APP_OPENAI_MODEL")
    rate_limits_raw: str | None = Field(None, validation_alias="CHAT_APP_RATE_LIMITS")
    trusted_proxy_hops: int = Field(0, ge=0, validation_alias="CHAT_APP_TRUSTED_PROXY_HOPS")

    @field_validator("database_url_raw")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError("must be an SQLAlchemy URL such as postgresql+psycopg://host/db")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("rate_limits_raw")
    @classmethod
    def _check_rate_limits(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate_limit_overrides(value)
        return value

    @model_validator(mode="after")
    def _check_lifetimes(self) -> Settings:
        if self.session_idle_days > self.session_max_days:
            raise ValueError(
                "CHAT_APP_SESSION_IDLE_DAYS must not exceed CHAT_APP_SESSION_MAX_DAYS"
            )
        return self

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL: `DATABASE_URL`, or SQLite in the data dir."""
        return self.database_url_raw or f"sqlite:///{self.data_dir.resolve()}/chat_app.db"

    @property
    def allowed_extension_set(self) -> frozenset[str]:
        """`CHAT_APP_ALLOWED_EXTENSIONS` as lower-case extensions without dots."""
        return frozenset(
            part.strip().lstrip(".").lower()
            for part in self.allowed_extensions.split(",")
            if part.strip()
        )

    @property
    def rate_limits(self) -> dict[str, str]:
        """Rate-limit strings by name, defaults merged with `CHAT_APP_RATE_LIMITS`."""
        return {**DEFAULT_RATE_LIMITS, **parse_rate_limit_overrides(self.rate_limits_raw or "")}

    @property
    def secret_key(self) -> bytes:
        """The HMAC key: `CHAT_APP_SECRET_KEY`, or one generated once into the data dir."""
        if self.secret_key_raw:
            return self.secret_key_raw.encode()
        return _load_or_create_secret(self.data_dir / SECRET_FILE_NAME)


def parse_rate_limit_overrides(text: str) -> dict[str, str]:
    """Parse `create=10/minute;100/day,upload=20/minute` into a validated mapping."""
    overrides: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, spec = item.partition("=")
        name = name.strip()
        if not sep or name not in DEFAULT_RATE_LIMITS:
            known = ", ".join(DEFAULT_RATE_LIMITS)
            raise ValueError(f"expected NAME=LIMIT with NAME one of {known}")
        try:
            parse_many(spec.strip())
        except ValueError as exc:
            raise ValueError(f"{name}: not a rate limit such as 10/minute") from exc
        overrides[name] = spec.strip()
    return overrides


def _load_or_create_secret(path: Path) -> bytes:
    # The key is written to a private temp file and then hard-linked into place: link() fails
    # when the file exists, so concurrent workers agree on one key and never read a half-written
    # (empty) file, as they could between an O_EXCL create and its write.
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path.read_bytes().strip()
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        with contextlib.suppress(FileExistsError):
            os.link(temp_name, path)
    finally:
        os.unlink(temp_name)
    return path.read_bytes().strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()


def describe_error(error: ValidationError) -> str:
    """One line naming each bad variable and what is wrong with it."""
    parts = []
    for item in error.errors():
        name = ".".join(str(loc) for loc in item["loc"]) or "configuration"
        parts.append(f"{name}: {item['msg']}")
    return "; ".join(parts)


def get_settings_or_exit() -> Settings:
    """Settings for start-up code: an invalid value exits with one clear line."""
    try:
        return get_settings()
    except ValidationError as error:
        print(f"chat_app: invalid configuration: {describe_error(error)}", file=sys.stderr)
        raise SystemExit(2) from None

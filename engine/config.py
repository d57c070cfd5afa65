"""Settings read from the environment, with defaults that are safe on a laptop."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigurationError

DEFAULT_INSTANCE_PATH = Path.cwd() / "instance"


@dataclass(frozen=True)
class Settings:
    database_url: str
    instance_path: Path
    max_upload_bytes: int = 2 * 1024 * 1024
    secret_key: str = ""
    token_encryption_key: str = ""
    base_url: str = "http://127.0.0.1:5000"
    reminder_after: str = "P2D"
    escalate_after: str = "P5D"
    auto_cancel_after: str = "P14D"
    expiry_replacement_days: int = 30
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read the settings from ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        instance_path = Path(env.get("INSTANCE_PATH", DEFAULT_INSTANCE_PATH))
        database_url = env.get("DATABASE_URL") or (
            f"sqlite:///{instance_path / 'provisioning.sqlite3'}"
        )
        return cls(
            database_url=database_url,
            instance_path=instance_path,
            max_upload_bytes=_int(env, "MAX_UPLOAD_BYTES", 2 * 1024 * 1024),
            secret_key=env.get("SECRET_KEY", ""),
            token_encryption_key=env.get("TOKEN_ENCRYPTION_KEY", ""),
            base_url=env.get("BASE_URL", "http://127.0.0.1:5000").rstrip("/"),
            reminder_after=env.get("REMINDER_AFTER", "P2D"),
            escalate_after=env.get("ESCALATE_AFTER", "P5D"),
            auto_cancel_after=env.get("AUTO_CANCEL_AFTER", "P14D"),
            expiry_replacement_days=_int(env, "EXPIRY_REPLACEMENT_DAYS", 30),
        )


def _int(env, name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(
            f"{name}={raw!r} is not a whole number; set it to an integer such as "
            f"{default} or unset it to use the default."
        ) from None
    if value <= 0:
        raise ConfigurationError(f"{name}={raw!r} must be greater than zero.")
    return value

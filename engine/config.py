"""Settings read from the environment, with defaults that are safe on a laptop."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

from .errors import ConfigurationError

DEFAULT_INSTANCE_PATH = Path.cwd() / "instance"


@dataclass(frozen=True)
class Settings:
    database_url: str
    instance_path: Path
    max_upload_bytes: int = 2 * 1024 * 1024
    secret_key: str = ""
    token_encryption_key: str = ""
    token_encryption_previous_keys: tuple[str, ...] = ()
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
            secret_key=env.get("SECRET_KEY") or instance_secret(instance_path),
            token_encryption_key=env.get("TOKEN_ENCRYPTION_KEY", ""),
            token_encryption_previous_keys=tuple(
                key.strip()
                for key in env.get("TOKEN_ENCRYPTION_PREVIOUS_KEYS", "").split(",")
                if key.strip()
            ),
            base_url=env.get("BASE_URL", "http://127.0.0.1:5000").rstrip("/"),
            reminder_after=_duration(env, "REMINDER_AFTER", "P2D"),
            escalate_after=_duration(env, "ESCALATE_AFTER", "P5D"),
            auto_cancel_after=_duration(env, "AUTO_CANCEL_AFTER", "P14D"),
            expiry_replacement_days=_int(env, "EXPIRY_REPLACEMENT_DAYS", 30),
        )

    @property
    def encryption_key(self) -> str:
        """Return the key that encrypts stored secrets: its own, else the secret key."""
        return self.token_encryption_key or self.secret_key


def instance_secret(instance_path: Path) -> str:
    """Return a secret key kept in the instance folder, created on first use.

    A laptop run needs no configuration, yet sessions survive a restart, and the
    web server, the worker and the CLI agree on the key that signs sessions and
    encrypts token secrets.

    :raises ConfigurationError: the instance folder cannot be written.
    """
    path = Path(instance_path) / "secret_key"
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Exclusive creation, so that two processes starting at once
            # cannot each write a key of their own.
            with os.fdopen(
                os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w"
            ) as file:
                file.write(secrets.token_hex(32))
        key = path.read_text().strip()
    except FileExistsError:
        key = path.read_text().strip()
    except OSError as err:
        raise ConfigurationError(
            f"Cannot keep the generated secret key in {path}: {err.strerror}. "
            "Set SECRET_KEY in the environment, or INSTANCE_PATH to a folder "
            "this user may write."
        ) from None
    if not key:
        raise ConfigurationError(
            f"The secret key file {path} is empty; delete it to have a new key "
            "generated, or set SECRET_KEY."
        )
    return key


def _duration(env, name: str, default: str) -> str:
    """Return an ISO 8601 duration setting, checked as the timers will read it.

    The value is copied into each new request, so a bad one would only show
    later as an incident of every request that no retry can mend.
    """
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        parts = TimerEventDefinition.parse_iso_duration(raw)
    except Exception:  # noqa: BLE001 - SpiffWorkflow raises a bare Exception
        parts = None
    if not parts or not any(parts.values()):
        raise ConfigurationError(
            f"{name}={raw!r} is not an ISO 8601 duration; write it like P2D (two "
            f"days), PT4H (four hours) or P1DT12H, or unset it to use {default}."
        )
    return raw


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
        raise ConfigurationError(
            f"{name}={raw!r} must be greater than zero; set it to a whole number "
            f"such as {default} or unset it to use the default."
        )
    return value

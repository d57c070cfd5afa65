"""SMTP settings an administrator stores in the database.

Without a stored row the ``SMTP_*`` environment variables apply
(:meth:`engine.mail.SmtpSettings.from_env`). Once an administrator saves
settings in the console they apply instead, to the web process and every
worker at once, without a restart. The password is encrypted with
``TOKEN_ENCRYPTION_KEY`` and is never shown back: the console only learns
whether one is set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine import audit
from engine.config import Settings
from engine.errors import ConfigurationError, ValidationFailed
from engine.mail import MailSettingsError, SmtpSettings
from engine.models import utcnow
from engine.otp import SecretBox, SecretKeyMismatch

from .models import StoredSmtpSettings

logger = logging.getLogger(__name__)

_ROW_ID = 1


@dataclass(frozen=True)
class SmtpSettingsView:
    """What the console shows of the effective settings; never the password."""

    source: str  # "stored" or "environment"
    host: str
    port: int
    security: str
    username: str
    has_password: bool
    sender: str
    timeout: float
    ca_file: str


def current_smtp_settings(session: Session, settings: Settings) -> SmtpSettings:
    """Return the SMTP settings in force: the stored ones, else the environment's.

    :raises MailSettingsError: an ``SMTP_*`` variable is invalid.
    :raises ConfigurationError: the stored password cannot be decrypted because
        the encryption key (``TOKEN_ENCRYPTION_KEY``, else ``SECRET_KEY``)
        changed.
    """
    row = session.get(StoredSmtpSettings, _ROW_ID)
    if row is None:
        return SmtpSettings.from_env()

    password = None
    if row.password_ciphertext:
        try:
            password = _box(settings).decrypt(row.password_ciphertext)
        except SecretKeyMismatch:
            raise ConfigurationError(
                "The stored SMTP password cannot be decrypted: the encryption key "
                "(TOKEN_ENCRYPTION_KEY, else SECRET_KEY) has changed since it was "
                "saved. Enter the password again in the e-mail settings, or list "
                "the former key in TOKEN_ENCRYPTION_PREVIOUS_KEYS."
            ) from None
    return SmtpSettings(
        host=row.host,
        port=row.port,
        security=row.security,  # type: ignore[arg-type]
        username=row.username or None,
        password=password,
        sender=row.sender,
        timeout=float(row.timeout),
        ca_file=row.ca_file or None,
    )


def describe_smtp_settings(session: Session) -> SmtpSettingsView:
    """Return the effective settings for display, with the password left out.

    :raises MailSettingsError: the environment's settings are invalid.
    """
    row = session.get(StoredSmtpSettings, _ROW_ID)
    if row is not None:
        return SmtpSettingsView(
            source="stored",
            host=row.host,
            port=row.port,
            security=row.security,
            username=row.username or "",
            has_password=bool(row.password_ciphertext),
            sender=row.sender,
            timeout=float(row.timeout),
            ca_file=row.ca_file or "",
        )
    env = SmtpSettings.from_env()
    return SmtpSettingsView(
        source="environment",
        host=env.host,
        port=env.port,
        security=env.security,
        username=env.username or "",
        has_password=bool(env.password),
        sender=env.sender,
        timeout=env.timeout,
        ca_file=env.ca_file or "",
    )


def smtp_settings_from_form(
    session: Session,
    settings: Settings,
    *,
    host: str,
    port: int | str,
    security: str,
    sender: str,
    username: str = "",
    password: str = "",
    timeout: int | str = 10,
    ca_file: str = "",
) -> SmtpSettings:
    """Check form values and return them as SmtpSettings (nothing is stored).

    An empty ``password`` with a ``username`` keeps the stored password, so
    that an administrator can change the host without typing it again.

    :raises ValidationFailed: with one message per wrong field.
    """
    errors: dict[str, str] = {}
    host = host.strip()
    if not host:
        errors["host"] = "Enter the SMTP server's host name, e.g. smtp.example.org."
    port_value = _whole_number(port, 1, 65535)
    if port_value is None:
        errors["port"] = (
            f"Port {port!r} is not a whole number from 1 to 65535; usually 25, "
            "587 (STARTTLS) or 465 (TLS)."
        )
    timeout_value = _whole_number(timeout, 1, 600)
    if timeout_value is None:
        errors["timeout"] = f"Timeout {timeout!r} must be 1 to 600 seconds."
    if security not in ("none", "starttls", "tls"):
        errors["security"] = "Choose none, starttls or tls."
    if "@" not in sender:
        errors["sender"] = (
            "Enter the sender address, e.g. "
            "Token Provisioning <provisioning@example.org>."
        )
    username = username.strip()
    if not password and username:
        try:
            password = current_smtp_settings(session, settings).password or ""
        except ConfigurationError:
            password = ""
    if password and not username:
        errors["username"] = "A password needs a username; enter both or neither."
    if errors:
        raise ValidationFailed("The SMTP settings are not valid.", errors)

    try:
        return SmtpSettings(
            host=host,
            port=port_value,  # type: ignore[arg-type]
            security=security,  # type: ignore[arg-type]
            username=username or None,
            password=password or None,
            sender=sender.strip(),
            timeout=float(timeout_value),  # type: ignore[arg-type]
            ca_file=ca_file.strip() or None,
        )
    except MailSettingsError as error:
        raise ValidationFailed(str(error), {"__all__": str(error)}) from None


def save_smtp_settings(
    session: Session, settings: Settings, smtp: SmtpSettings, *, actor: str
) -> None:
    """Store ``smtp`` as the settings in force, the password encrypted.

    :raises ConfigurationError: a password is given but no encryption key is
        set, so it could only be stored in clear.
    """
    ciphertext = None
    if smtp.password:
        ciphertext = _box(settings).encrypt(smtp.password)

    row = session.get(StoredSmtpSettings, _ROW_ID)
    if row is None:
        row = StoredSmtpSettings(id=_ROW_ID)
        session.add(row)
    row.host = smtp.host
    row.port = smtp.port
    row.security = smtp.security
    row.username = smtp.username
    row.password_ciphertext = ciphertext
    row.sender = smtp.sender
    row.timeout = int(smtp.timeout)
    row.ca_file = smtp.ca_file
    row.updated_at = utcnow()
    row.updated_by = actor
    login = f", login {smtp.username}" if smtp.username else ", no login"
    audit.record(
        session,
        actor=actor,
        action="smtp_settings_saved",
        subject="smtp settings",
        message=(
            f"Saved SMTP server {smtp.host}:{smtp.port} ({smtp.security}{login}), "
            f"sender {smtp.sender}"
        ),
    )


def clear_smtp_settings(session: Session, *, actor: str) -> bool:
    """Forget the stored settings so the environment's apply; return if any."""
    row = session.get(StoredSmtpSettings, _ROW_ID)
    if row is None:
        return False
    session.delete(row)
    audit.record(
        session,
        actor=actor,
        action="smtp_settings_cleared",
        subject="smtp settings",
        message="Removed the stored SMTP settings; the environment's apply",
    )
    return True


def _box(settings: Settings) -> SecretBox:
    """Return the box that encrypts the SMTP password."""
    if not settings.encryption_key:
        raise ConfigurationError(
            "Neither TOKEN_ENCRYPTION_KEY nor SECRET_KEY is set, so the SMTP "
            "password cannot be stored encrypted; set one in the environment, "
            "or give the password as SMTP_PASSWORD instead."
        )
    return SecretBox.from_settings(settings)


def _whole_number(value: int | str, low: int, high: int) -> int | None:
    """Return ``value`` as an int within [low, high], or None."""
    text = str(value).strip()
    if not text.isdigit():
        return None
    number = int(text)
    return number if low <= number <= high else None

"""Cryptography for software tokens and emergency access.

Everything here is a pure function of its arguments: nothing touches the
database, the clock (unless no time is given) or the web layer. The caller
stores what these functions return: the encrypted TOTP secret, the last
time step a code was accepted for, the hash of an emergency access code and
the digest of an activation token.

Exceptions::

    ValueError
     +-- SecretKeyMismatch   stored secret cannot be decrypted with the key
     +-- InvalidCode         wrong or malformed one-time code
     +-- ReplayedCode        code already accepted for this token
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
import struct
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

import segno
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

if TYPE_CHECKING:
    from .config import Settings

logger = logging.getLogger(__name__)

TOTP_DIGITS = 6
TOTP_PERIOD = 30
TOTP_ALGORITHM = "SHA1"

# The info label binds derived keys to this one purpose, so the same
# configured string used elsewhere (for example as Flask's SECRET_KEY) never
# yields the same key bytes here.
_KEY_INFO = b"token-provisioning/secret-box/v1"

# Letters and digits that cannot be misread for one another on paper or on
# a phone screen: no 0/O, 1/I/L.
EMERGENCY_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
_MIN_EMERGENCY_CODE_LENGTH = 6

# scrypt cost: about 16 MiB and some tens of milliseconds per check, which
# makes guessing a stolen hash costly while staying cheap for one login.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
_HASH_SCHEME = "scrypt"

_CODE_PATTERN = re.compile(f"[0-9]{{{TOTP_DIGITS}}}")

SECRET_KEY_MISMATCH_MESSAGE = (
    "A stored token secret cannot be decrypted: the token encryption key "
    "(TOKEN_ENCRYPTION_KEY) changed since the secret was stored. Set "
    "TOKEN_ENCRYPTION_KEY back to its former value, or keep the new value and "
    "list the former one in TOKEN_ENCRYPTION_PREVIOUS_KEYS so that existing "
    "secrets stay readable."
)
INVALID_CODE_MESSAGE = (
    "The code is not valid. Enter the 6-digit code currently shown in your "
    "authenticator app; check that your phone's clock is set automatically."
)
REPLAYED_CODE_MESSAGE = (
    "This code was already used. Wait until your authenticator app shows the "
    "next code and enter that one."
)


class SecretKeyMismatch(ValueError):
    """A ciphertext was not produced by any of the configured keys."""

    def __init__(self, message: str = SECRET_KEY_MISMATCH_MESSAGE) -> None:
        super().__init__(message)


class InvalidCode(ValueError):
    """A one-time code is malformed or does not match the token."""

    def __init__(self, message: str = INVALID_CODE_MESSAGE) -> None:
        super().__init__(message)


class ReplayedCode(ValueError):
    """A one-time code matched a time step that was already used."""

    def __init__(self, message: str = REPLAYED_CODE_MESSAGE) -> None:
        super().__init__(message)


# --- Secrets at rest -------------------------------------------------------


def _fernet_from_setting(key: str) -> Fernet:
    """Derive a Fernet key from a configured string with HKDF-SHA256."""
    if not isinstance(key, str) or not key:
        raise ValueError(
            "The token encryption key is empty. Set TOKEN_ENCRYPTION_KEY (or "
            "SECRET_KEY) to a long random string."
        )

    # No salt: the derivation must give the same key on every start, and the
    # configured string is expected to be random already.
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO)
    derived = hkdf.derive(key.encode("utf-8"))

    return Fernet(base64.urlsafe_b64encode(derived))


class SecretBox:
    """Encrypt and decrypt token secrets with the configured key.

    :param current_key: the configured key string; any non-empty string
        works, as the encryption key is derived from it.
    :param previous_keys: keys used before a rotation; ciphertexts made with
        them still decrypt, new ones are always made with ``current_key``.
    :raises ValueError: if any key is empty.
    """

    def __init__(self, current_key: str, previous_keys: Iterable[str] = ()) -> None:
        fernets = [_fernet_from_setting(current_key)]
        fernets.extend(_fernet_from_setting(key) for key in previous_keys)
        self._fernet = MultiFernet(fernets)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        """Return the box of the configured keys: the current and former ones."""
        return cls(settings.encryption_key, settings.token_encryption_previous_keys)

    def encrypt(self, plaintext: str) -> str:
        """Return ``plaintext`` encrypted and authenticated, as ASCII text.

        Two encryptions of the same plaintext differ (random IV, timestamp).
        """
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        """Return the plaintext of ``ciphertext``.

        :raises SecretKeyMismatch: if no configured key decrypts it, which
            means the key changed, or the stored value was altered.
        """
        try:
            plaintext = self._fernet.decrypt(ciphertext.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            logger.warning("Decryption of a stored token secret failed")
            raise SecretKeyMismatch() from None

        return plaintext.decode("utf-8")

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt ``ciphertext`` with the current key.

        :raises SecretKeyMismatch: if no configured key decrypts it.
        """
        try:
            rotated = self._fernet.rotate(ciphertext.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            logger.warning("Rotation of a stored token secret failed")
            raise SecretKeyMismatch() from None

        return rotated.decode("ascii")


# --- Enrolment -------------------------------------------------------------


def new_totp_secret() -> str:
    """Return a new random TOTP secret: 160 bits as 32 base32 characters."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii")


def provisioning_uri(secret: str, account_name: str, issuer: str) -> str:
    """Return the ``otpauth://totp/...`` URI an authenticator app scans.

    The URI follows the Key Uri Format: label ``issuer:account_name``, and
    parameters secret, issuer, algorithm (SHA1), digits (6), period (30).

    :raises ValueError: if the issuer or account name is empty or contains
        a colon, which the format reserves as the label separator.
    """
    for field, value in (("issuer", issuer), ("account name", account_name)):
        if not value or ":" in value:
            raise ValueError(
                f"The {field} {value!r} cannot be put in an authenticator "
                "link: it must be non-empty and contain no colon."
            )

    label = f"{quote(issuer, safe='')}:{quote(account_name, safe='@')}"
    query = urlencode(
        {
            "secret": secret.replace(" ", "").upper().rstrip("="),
            "issuer": issuer,
            "algorithm": TOTP_ALGORITHM,
            "digits": TOTP_DIGITS,
            "period": TOTP_PERIOD,
        },
        quote_via=quote,
    )

    return f"otpauth://totp/{label}?{query}"


def qr_svg(uri: str, *, scale: int = 4) -> str:
    """Return a QR code of ``uri`` as an inline ``<svg>`` element.

    The SVG holds only drawing paths, no script and no copy of ``uri`` as
    text, so it can be put in a page unescaped.
    """
    qr = segno.make(uri, error="m", micro=False)

    return qr.svg_inline(scale=scale, svgclass="qr-code", lineclass=None)


def qr_png_data_uri(uri: str, *, scale: int = 4) -> str:
    """Return a QR code of ``uri`` as a ``data:image/png;base64,...`` URI."""
    qr = segno.make(uri, error="m", micro=False)

    return qr.png_data_uri(scale=scale)


# --- One-time codes ---------------------------------------------------------


def _secret_bytes(secret: str) -> bytes:
    """Decode a base32 secret, tolerating spaces, lower case and no padding."""
    compact = secret.replace(" ", "").upper().rstrip("=")
    padded = compact + "=" * (-len(compact) % 8)
    try:
        return base64.b32decode(padded)
    except (binascii.Error, ValueError):
        raise ValueError(
            "The stored TOTP secret is not valid base32; the token must be "
            "enrolled again."
        ) from None


def hotp_code(
    secret: str, counter: int, *, digits: int = TOTP_DIGITS, algorithm: str = "sha1"
) -> str:
    """Return the RFC 4226 HOTP code for ``counter``.

    :param secret: the shared secret in base32.
    :param counter: the moving factor; for TOTP, the time step.
    :param digits: how many decimal digits the code has (6 to 10).
    :param algorithm: the HMAC hash, ``sha1``, ``sha256`` or ``sha512``.
    :raises ValueError: if the secret is not base32.
    """
    mac = hmac.digest(_secret_bytes(secret), struct.pack(">Q", counter), algorithm)

    # Dynamic truncation (RFC 4226, section 5.3).
    offset = mac[-1] & 0x0F
    number = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF

    return str(number % 10**digits).zfill(digits)


def time_step(at: datetime | None = None, *, period: int = TOTP_PERIOD) -> int:
    """Return the RFC 6238 time step of ``at`` (now if None).

    A naive datetime is taken as UTC.
    """
    if at is None:
        at = datetime.now(UTC)
    elif at.tzinfo is None:
        at = at.replace(tzinfo=UTC)

    return int(at.timestamp()) // period


def totp_code(
    secret: str,
    at: datetime | None = None,
    *,
    digits: int = TOTP_DIGITS,
    algorithm: str = "sha1",
) -> str:
    """Return the TOTP code of ``secret`` at ``at`` (now if None)."""
    return hotp_code(secret, time_step(at), digits=digits, algorithm=algorithm)


def verify_totp(
    secret: str,
    code: str,
    *,
    last_used_step: int | None,
    at: datetime | None = None,
    drift_steps: int = 1,
) -> int:
    """Check a code typed by the user against a TOTP secret.

    :param secret: the token's shared secret in base32 (decrypted).
    :param code: what the user typed; spaces are ignored.
    :param last_used_step: the step returned by the last successful check
        for this token, or None if there was none.
    :param at: when the code was entered; now if None, UTC if naive.
    :param drift_steps: how many 30-second periods the phone's clock may be
        ahead or behind.
    :return: the matched time step, to store as the new ``last_used_step``.
    :raises InvalidCode: if the code is malformed or matches no step in the
        window.
    :raises ReplayedCode: if the code matches only steps at or before
        ``last_used_step``.
    """
    if drift_steps < 0:
        raise ValueError(f"drift_steps must be 0 or more, not {drift_steps}.")

    typed = code.replace(" ", "") if isinstance(code, str) else ""
    if not _CODE_PATTERN.fullmatch(typed):
        raise InvalidCode()

    current = time_step(at)
    window = range(current - drift_steps, current + drift_steps + 1)

    # Compare against every step in the window, without stopping at the first
    # match, so the time taken does not tell which step matched.
    matched = [
        step
        for step in window
        if hmac.compare_digest(hotp_code(secret, step).encode(), typed.encode())
    ]
    if not matched:
        raise InvalidCode()

    fresh = [
        step for step in matched if last_used_step is None or step > last_used_step
    ]
    if not fresh:
        raise ReplayedCode()

    return max(fresh)


# --- Emergency access --------------------------------------------------------


def new_emergency_code(length: int = 8) -> str:
    """Return a random emergency access code of unambiguous characters.

    :raises ValueError: if ``length`` is below 6.
    """
    if length < _MIN_EMERGENCY_CODE_LENGTH:
        raise ValueError(
            f"An emergency access code needs at least "
            f"{_MIN_EMERGENCY_CODE_LENGTH} characters, not {length}."
        )

    return "".join(secrets.choice(EMERGENCY_CODE_ALPHABET) for _ in range(length))


def _normalize_emergency_code(code: str) -> str:
    """Drop spaces and dashes and upper-case, as users copy codes loosely."""
    return re.sub(r"[\s-]", "", code).upper()


def _scrypt(code: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    """Return the scrypt hash of a normalized code."""
    return hashlib.scrypt(
        _normalize_emergency_code(code).encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=_SCRYPT_MAXMEM,
        dklen=32,
    )


def hash_code(code: str) -> str:
    """Return a salted scrypt hash of ``code`` to store.

    The result reads ``scrypt$n$r$p$salt$hash`` (salt and hash in base64), so
    the cost can be raised later without breaking stored hashes.
    """
    salt = secrets.token_bytes(16)
    digest = _scrypt(code, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    parts = [
        _HASH_SCHEME,
        str(_SCRYPT_N),
        str(_SCRYPT_R),
        str(_SCRYPT_P),
        base64.b64encode(salt).decode("ascii"),
        base64.b64encode(digest).decode("ascii"),
    ]

    return "$".join(parts)


def check_code(code: str, hashed: str) -> bool:
    """Return whether ``code`` matches a hash made by :func:`hash_code`.

    Case, spaces and dashes in ``code`` are ignored.

    :raises ValueError: if ``hashed`` was not made by :func:`hash_code`.
    """
    try:
        scheme, n, r, p, salt, expected = hashed.split("$")
        if scheme != _HASH_SCHEME:
            raise ValueError(scheme)
        cost = int(n), int(r), int(p)
        salt_bytes = base64.b64decode(salt, validate=True)
        expected_bytes = base64.b64decode(expected, validate=True)
    except (ValueError, binascii.Error):
        raise ValueError(
            "The stored emergency access code hash is not in the expected "
            "scrypt$n$r$p$salt$hash form; issue a new emergency access code."
        ) from None

    if not _normalize_emergency_code(code):
        return False

    actual = _scrypt(code, salt_bytes, *cost)

    return hmac.compare_digest(actual, expected_bytes)


# --- Activation links ---------------------------------------------------------


def new_activation_token() -> tuple[str, str]:
    """Return a new activation token and the digest to store for it.

    The token (256 random bits, URL-safe) goes in the link sent to the user;
    only the digest is stored, so a copy of the database cannot activate a
    token. The caller stores the expiry and clears the digest once used.
    """
    token = secrets.token_urlsafe(32)

    return token, digest_activation_token(token)


def digest_activation_token(token: str) -> str:
    """Return the SHA-256 hex digest of an activation token, for lookup."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()

"""Software tokens (TOTP, RFC 6238) and emergency access.

A software token's secret is generated when the token is issued and stored
encrypted with the configured key. The user receives it once, through an
activation link that expires: the link shows the ``otpauth://`` URI and its
QR code, then stops working (only its digest is stored). The user enables the
token by typing a current code; :func:`verify_code` then accepts each code
once.

Emergency access gives the owner of a token that is temporarily out of reach
a code with a short lifetime, and marks the token temporarily unavailable
until a real code from it is used again.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import otp
from ..config import Settings
from ..errors import ConflictError, NotFound, PermissionDenied, ValidationFailed
from ..identity import Actor
from ..models import utcnow
from .directory import get_user
from .inventory import (
    MANAGING_ROLES,
    change_state,
    find_token,
    get_model,
    may_act_on,
    record_event,
)
from .inventory_models import Token, TokenClass, TokenState

logger = logging.getLogger(__name__)

ACTIVATION_LIFETIME = timedelta(hours=72)
EMERGENCY_LIFETIME = timedelta(hours=8)
ISSUER = "Token Provisioning"

INVALID_LINK_MESSAGE = (
    "This activation link is not valid or has already been used. Ask your "
    "token administrator for a new activation link."
)


def secret_box(settings: Settings) -> otp.SecretBox:
    """Return the box that encrypts token secrets with the configured key."""
    return otp.SecretBox.from_settings(settings)


def activation_url(settings: Settings, link_token: str) -> str:
    """Return the activation link the user opens."""
    return f"{settings.base_url}/activate/{link_token}"


def issue_software_token(
    session: Session,
    *,
    owner: str,
    model_code: str,
    request_id: int | None,
    settings: Settings,
    actor: str = "system",
    lifetime: timedelta = ACTIVATION_LIFETIME,
) -> tuple[Token, str]:
    """Create a software token for ``owner`` with a new secret and link.

    :param model_code: a software token profile.
    :param lifetime: how long the activation link works (72 hours).
    :returns: the token (assigned to the owner) and its activation link.
    :raises NotFound: the owner or the model is unknown.
    :raises ValidationFailed: the model is a hardware model.
    """
    user = get_user(session, owner)
    model = get_model(session, model_code)
    if model.token_class != TokenClass.SOFTWARE:
        raise ValidationFailed(
            f"Token model '{model_code}' is a hardware model; a software token "
            "needs a software token profile."
        )

    token = Token(
        serial=_new_serial(session),
        model=model,
        state=TokenState.AVAILABLE,
        domain_path=user.domain.path,
        secret_ciphertext=secret_box(settings).encrypt(otp.new_totp_secret()),
        request_id=request_id,
    )
    session.add(token)
    session.flush()
    where = f" for request {request_id}" if request_id else ""
    record_event(session, token, actor=actor, message=f"Issued{where}")
    token.owner = owner
    change_state(
        session, token, TokenState.ASSIGNED, actor=actor, message=f"Assigned to {owner}"
    )
    link = _new_link(token, lifetime)

    return token, activation_url(settings, link)


def new_activation_link(
    session: Session,
    actor: Actor,
    serial: str,
    *,
    settings: Settings,
    lifetime: timedelta = ACTIVATION_LIFETIME,
) -> str:
    """Give a software token that is not enabled yet a new secret and link.

    The former link stops working, and so does any secret shown by it.

    :raises NotFound: no such token.
    :raises PermissionDenied: the actor is not a token administrator of it.
    :raises ConflictError: the token is not an assigned software token.
    """
    token = find_token(session, serial)
    if token is None:
        raise NotFound(f"No token with serial number {serial}; check the number.")
    if not may_act_on(actor, token.domain_path, MANAGING_ROLES):
        raise PermissionDenied(
            f"{actor.username} may not send a new activation link for token "
            f"{serial}: that needs the token administrator role in "
            f"'{token.domain_path}'."
        )
    if token.token_class != TokenClass.SOFTWARE or token.state != TokenState.ASSIGNED:
        raise ConflictError(
            f"Token {serial} is a {token.token_class} token in state "
            f"{token.state}; only an assigned software token that is not enabled "
            "yet gets a new activation link."
        )

    token.secret_ciphertext = secret_box(settings).encrypt(otp.new_totp_secret())
    token.last_used_step = None
    link = _new_link(token, lifetime)
    record_event(session, token, actor=actor.username, message="New activation link")

    return activation_url(settings, link)


def _new_link(token: Token, lifetime: timedelta) -> str:
    link, digest = otp.new_activation_token()
    token.activation_digest = digest
    token.activation_expires_at = utcnow() + lifetime
    return link


def _new_serial(session: Session) -> str:
    """Return an unused serial number for a software token."""
    while True:
        serial = f"SW{secrets.randbelow(10**10):010d}"
        if find_token(session, serial) is None:
            return serial


def activation_details(
    session: Session,
    token_secret_link: str,
    *,
    actor: Actor,
    settings: Settings,
    now: datetime | None = None,
) -> tuple[Token, str, str]:
    """Open an activation link, once: return the token, its URI and QR code.

    The URI holds the token's secret, so only the token's owner may open the
    link; anyone else is refused and the link stays unspent for the owner.

    :param token_secret_link: the token from the link, or the whole link.
    :param actor: who opens it; must be the token's owner.
    :returns: ``(token, otpauth_uri, qr_svg)``; the link is spent.
    :raises NotFound: the link is unknown or was used already.
    :raises PermissionDenied: ``actor`` is not the token's owner.
    :raises ConflictError: the link expired.
    """
    link = token_secret_link.rstrip("/").rsplit("/", 1)[-1]
    token = session.scalars(
        select(Token).where(
            Token.activation_digest == otp.digest_activation_token(link)
        )
    ).first()
    if token is None or token.state != TokenState.ASSIGNED:
        raise NotFound(INVALID_LINK_MESSAGE)
    if token.owner != actor.username:
        raise PermissionDenied(
            "This activation link is for a software token of another user, so "
            f"{actor.username} may not open it; it stays unused for its owner. If "
            "the token is yours, sign in with your own account and open the link "
            "again."
        )
    expires_at = token.activation_expires_at
    if expires_at is not None and (now or utcnow()) >= expires_at:
        raise ConflictError(
            f"This activation link expired on {expires_at:%Y-%m-%d %H:%M} UTC. "
            "Ask your token administrator for a new activation link."
        )

    secret = secret_box(settings).decrypt(token.secret_ciphertext or "")
    uri = otp.provisioning_uri(secret, token.owner or token.serial, ISSUER)
    token.activation_digest = None
    token.activation_expires_at = None
    record_event(session, token, actor=actor.username, message="Activation link used")

    return token, uri, otp.qr_svg(uri)


def enable_software_token(
    session: Session,
    actor: Actor,
    serial: str,
    code: str,
    *,
    settings: Settings,
    at: datetime | None = None,
) -> Token:
    """Enable the actor's software token with a code from their app.

    :raises NotFound: no such token.
    :raises PermissionDenied: the token belongs to someone else.
    :raises ConflictError: the token is not an assigned software token.
    :raises ValidationFailed: the code is wrong or used already (field
        ``code``).
    """
    token = find_token(session, serial)
    if token is None:
        raise NotFound(f"No token with serial number {serial}; check the number.")
    if token.owner != actor.username:
        raise PermissionDenied(
            f"Token {serial} is not assigned to you; only its owner can enable it."
        )
    if token.token_class != TokenClass.SOFTWARE or token.state != TokenState.ASSIGNED:
        raise ConflictError(
            f"Token {serial} is a {token.token_class} token in state "
            f"{token.state}; only an assigned software token can be enabled "
            "with a code."
        )

    token.last_used_step = _check(
        token, code, settings, at, "The token was not enabled."
    )
    change_state(
        session, token, TokenState.ACTIVE, actor=actor.username, message="Enabled"
    )

    return token


def _check(token: Token, code: str, settings: Settings, at, message: str) -> int:
    secret = secret_box(settings).decrypt(token.secret_ciphertext or "")
    try:
        return otp.verify_totp(secret, code, last_used_step=token.last_used_step, at=at)
    except (otp.InvalidCode, otp.ReplayedCode) as err:
        raise ValidationFailed(message, {"code": str(err)}) from None


def verify_code(
    session: Session,
    serial: str,
    code: str,
    *,
    settings: Settings,
    at: datetime | None = None,
) -> bool:
    """Return whether ``code`` is a fresh, valid code of an active token.

    Codes within one period of clock drift are accepted; a code whose time
    step was already used is refused. A valid code from a token under
    emergency access ends the emergency access: the token is back.
    """
    token = find_token(session, serial)
    if (
        token is None
        or token.state != TokenState.ACTIVE
        or token.secret_ciphertext is None
    ):
        return False
    try:
        token.last_used_step = _check(token, code, settings, at, "")
    except ValidationFailed as err:
        logger.info("Refused a code of token %s: %s", serial, err.field_errors["code"])
        return False

    if token.temporarily_unavailable:
        _end_emergency(session, token, "A code of the token was used again")
    session.flush()

    return True


def emergency_access(
    session: Session,
    actor: Actor,
    serial: str,
    *,
    lifetime: timedelta = EMERGENCY_LIFETIME,
) -> str:
    """Give a temporary code for a token that is temporarily unavailable.

    The owner, or a token administrator of the token's inventory, may ask.
    A new request replaces the former code.

    :param lifetime: how long the code works (8 hours by default).
    :returns: the code, shown once; only its hash is stored.
    :raises NotFound: no such token.
    :raises PermissionDenied: the actor is neither owner nor administrator.
    :raises ConflictError: the token is not active.
    """
    token = find_token(session, serial)
    if token is None:
        raise NotFound(f"No token with serial number {serial}; check the number.")
    if token.owner != actor.username and not may_act_on(
        actor, token.domain_path, MANAGING_ROLES
    ):
        raise PermissionDenied(
            f"Token {serial} is not assigned to you; only its owner or a token "
            "administrator can ask for emergency access."
        )
    if token.state != TokenState.ACTIVE:
        raise ConflictError(
            f"Token {serial} is {token.state}; emergency access is only for an "
            "active token that is temporarily out of reach."
        )

    code = otp.new_emergency_code()
    token.emergency_code_hash = otp.hash_code(code)
    token.emergency_expires_at = utcnow() + lifetime
    token.temporarily_unavailable = True
    until = f"{token.emergency_expires_at:%Y-%m-%d %H:%M} UTC"
    record_event(
        session,
        token,
        actor=actor.username,
        message=f"Emergency access until {until}; token temporarily unavailable",
    )

    return code


def check_emergency_code(
    session: Session, serial: str, code: str, *, at: datetime | None = None
) -> bool:
    """Return whether ``code`` is the live emergency code of token ``serial``."""
    token = find_token(session, serial)
    if (
        token is None
        or token.state != TokenState.ACTIVE
        or not token.temporarily_unavailable
        or token.emergency_code_hash is None
        or token.emergency_expires_at is None
    ):
        return False
    if (at or utcnow()) >= token.emergency_expires_at:
        return False

    return otp.check_code(code, token.emergency_code_hash)


def end_emergency_access(session: Session, actor: Actor, serial: str) -> Token:
    """End emergency access early: the token is back with its owner.

    :raises NotFound, PermissionDenied: as :func:`emergency_access`.
    """
    token = find_token(session, serial)
    if token is None:
        raise NotFound(f"No token with serial number {serial}; check the number.")
    if token.owner != actor.username and not may_act_on(
        actor, token.domain_path, MANAGING_ROLES
    ):
        raise PermissionDenied(
            f"Token {serial} is not assigned to you; only its owner or a token "
            "administrator can end emergency access."
        )
    _end_emergency(session, token, f"Emergency access ended by {actor.username}")
    return token


def _end_emergency(session: Session, token: Token, message: str) -> None:
    token.temporarily_unavailable = False
    token.emergency_code_hash = None
    token.emergency_expires_at = None
    record_event(session, token, actor=token.owner or "system", message=message)

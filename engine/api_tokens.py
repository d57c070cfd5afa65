"""Personal API tokens: how scripts and the BPMN modeler act as a user.

A token is a random secret handed to its owner once, when it is created; only
its SHA-256 digest is stored, so a copy of the database reveals no usable
token. (A salted slow hash would add nothing: the secret has 256 bits of
entropy, which no guessing reaches, and checking it must stay cheap because
every API call does.)

A token acts as its owner with the owner's roles *as they are when it is
used*: a role revoked from the user is gone from their tokens at once. A
token may be narrowed to some of those roles; it can never widen them.
Tokens can expire, are revoked one by one, and record when they were last
used.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import click
from sqlalchemy import JSON, ForeignKey, String, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from . import audit
from .config import Settings
from .db import Database
from .errors import NotFound, ValidationFailed
from .identity import (
    ADMINISTRATOR,
    ROLES,
    SYSTEM,
    Actor,
    actor_for,
    actor_from_user,
)
from .models import Base, User, utcnow

logger = logging.getLogger(__name__)

#: every token starts with this, so that a leaked one is easy to recognise
TOKEN_PREFIX = "pat_"
#: characters of a token kept in clear to tell tokens apart in a list
SHOWN_CHARS = 12
#: last use is written at most this often per token, to spare the database a
#: write on every API call
LAST_USED_RESOLUTION = timedelta(seconds=60)
MAX_NAME_LENGTH = 100


class ApiToken(Base):
    """A personal API token; ``token_sha256`` is the digest of the secret."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    shown: Mapped[str] = mapped_column(String(SHOWN_CHARS))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    roles: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    revoked_by: Mapped[str | None] = mapped_column(String(150))

    user: Mapped[User] = relationship(lazy="joined")

    @property
    def is_active(self) -> bool:
        now = utcnow()
        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > now
        )

    def as_dict(self) -> dict[str, Any]:
        """Describe the token without its secret."""
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.user.username,
            "shown": self.shown,
            "roles": self.roles,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "last_used_at": _iso(self.last_used_at),
            "revoked_at": _iso(self.revoked_at),
            "active": self.is_active,
        }


@dataclass(frozen=True)
class TokenIdentity:
    """Who a presented token stands for, and with which roles."""

    token_id: int
    user: User
    actor: Actor
    #: the recorded last use is older than :data:`LAST_USED_RESOLUTION`
    stale: bool = False


def digest(secret: str) -> str:
    """Return the stored form of a token secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(
    session: Session,
    username: str,
    *,
    name: str,
    roles: list[str] | None = None,
    expires_at: datetime | None = None,
    actor: str,
) -> tuple[ApiToken, str]:
    """Create a token for ``username`` and return it with its secret.

    The secret is returned here and never again; store it where it is used.

    :param roles: limit the token to these roles of the user (default: all
        the roles the user holds whenever the token is used).
    :param expires_at: when the token stops working (default: never).
    :param actor: the username of whoever creates it (the owner, or "system"
        at the command line), for the audit trail; the secret is not recorded.
    :raises NotFound: no active user has that name.
    :raises ValidationFailed: the name is empty or too long, a role is not
        held by the user, or the expiry is not in the future.
    """
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None or not user.is_active:
        raise NotFound(f"No active user named '{username}'; check the spelling.")

    errors: dict[str, str] = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = "Give the token a name that says where it is used."
    elif len(name) > MAX_NAME_LENGTH:
        errors["name"] = f"Use at most {MAX_NAME_LENGTH} characters."
    if roles is not None:
        held = {grant.role for grant in user.grants}
        unknown = [r for r in roles if r not in ROLES]
        missing = [r for r in roles if r in ROLES and r not in held]
        if unknown:
            errors["roles"] = (
                f"Unknown role {', '.join(unknown)}; roles are {', '.join(ROLES)}."
            )
        elif missing:
            errors["roles"] = (
                f"{username} does not hold {', '.join(missing)}; a token can only "
                "carry roles its owner holds."
            )
    if expires_at is not None and expires_at <= utcnow():
        errors["expires_at"] = "The expiry must be in the future."
    if errors:
        raise ValidationFailed("The API token was not created.", errors)

    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=name,
        shown=secret[:SHOWN_CHARS],
        token_sha256=digest(secret),
        roles=sorted(set(roles)) if roles is not None else None,
        expires_at=expires_at,
    )
    token.user = user
    session.add(token)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="api_token_created",
        subject=f"api token {token.id}",
        message=(
            f"Created API token {token.id} '{name}' for {username}"
            f" ({', '.join(token.roles) if token.roles is not None else 'all roles'}"
            f", {_expiry(expires_at)})"
        ),
        domain_path=user.domain.path,
        data={"token_id": token.id, "owner": username},
    )
    return token, secret


def resolve_token(
    session: Session, secret: str, *, now: datetime | None = None
) -> TokenIdentity | None:
    """Return who a presented token stands for, or None if it does not work.

    A token does not work when it is unknown, revoked or expired, or when its
    owner is inactive. Nothing is written; when the result is ``stale``, call
    :func:`record_use` in a write transaction.
    """
    if not secret or not secret.startswith(TOKEN_PREFIX):
        return None
    token = session.scalars(
        select(ApiToken).where(ApiToken.token_sha256 == digest(secret))
    ).first()
    now = now or utcnow()
    if token is None or not token.user.is_active or token.revoked_at is not None:
        return None
    if token.expires_at is not None and token.expires_at <= now:
        return None

    stale = (
        token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION
    )
    return TokenIdentity(
        token.id, token.user, token_actor(token.user, token.roles), stale
    )


def record_use(session: Session, token_id: int, *, now: datetime | None = None) -> None:
    """Record that a token was used now, unless that was recorded lately."""
    now = now or utcnow()
    session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id)
        .where(
            or_(
                ApiToken.last_used_at.is_(None),
                ApiToken.last_used_at < now - LAST_USED_RESOLUTION,
            )
        )
        .values(last_used_at=now)
    )


def token_actor(user: User, roles: list[str] | None) -> Actor:
    """Return the user's actor, keeping only the grants of ``roles`` if given."""
    actor = actor_from_user(user)
    if roles is None:
        return actor
    return Actor(
        username=actor.username,
        domain_path=actor.domain_path,
        grants=tuple(g for g in actor.grants if g[0] in roles),
    )


def list_tokens(session: Session, username: str) -> list[ApiToken]:
    """Return the tokens of ``username``, newest first, revoked ones included."""
    return list(
        session.scalars(
            select(ApiToken)
            .join(ApiToken.user)
            .where(User.username == username)
            .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        )
    )


def get_token(session: Session, actor: Actor, token_id: int) -> ApiToken:
    """Return a token its owner, or an administrator over the owner, may see.

    :raises NotFound: no such token, or the actor may not see it (the two are
        not told apart, so that ids of other people's tokens leak nothing).
    """
    token = session.get(ApiToken, token_id)
    if token is None or not _may_manage(actor, token):
        raise NotFound(f"API token {token_id} does not exist; list your tokens.")
    return token


def revoke_token(session: Session, actor: Actor, token_id: int) -> ApiToken:
    """Revoke a token at once; revoking a revoked token changes nothing.

    :raises NotFound: as :func:`get_token`.
    """
    token = get_token(session, actor, token_id)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        token.revoked_by = actor.username
        audit.record(
            session,
            actor=actor.username,
            action="api_token_revoked",
            subject=f"api token {token.id}",
            message=f"Revoked API token {token.id} '{token.name}' of "
            f"{token.user.username}",
            domain_path=token.user.domain.path,
            data={"token_id": token.id, "owner": token.user.username},
        )
    return token


def _may_manage(actor: Actor, token: ApiToken) -> bool:
    if token.user.username == actor.username:
        return True
    return actor.has_role(ADMINISTRATOR, token.user.domain.path)


def _expiry(expires_at: datetime | None) -> str:
    if expires_at is None:
        return "no expiry"
    return f"expires {expires_at.isoformat(timespec='minutes')}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- command line (wired into ``provisioning`` by engine/cli.py) -------------


@click.group("api-token")
def cli() -> None:
    """Create, list and revoke personal API tokens."""


@cli.command("create")
@click.option("--user", "username", required=True, help="Whose token it is.")
@click.option("--name", required=True, help="Where the token is used.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    help="Limit the token to this role of the user (repeatable).",
)
@click.option("--days", type=int, default=None, help="Expire after this many days.")
def create_command(
    username: str, name: str, roles: tuple[str, ...], days: int | None
) -> None:
    """Create a token and print its secret (shown this once only)."""
    database = Database.from_settings(Settings.from_env())
    expires_at = utcnow() + timedelta(days=days) if days else None
    try:
        with database.write() as session:
            token, secret = create_token(
                session,
                username,
                name=name,
                roles=list(roles) or None,
                expires_at=expires_at,
                actor=SYSTEM,
            )
            token_id = token.id
    except (NotFound, ValidationFailed) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"Token {token_id} for {username}; copy it now, it is not shown again:")
    click.echo(secret)


@cli.command("list")
@click.option("--user", "username", required=True)
def list_command(username: str) -> None:
    """List a user's tokens (never their secrets)."""
    database = Database.from_settings(Settings.from_env())
    with database.read() as session:
        for token in list_tokens(session, username):
            state = "active" if token.is_active else "inactive"
            used = _iso(token.last_used_at) or "never used"
            click.echo(f"{token.id:6} {token.shown}… {state:8} {used:32} {token.name}")


@cli.command("revoke")
@click.argument("token_id", type=int)
@click.option("--user", "username", required=True, help="The token's owner.")
def revoke_command(token_id: int, username: str) -> None:
    """Revoke a token of a user."""
    database = Database.from_settings(Settings.from_env())
    try:
        with database.write() as session:
            revoke_token(session, actor_for(session, username), token_id)
    except NotFound as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"Token {token_id} is revoked.")

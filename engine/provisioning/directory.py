"""The directory: security domains, users, role grants, passwords and groups.

Security domains form a tree named by paths ("acme/emea/paris"); a user
belongs to one, and a role granted in a domain covers its sub-domains.
Passwords are stored as werkzeug's salted scrypt hashes.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable

from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from .. import audit
from ..errors import ConflictError, NotFound, PermissionDenied, ValidationFailed
from ..identity import ROLES, SYSTEM, SYSTEM_ACTOR, Actor
from ..models import RoleGrant, SecurityDomain, User
from .inventory_models import DirectoryGroup, GroupMember

logger = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 12

_SEGMENT = re.compile(r"[a-z0-9][a-z0-9_-]{0,49}")
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_RESERVED_USERNAMES = {SYSTEM, "admin-system", "anonymous", "self-service"}


@functools.cache
def _dummy_hash() -> str:
    """Return a hash to check against when the user does not exist.

    A login attempt then takes as long for an unknown name as for a wrong
    password. Made on first use, so importing the module stays cheap.
    """
    return generate_password_hash("not a password of anyone")


# -- security domains ---------------------------------------------------------


def create_domain(
    session: Session, path: str, name: str | None = None, *, actor: str
) -> SecurityDomain:
    """Create the security domain ``path`` under its parent.

    :param path: lower-case segments joined by '/', e.g. "acme/emea/paris".
    :param name: a display name (default: the last segment).
    :param actor: the username of whoever creates it, for the audit trail.
    :returns: the new domain, flushed.
    :raises ValidationFailed: the path is malformed or its parent is missing.
    :raises ConflictError: the domain exists already.
    """
    segments = path.split("/") if path else []
    if not segments or not all(_SEGMENT.fullmatch(s) for s in segments):
        raise ValidationFailed(
            f"Security domain path '{path}' is not valid: use lower-case "
            "letters, digits, '-' and '_' in segments joined by '/', such as "
            "'acme/emea/paris'."
        )
    if find_domain(session, path) is not None:
        raise ConflictError(f"Security domain '{path}' exists already.")

    parent = None
    if len(segments) > 1:
        parent_path = "/".join(segments[:-1])
        parent = find_domain(session, parent_path)
        if parent is None:
            raise ValidationFailed(
                f"Security domain '{parent_path}' does not exist; create it "
                f"before '{path}'."
            )

    domain = SecurityDomain(path=path, name=name or segments[-1], parent=parent)
    session.add(domain)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="domain_created",
        subject=f"domain {path}",
        message=f"Created security domain {path} ({domain.name})",
        domain_path=path,
    )

    return domain


def find_domain(session: Session, path: str) -> SecurityDomain | None:
    """Return the security domain at ``path``, or None."""
    return session.scalars(
        select(SecurityDomain).where(SecurityDomain.path == path)
    ).first()


def get_domain(session: Session, path: str) -> SecurityDomain:
    """Return the security domain at ``path``; raise NotFound if there is none."""
    domain = find_domain(session, path)
    if domain is None:
        raise NotFound(
            f"Security domain '{path}' does not exist; see `provisioning users "
            "domains` for the existing ones."
        )
    return domain


def unknown_domain_message(session: Session, path: str) -> str:
    """Say that security domain ``path`` does not exist, and which ones do."""
    shown = 10
    paths = list(
        session.scalars(
            select(SecurityDomain.path).order_by(SecurityDomain.path).limit(shown + 1)
        )
    )
    if not paths:
        return (
            f"Security domain '{path}' does not exist, and no security domain is "
            "defined yet; an administrator creates them first."
        )
    listed = ", ".join(paths[:shown])
    if len(paths) > shown:
        listed += ", ... (`provisioning users domains` lists them all)"
    return (
        f"Security domain '{path}' does not exist; the security domains are: {listed}."
    )


def list_domains(session: Session) -> list[SecurityDomain]:
    """Return every security domain, parents before their sub-domains."""
    return list(session.scalars(select(SecurityDomain).order_by(SecurityDomain.path)))


# -- users --------------------------------------------------------------------


def create_user(
    session: Session,
    *,
    username: str,
    display_name: str,
    email: str,
    domain_path: str,
    password: str | None = None,
    roles: Iterable[str | tuple[str, str]] = (),
    actor: str,
) -> User:
    """Create a user in a security domain, with an optional password and roles.

    :param roles: role names (granted in the user's own domain) or
        ``(role, domain_path)`` pairs.
    :param actor: the username of whoever creates the user, for the audit
        trail; each role granted is recorded on its own.
    :returns: the new user, flushed.
    :raises ValidationFailed: a field is invalid; ``field_errors`` says which.
    :raises ConflictError: the username is taken.
    """
    errors: dict[str, str] = {}
    username = (username or "").strip()
    email = (email or "").strip()
    display_name = (display_name or "").strip()

    if not _USERNAME.fullmatch(username):
        errors["username"] = (
            f"'{username}' is not a valid username: use 2 to 64 lower-case "
            "letters, digits, '.', '_' or '-', starting with a letter or digit."
        )
    elif username in _RESERVED_USERNAMES:
        errors["username"] = f"'{username}' is reserved; choose another username."
    if not display_name:
        errors["display_name"] = "Enter the person's full name."
    if not _EMAIL.fullmatch(email) or len(email) > 320:
        errors["email"] = (
            f"'{email}' is not a valid e-mail address; use the form name@example.com."
        )
    domain = find_domain(session, domain_path)
    if domain is None:
        errors["domain_path"] = unknown_domain_message(session, domain_path)
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        errors["password"] = (
            f"The password must have at least {MIN_PASSWORD_LENGTH} characters."
        )
    if errors:
        raise ValidationFailed("The user was not created.", errors)

    if find_user(session, username) is not None:
        raise ConflictError(
            f"A user named '{username}' exists already; choose another username."
        )

    user = User(
        username=username,
        display_name=display_name,
        email=email,
        domain=domain,
        password_hash=generate_password_hash(password) if password else None,
        is_active=True,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="user_created",
        subject=f"user {username}",
        message=(
            f"Created user {username} ({display_name}, {email}) in {domain_path}"
            + (", with a password" if password else "")
        ),
        domain_path=domain_path,
    )
    for role in roles:
        role_name, scope = (role, domain_path) if isinstance(role, str) else role
        grant_role(session, username, role_name, scope, actor=actor)

    return user


def find_user(session: Session, username: str) -> User | None:
    """Return the user named ``username``, or None."""
    return session.scalars(select(User).where(User.username == username)).first()


def get_user(session: Session, username: str) -> User:
    """Return the user named ``username``; raise NotFound if there is none."""
    user = find_user(session, username)
    if user is None:
        raise NotFound(
            f"No user named '{username}'; check the spelling or create the user first."
        )
    return user


def grant_role(
    session: Session, username: str, role: str, domain_path: str, *, actor: str
) -> RoleGrant:
    """Grant ``role`` to a user within ``domain_path`` and its sub-domains.

    Granting a role the user holds already returns the existing grant and
    records nothing.

    :param actor: the username of whoever grants it, for the audit trail.

    :raises ValidationFailed: the role is unknown.
    :raises NotFound: the user or the domain does not exist.
    """
    if role not in ROLES:
        raise ValidationFailed(
            f"Unknown role '{role}'; the roles are: {', '.join(ROLES)}."
        )
    user = get_user(session, username)
    domain = get_domain(session, domain_path)

    for grant in user.grants:
        if grant.role == role and grant.domain_id == domain.id:
            return grant

    grant = RoleGrant(user=user, role=role, domain=domain)
    session.add(grant)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="role_granted",
        subject=f"user {username}",
        message=f"Granted {role} in {domain_path} to {username}",
        domain_path=user.domain.path,
        data={"role": role, "scope": domain_path},
    )

    return grant


def revoke_role(
    session: Session, username: str, role: str, domain_path: str, *, actor: str
) -> None:
    """Take ``role`` in ``domain_path`` away from a user.

    :param actor: the username of whoever revokes it, for the audit trail.
    :raises NotFound: the user does not hold that role in that domain.
    """
    user = get_user(session, username)
    for grant in list(user.grants):
        if grant.role == role and grant.domain.path == domain_path:
            user.grants.remove(grant)
            session.flush()
            audit.record(
                session,
                actor=actor,
                action="role_revoked",
                subject=f"user {username}",
                message=f"Revoked {role} in {domain_path} from {username}",
                domain_path=user.domain.path,
                data={"role": role, "scope": domain_path},
            )
            return

    raise NotFound(
        f"User '{username}' does not hold the role {role} in '{domain_path}'; "
        "nothing was revoked."
    )


def set_password(session: Session, username: str, password: str, *, actor: str) -> None:
    """Replace a user's password.

    :param actor: the username of whoever sets it; the audit trail says that
        the password was set, never what it is.
    :raises ValidationFailed: the password is too short.
    :raises NotFound: no such user.
    """
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(
            "The password was not changed.",
            {
                "password": f"The password must have at least "
                f"{MIN_PASSWORD_LENGTH} characters."
            },
        )
    user = get_user(session, username)
    user.password_hash = generate_password_hash(password)
    audit.record(
        session,
        actor=actor,
        action="password_set",
        subject=f"user {username}",
        message=f"Set the password of {username}",
        domain_path=user.domain.path,
    )


def set_active(session: Session, username: str, active: bool, *, actor: str) -> User:
    """Enable or disable a user's account; a disabled user cannot sign in.

    Setting the state the account has already records nothing.

    :param actor: the username of whoever changes it, for the audit trail.
    :raises NotFound: no such user.
    """
    user = get_user(session, username)
    if user.is_active == active:
        return user

    user.is_active = active
    session.flush()
    state = "enabled" if active else "disabled"
    audit.record(
        session,
        actor=actor,
        action="user_enabled" if active else "user_disabled",
        subject=f"user {username}",
        message=f"The account of {username} is {state}",
        domain_path=user.domain.path,
    )

    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """Return the active user whose name and password match, or None.

    The password is checked even when the user is unknown or inactive, so the
    time taken does not tell whether a username exists.
    """
    user = find_user(session, (username or "").strip())
    stored = user.password_hash if user is not None and user.password_hash else None
    matches = check_password_hash(stored or _dummy_hash(), password or "")

    if user is None or stored is None or not user.is_active or not matches:
        logger.info("Refused a login for %r", username)
        return None

    return user


def list_users(
    session: Session,
    actor: Actor,
    *,
    domain_path: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[User]:
    """Return the users the actor may see, ordered by username.

    Holders of any role see the users of the domains their grants cover; the
    system actor sees everyone; anyone else sees only themselves.

    :param domain_path: only users of this domain and its sub-domains.
    """
    query = select(User).join(User.domain).order_by(User.username)

    if actor != SYSTEM_ACTOR:
        scopes = sorted({scope for _, scope in actor.grants})
        if not scopes:
            query = query.where(User.username == actor.username)
        else:
            query = query.where(or_(*(_within(scope) for scope in scopes)))
    if domain_path:
        query = query.where(_within(domain_path))

    return list(session.scalars(query.limit(limit).offset(offset)))


def _within(path: str):
    return or_(SecurityDomain.path == path, SecurityDomain.path.startswith(path + "/"))


# -- groups -------------------------------------------------------------------


def create_group(session: Session, name: str, description: str = "") -> DirectoryGroup:
    """Create a user group.

    :raises ValidationFailed: the name is empty.
    :raises ConflictError: a group of that name exists.
    """
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("Enter a name for the group.")
    if find_group(session, name) is not None:
        raise ConflictError(f"A group named '{name}' exists already.")

    group = DirectoryGroup(name=name, description=description)
    session.add(group)
    session.flush()

    return group


def find_group(session: Session, name: str) -> DirectoryGroup | None:
    """Return the group named ``name``, or None."""
    return session.scalars(
        select(DirectoryGroup).where(DirectoryGroup.name == name)
    ).first()


def add_member(session: Session, group_name: str, username: str) -> bool:
    """Add a user to a group; return False if they were a member already.

    :raises NotFound: the group or the user does not exist.
    """
    group = find_group(session, group_name)
    if group is None:
        raise NotFound(
            f"Group '{group_name}' does not exist; create it first or correct "
            "the group name."
        )
    get_user(session, username)
    if any(m.username == username for m in group.members):
        return False

    group.members.append(GroupMember(username=username))
    session.flush()
    logger.info("Added %s to group %s", username, group_name)

    return True


def groups_of(session: Session, username: str) -> list[str]:
    """Return the names of the groups ``username`` belongs to."""
    return list(
        session.scalars(
            select(DirectoryGroup.name)
            .join(GroupMember)
            .where(GroupMember.username == username)
            .order_by(DirectoryGroup.name)
        )
    )


def require_admin_over(actor: Actor, path: str, action: str) -> None:
    """Raise PermissionDenied unless the actor administers ``path``."""
    if actor == SYSTEM_ACTOR or actor.has_role("administrator", path):
        return
    raise PermissionDenied(
        f"{actor.username} may not {action} in '{path}': that needs the "
        "administrator role in that security domain."
    )

"""Who is acting, what roles they hold, and in which security domains.

A role is granted within a security domain and covers its sub-domains. A
candidate group of a task, or the lane it sits in, names a role ("Request
Approver" lane = ``request_approver`` role); a user may work the task if
they hold that role in a domain that contains the request's domain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from .errors import NotFound
from .models import User

REQUEST_APPROVER = "request_approver"
TOKEN_DISTRIBUTOR = "token_distributor"
TOKEN_ADMINISTRATOR = "token_administrator"
ADMINISTRATOR = "administrator"
ROLES = (REQUEST_APPROVER, TOKEN_DISTRIBUTOR, TOKEN_ADMINISTRATOR, ADMINISTRATOR)
SYSTEM = "system"


def role_of_lane(lane: str | None) -> str | None:
    """Return the role a lane stands for: 'Token Distributor' -> 'token_distributor'."""
    if not lane:
        return None
    return re.sub(r"[^a-z0-9]+", "_", lane.lower()).strip("_") or None


def in_scope(grant_path: str, path: str) -> bool:
    """Return whether ``path`` is ``grant_path`` or one of its sub-domains."""
    return path == grant_path or path.startswith(grant_path + "/")


@dataclass(frozen=True)
class Actor:
    """A user as the engine sees them: name, home domain and scoped roles."""

    username: str
    domain_path: str = ""
    grants: tuple[tuple[str, str], ...] = field(default=())

    def has_role(self, role: str, path: str | None = None) -> bool:
        """Return whether the actor holds ``role`` (over ``path`` if given)."""
        return any(
            r == role and (path is None or in_scope(scope, path))
            for r, scope in self.grants
        )

    def roles_over(self, path: str) -> set[str]:
        return {r for r, scope in self.grants if in_scope(scope, path)}

    def scopes(self, role: str) -> list[str]:
        return [scope for r, scope in self.grants if r == role]

    @property
    def is_admin(self) -> bool:
        return any(r == ADMINISTRATOR for r, _ in self.grants)


SYSTEM_ACTOR = Actor(SYSTEM)


def actor_for(session: Session, username: str) -> Actor:
    """Load the actor for ``username``.

    :raises NotFound: no active user has that name.
    """
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None or not user.is_active:
        raise NotFound(
            f"No active user named '{username}'; check the spelling or "
            "create the user first."
        )
    return actor_from_user(user)


def actor_from_user(user: User) -> Actor:
    return Actor(
        username=user.username,
        domain_path=user.domain.path,
        grants=tuple(sorted((g.role, g.domain.path) for g in user.grants)),
    )

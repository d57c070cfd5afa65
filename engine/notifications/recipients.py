"""Who receives which e-mail.

Staff are found the same way the inbox finds them: by a role granted in a
security domain that contains the request's domain. A task's candidates are
further filtered by :func:`engine.instances.check_may_work`, so nobody is
asked to approve their own request or a second step of a request they
already approved.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.errors import PermissionDenied
from engine.identity import ADMINISTRATOR, actor_from_user, in_scope, role_of_lane
from engine.instances import check_may_work
from engine.models import HumanTask, ProcessInstance, RoleGrant, User

SELF_SERVICE_PREFIX = "self-service:"


@dataclass(frozen=True)
class Recipient:
    """An address to write to and the person behind it."""

    address: str
    name: str
    username: str = ""


def requester(session: Session, instance: ProcessInstance) -> Recipient | None:
    """Return the person who submitted the request, if they can be written to.

    A self-service account request has no user yet; its initiator is
    recorded as ``self-service:<address>`` and the mail goes to that address.
    """
    initiator = instance.initiator
    if initiator.startswith(SELF_SERVICE_PREFIX):
        address = initiator.removeprefix(SELF_SERVICE_PREFIX)
        return Recipient(address=address, name=address) if "@" in address else None
    user = session.scalars(select(User).where(User.username == initiator)).first()
    return _recipient(user) if user is not None else None


def users_with_role(session: Session, role: str, domain_path: str) -> list[User]:
    """Return active users holding ``role`` in a domain containing ``domain_path``."""
    grants = session.scalars(select(RoleGrant).where(RoleGrant.role == role))
    users = {
        grant.user.username: grant.user
        for grant in grants
        if grant.user.is_active and in_scope(grant.domain.path, domain_path)
    }
    return [users[name] for name in sorted(users)]


def administrators(session: Session, instance: ProcessInstance) -> list[Recipient]:
    """Return the administrators whose scope covers the request's domain."""
    return _addressable(users_with_role(session, ADMINISTRATOR, instance.domain_path))


def task_candidates(
    session: Session, task: HumanTask, instance: ProcessInstance
) -> list[Recipient]:
    """Return the people who may work ``task`` now, as the inbox would list it."""
    if task.assignee:
        names = {task.assignee}
    else:
        groups = task.candidate_groups or [g for g in [role_of_lane(task.lane)] if g]
        names = set(task.candidate_users)
        for group in groups:
            names.update(
                user.username
                for user in users_with_role(session, group, task.domain_path)
            )
    users = session.scalars(
        select(User).where(User.username.in_(names), User.is_active.is_(True))
    )

    allowed = []
    for user in users:
        try:
            check_may_work(session, actor_from_user(user), task, instance)
        except PermissionDenied:
            continue
        allowed.append(user)
    return _addressable(sorted(allowed, key=lambda user: user.username))


def _addressable(users: list[User]) -> list[Recipient]:
    """Keep the users that have an e-mail address."""
    return [_recipient(user) for user in users if user.email and "@" in user.email]


def _recipient(user: User) -> Recipient:
    """Return the recipient for ``user``."""
    return Recipient(address=user.email, name=user.display_name, username=user.username)

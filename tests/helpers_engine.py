"""Helpers for the engine core tests: fixture files, actors, short transactions."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from engine import deployments, instances
from engine.db import Database
from engine.identity import Actor
from engine.models import HistoryEntry, HumanTask, SecurityDomain, TaskStatus, User
from engine.models import RoleGrant as RoleGrantRow

DATA = Path(__file__).resolve().parent / "data"

REQUEST_DOMAIN = "acme/emea/paris"
REQUESTER = Actor("alice", REQUEST_DOMAIN)
APPROVER = Actor("bob", "acme", (("request_approver", "acme"),))
SECOND_APPROVER = Actor("carol", "acme/emea", (("request_approver", "acme/emea"),))
DISTRIBUTOR = Actor("dave", "acme", (("token_distributor", "acme"),))
APAC_APPROVER = Actor("erin", "acme/apac", (("request_approver", "acme/apac"),))
NOBODY = Actor("frank", REQUEST_DOMAIN)


def data_file(name: str) -> tuple[str, bytes]:
    """Return a fixture file as the ``(filename, content)`` pair deploy takes."""
    return name, (DATA / name).read_bytes()


def deploy(
    db: Database, *names: str, user: str = "designer", **kwargs: Any
) -> deployments.DeploymentResult:
    """Deploy fixture files in one write transaction."""
    files = [data_file(n) if isinstance(n, str) else n for n in names]
    with db.write() as session:
        return deployments.deploy(
            session, files, deployed_by=user, source="tests", **kwargs
        )


def start(db: Database, key: str, actor: Actor = REQUESTER, **kwargs: Any) -> int:
    """Start an instance and return its id."""
    with db.write() as session:
        instance = instances.start_instance(session, key, actor=actor, **kwargs)
        return instance.id


def open_tasks(db: Database, instance_id: int) -> list[HumanTask]:
    """Return the open task rows of an instance, oldest first."""
    with db.read() as session:
        rows = list(
            session.scalars(
                select(HumanTask)
                .where(
                    HumanTask.instance_id == instance_id,
                    HumanTask.status == TaskStatus.OPEN,
                )
                .order_by(HumanTask.created_at, HumanTask.task_spec)
            )
        )
        # Detached before the read's rollback would expire them.
        session.expunge_all()
        return rows


def task_of(db: Database, instance_id: int, task_spec: str) -> HumanTask:
    """Return the one open task of ``task_spec`` in an instance."""
    (task,) = [t for t in open_tasks(db, instance_id) if t.task_spec == task_spec]
    return task


def complete(
    db: Database, task_id: str, actor: Actor, data: dict[str, Any] | None = None
) -> str:
    """Complete a task in its own transaction; return the instance status."""
    with db.write() as session:
        instance = instances.complete_task(session, task_id, actor=actor, data=data)
        return instance.status


def count(db: Database, model, *where) -> int:
    """Count the rows of ``model`` matching ``where``."""
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def actions(db: Database, instance_id: int) -> list[str]:
    """Return the history actions of an instance in order."""
    with db.read() as session:
        return list(
            session.scalars(
                select(HistoryEntry.action)
                .where(HistoryEntry.instance_id == instance_id)
                .order_by(HistoryEntry.id)
            )
        )


def add_user(session, username: str, domain_path: str, grants: tuple = ()) -> User:
    """Create a user in ``domain_path`` (creating the domains) with role grants."""
    user = User(
        username=username,
        display_name=username.title(),
        email=f"{username}@example.test",
        domain=_domain(session, domain_path),
    )
    for role, scope in grants:
        user.grants.append(RoleGrantRow(role=role, domain=_domain(session, scope)))
    session.add(user)
    session.flush()
    return user


def _domain(session, path: str) -> SecurityDomain:
    existing = session.scalars(
        select(SecurityDomain).where(SecurityDomain.path == path)
    ).first()
    if existing is not None:
        return existing
    parent_path, _, name = path.rpartition("/")
    parent = _domain(session, parent_path) if parent_path else None
    domain = SecurityDomain(name=name, path=path, parent=parent)
    session.add(domain)
    session.flush()
    return domain


def add_actors(db: Database, *actors: Actor) -> None:
    """Store users matching ``actors``, for commands that look users up."""
    with db.write() as session:
        for actor in actors:
            add_user(session, actor.username, actor.domain_path, actor.grants)


def wait_until(moment: datetime) -> None:
    """Sleep until the wall clock, which the engine reads too, has passed ``moment``."""
    remaining = (moment - datetime.now(UTC)).total_seconds()
    if remaining > 0:
        time.sleep(remaining + 0.05)

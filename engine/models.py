"""The engine's tables.

Workflow state is stored as SpiffWorkflow's serialization *without* the
process spec: specs live once in :class:`SpecBlob`, keyed by the hash of
their content, and an instance points to the :class:`ProcessDefinition`
version it started on. What the inbox, the timers and the reports need is
kept in plain indexed rows (:class:`HumanTask`, :class:`TaskCandidate`,
:class:`Timer`) so that they never deserialize a workflow.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite has no time zone type; without this, values read back from SQLite
    are naive while PostgreSQL's are aware, and comparisons between them fail.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


# -- people and scope -------------------------------------------------------


class SecurityDomain(Base):
    """A node in the tree of organisational units; ``path`` is 'acme/emea/paris'."""

    __tablename__ = "security_domain"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("security_domain.id"))
    path: Mapped[str] = mapped_column(String(1000), unique=True)

    parent: Mapped[SecurityDomain | None] = relationship(remote_side=[id])

    def contains(self, path: str) -> bool:
        return path == self.path or path.startswith(self.path + "/")


class User(Base):
    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str | None] = mapped_column(String(300))
    domain_id: Mapped[int] = mapped_column(ForeignKey("security_domain.id"))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    domain: Mapped[SecurityDomain] = relationship(lazy="joined")
    grants: Mapped[list[RoleGrant]] = relationship(
        back_populates="user", lazy="selectin", cascade="all, delete-orphan"
    )


class RoleGrant(Base):
    """A role held by a user within a security domain and its sub-domains."""

    __tablename__ = "role_grant"
    __table_args__ = (UniqueConstraint("user_id", "role", "domain_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    role: Mapped[str] = mapped_column(String(100), index=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("security_domain.id"))

    user: Mapped[User] = relationship(back_populates="grants")
    domain: Mapped[SecurityDomain] = relationship(lazy="joined")


# -- deployments and definitions --------------------------------------------


class Deployment(Base):
    __tablename__ = "deployment"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    deployed_by: Mapped[str] = mapped_column(String(150))
    deployed_at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(200))

    files: Mapped[list[DeploymentFile]] = relationship(
        back_populates="deployment", lazy="selectin", order_by="DeploymentFile.id"
    )


class DeploymentFile(Base):
    __tablename__ = "deployment_file"

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployment.id"), index=True)
    filename: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)

    deployment: Mapped[Deployment] = relationship(back_populates="files")


class SpecBlob(Base):
    """A serialized process spec bundle, stored once by the hash of its content."""

    __tablename__ = "spec_blob"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProcessDefinition(Base):
    """One version of one process: key 'new_token', version 3."""

    __tablename__ = "process_definition"
    __table_args__ = (UniqueConstraint("key", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(300))
    spec_sha256: Mapped[str] = mapped_column(ForeignKey("spec_blob.sha256"))
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployment.id"))
    file_id: Mapped[int] = mapped_column(ForeignKey("deployment_file.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    deployment: Mapped[Deployment] = relationship()
    file: Mapped[DeploymentFile] = relationship()


class DecisionDefinition(Base):
    """One version of one DMN decision, as deployed."""

    __tablename__ = "decision_definition"
    __table_args__ = (UniqueConstraint("key", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64))
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployment.id"))
    file_id: Mapped[int] = mapped_column(ForeignKey("deployment_file.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    file: Mapped[DeploymentFile] = relationship()


# -- process instances ------------------------------------------------------


class InstanceStatus:
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    INCIDENT = "incident"

    ACTIVE = (RUNNING, INCIDENT)


class ProcessInstance(Base):
    __tablename__ = "process_instance"
    __table_args__ = (
        Index("ix_process_instance_status_key", "status", "process_key"),
        Index("ix_process_instance_initiator", "initiator", "created_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    definition_id: Mapped[int] = mapped_column(ForeignKey("process_definition.id"))
    process_key: Mapped[str] = mapped_column(String(200))
    business_key: Mapped[str | None] = mapped_column(String(200), index=True)
    initiator: Mapped[str] = mapped_column(String(150))
    domain_path: Mapped[str] = mapped_column(String(1000), default="")
    status: Mapped[str] = mapped_column(String(20), default=InstanceStatus.RUNNING)
    end_event: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(Text)
    serializer_version: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column()
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    cancelled_by: Mapped[str | None] = mapped_column(String(150))

    definition: Mapped[ProcessDefinition] = relationship(lazy="joined")


class TaskStatus:
    OPEN = "open"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class HumanTask(Base):
    """A user task that is, or was, ready for a person to work."""

    __tablename__ = "human_task"
    __table_args__ = (
        Index("ix_human_task_status_assignee", "status", "assignee"),
        Index("ix_human_task_instance_status", "instance_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id"))
    process_key: Mapped[str] = mapped_column(String(200))
    task_spec: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(300))
    lane: Mapped[str | None] = mapped_column(String(200))
    domain_path: Mapped[str] = mapped_column(String(1000), default="")
    assignee: Mapped[str | None] = mapped_column(String(150))
    # Kept on the row for reading; TaskCandidate holds the same names indexed,
    # for the inbox query.
    candidate_groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    candidate_users: Mapped[list[str]] = mapped_column(JSON, default=list)
    form: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default=TaskStatus.OPEN)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    due_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()
    completed_by: Mapped[str | None] = mapped_column(String(150))
    saved_data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    instance: Mapped[ProcessInstance] = relationship()
    candidates: Mapped[list[TaskCandidate]] = relationship(
        lazy="select", cascade="all, delete-orphan"
    )


class TaskCandidate(Base):
    """A candidate group or user of an open task, for one indexed inbox query."""

    __tablename__ = "task_candidate"
    __table_args__ = (Index("ix_task_candidate_lookup", "kind", "name", "task_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[str] = mapped_column(
        ForeignKey("human_task.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(150))


class HistoryEntry(Base):
    """An append-only record of something that happened to an instance."""

    __tablename__ = "history_entry"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    instance_id: Mapped[int] = mapped_column(
        ForeignKey("process_instance.id"), index=True
    )
    task_id: Mapped[str | None] = mapped_column(String(36))
    element_id: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(150))
    action: Mapped[str] = mapped_column(String(50))
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class TimerStatus:
    WAITING = "waiting"
    FIRED = "fired"
    CANCELLED = "cancelled"


class Timer(Base):
    """A timer event that an instance waits on, with its due time."""

    __tablename__ = "timer"
    __table_args__ = (
        Index("ix_timer_due", "status", "due_at"),
        UniqueConstraint("instance_id", "task_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id"))
    task_id: Mapped[str] = mapped_column(String(36))
    element_id: Mapped[str] = mapped_column(String(200))
    due_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default=TimerStatus.WAITING)
    fired_at: Mapped[datetime | None] = mapped_column()


class AuditEvent(Base):
    """An append-only record of an administrative change, outside any instance.

    ``domain_path`` is the security domain the subject belongs to, so that an
    administrator sees the events of their domains; it is None for settings
    that are global to the installation. ``message`` never holds a password
    or any other secret.
    """

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_at", "at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(150), index=True)
    action: Mapped[str] = mapped_column(String(50))
    subject: Mapped[str] = mapped_column(String(300))
    domain_path: Mapped[str | None] = mapped_column(String(1000))
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class IncidentStatus:
    OPEN = "open"
    RESOLVED = "resolved"


class Incident(Base):
    """A failed script or service task that stopped an instance until retried."""

    __tablename__ = "incident"
    __table_args__ = (Index("ix_incident_status", "status", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(
        ForeignKey("process_instance.id"), index=True
    )
    element_id: Mapped[str | None] = mapped_column(String(200))
    error_type: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=IncidentStatus.OPEN)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column()
    resolved_by: Mapped[str | None] = mapped_column(String(150))

    instance: Mapped[ProcessInstance] = relationship()

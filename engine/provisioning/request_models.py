"""The provisioning request: what a user asked for and where it stands.

A request is the product's view of one process instance of a request type
(``new_token``, ``replace_lost_token``...). The instance holds the workflow;
this row holds what the request is about, indexed for lists and reports, and
a status that an event listener (see :mod:`engine.provisioning.requests`)
keeps in step with the instance inside the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..models import Base, ProcessInstance, utcnow


class RequestStatus:
    """The states of a request; only ``pending`` is open."""

    PENDING = "pending"
    COMPLETED = "completed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    FAILED = "failed"
    ALL = (PENDING, COMPLETED, REJECTED, CANCELLED, EXPIRED, FAILED)


#: ``token_class`` of a request that involves no token (group, account...)
NO_TOKEN = "none"


class ProvisioningRequest(Base):
    """One request of a user, tied to the process instance that runs it."""

    __tablename__ = "provisioning_request"
    __table_args__ = (
        Index("ix_provisioning_request_requester", "requester", "status"),
        Index("ix_provisioning_request_status_type", "status", "request_type"),
        Index("ix_provisioning_request_domain", "domain_path"),
        Index("ix_provisioning_request_old_serial", "old_serial", "status"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    # Set in the transaction that creates the row, right after the instance
    # starts: the request id must exist first, as a start variable.
    instance_id: Mapped[int | None] = mapped_column(
        ForeignKey("process_instance.id"), unique=True
    )
    request_type: Mapped[str] = mapped_column(String(100))
    requester: Mapped[str] = mapped_column(String(320))
    domain_path: Mapped[str] = mapped_column(String(1000), default="")
    token_class: Mapped[str] = mapped_column(String(20), default=NO_TOKEN)
    token_model: Mapped[str] = mapped_column(String(100), default="")
    old_serial: Mapped[str] = mapped_column(String(100), default="")
    group_name: Mapped[str] = mapped_column(String(200), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default=RequestStatus.PENDING)
    current_step: Mapped[str] = mapped_column(String(300), default="")
    comment_to_user: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column()

    instance: Mapped[ProcessInstance | None] = relationship()

    @property
    def is_open(self) -> bool:
        return self.status == RequestStatus.PENDING

"""Tables of the token inventory and of the directory's groups and services.

A :class:`Token` is one hardware token or software token the organisation
owns. Its ``domain_path`` is the security domain whose inventory holds it,
which decides which token administrators and distributors may act on it; its
``owner`` is the user it was handed to. Every change of state is recorded as
a :class:`TokenEvent`, written by :func:`engine.provisioning.inventory.
change_state` and nowhere else.

Token lifecycle::

    available ──> assigned ──> shipped ──> active      (hardware)
    available ──> assigned ─────────────> active       (software)
    assigned ──> available                              (unassigned)
    any ──> disabled | lost        disabled ──> available | active
    available | assigned | shipped | active ──> expired
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..models import Base, utcnow


class TokenClass:
    HARDWARE = "hardware"
    SOFTWARE = "software"

    ALL = (HARDWARE, SOFTWARE)


class TokenState:
    AVAILABLE = "available"
    ASSIGNED = "assigned"
    SHIPPED = "shipped"
    ACTIVE = "active"
    DISABLED = "disabled"
    LOST = "lost"
    EXPIRED = "expired"

    ALL = (AVAILABLE, ASSIGNED, SHIPPED, ACTIVE, DISABLED, LOST, EXPIRED)


class TokenModel(Base):
    """A kind of token: a hardware model (SID700) or a software token profile."""

    __tablename__ = "token_model"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(50), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    token_class: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Token(Base):
    """One token in the inventory, with its owner, delivery and secrets."""

    __tablename__ = "token"
    __table_args__ = (
        Index("ix_token_state_model", "state", "model_id"),
        Index("ix_token_owner", "owner"),
        Index("ix_token_domain_path", "domain_path"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("token_model.id"))
    state: Mapped[str] = mapped_column(String(20), default=TokenState.AVAILABLE)
    owner: Mapped[str | None] = mapped_column(String(150))
    domain_path: Mapped[str] = mapped_column(String(1000))
    expires_on: Mapped[date | None] = mapped_column(Date)
    carrier: Mapped[str | None] = mapped_column(String(100))
    tracking_number: Mapped[str | None] = mapped_column(String(200))
    shipping_address: Mapped[str | None] = mapped_column(Text)
    secret_ciphertext: Mapped[str | None] = mapped_column(Text)
    last_used_step: Mapped[int | None] = mapped_column(BigInteger)
    activation_digest: Mapped[str | None] = mapped_column(String(64), unique=True)
    activation_expires_at: Mapped[datetime | None] = mapped_column()
    temporarily_unavailable: Mapped[bool] = mapped_column(Boolean, default=False)
    emergency_code_hash: Mapped[str | None] = mapped_column(String(300))
    emergency_expires_at: Mapped[datetime | None] = mapped_column()
    request_id: Mapped[int | None] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    model: Mapped[TokenModel] = relationship(lazy="joined")

    @property
    def token_class(self) -> str:
        return self.model.token_class


class TokenEvent(Base):
    """One entry of a token's history: a change of state or a notable action."""

    __tablename__ = "token_event"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    token_id: Mapped[int] = mapped_column(ForeignKey("token.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(150))
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    message: Mapped[str] = mapped_column(Text, default="")

    token: Mapped[Token] = relationship()


class DirectoryGroup(Base):
    """A user group of the directory that requests can ask membership of."""

    __tablename__ = "directory_group"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(150), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")

    members: Mapped[list[GroupMember]] = relationship(
        back_populates="group", lazy="selectin", cascade="all, delete-orphan"
    )


class GroupMember(Base):
    __tablename__ = "group_member"
    __table_args__ = (UniqueConstraint("group_id", "username"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("directory_group.id"))
    username: Mapped[str] = mapped_column(String(150), index=True)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)

    group: Mapped[DirectoryGroup] = relationship(back_populates="members")


class OnDemandService(Base):
    """A user's subscription to on-demand tokencodes sent by SMS or e-mail."""

    __tablename__ = "ondemand_service"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    delivery: Mapped[str] = mapped_column(String(10))
    destination: Mapped[str] = mapped_column(String(320))
    enabled_at: Mapped[datetime] = mapped_column(default=utcnow)

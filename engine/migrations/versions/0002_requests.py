"""Provisioning requests: one row per request, tied to its process instance.

Revision ID: 0002_requests
Revises: 0001_foundation
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_requests"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "provisioning_request",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "instance_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("request_type", sa.String(length=100), nullable=False),
        sa.Column("requester", sa.String(length=320), nullable=False),
        sa.Column("domain_path", sa.String(length=1000), nullable=False),
        sa.Column("token_class", sa.String(length=20), nullable=False),
        sa.Column("token_model", sa.String(length=100), nullable=False),
        sa.Column("old_serial", sa.String(length=100), nullable=False),
        sa.Column("group_name", sa.String(length=200), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("current_step", sa.String(length=300), nullable=False),
        sa.Column("comment_to_user", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["instance_id"], ["process_instance.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("instance_id"),
    )
    with op.batch_alter_table("provisioning_request", schema=None) as batch_op:
        batch_op.create_index(
            "ix_provisioning_request_requester", ["requester", "status"], unique=False
        )
        batch_op.create_index(
            "ix_provisioning_request_status_type",
            ["status", "request_type"],
            unique=False,
        )
        batch_op.create_index(
            "ix_provisioning_request_domain", ["domain_path"], unique=False
        )
        batch_op.create_index(
            "ix_provisioning_request_old_serial", ["old_serial", "status"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("provisioning_request", schema=None) as batch_op:
        batch_op.drop_index("ix_provisioning_request_old_serial")
        batch_op.drop_index("ix_provisioning_request_domain")
        batch_op.drop_index("ix_provisioning_request_status_type")
        batch_op.drop_index("ix_provisioning_request_requester")

    op.drop_table("provisioning_request")

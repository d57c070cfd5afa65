"""Token inventory: token models, tokens and their history, groups, on-demand service.

Revision ID: 0003_inventory
Revises: 0002_requests
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_inventory"
down_revision: str | Sequence[str] | None = "0002_requests"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "token_model",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=50), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_class", sa.String(length=20), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_table(
        "token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("owner", sa.String(length=150), nullable=True),
        sa.Column("domain_path", sa.String(length=1000), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.Column("carrier", sa.String(length=100), nullable=True),
        sa.Column("tracking_number", sa.String(length=200), nullable=True),
        sa.Column("shipping_address", sa.Text(), nullable=True),
        sa.Column("secret_ciphertext", sa.Text(), nullable=True),
        sa.Column("last_used_step", sa.BigInteger(), nullable=True),
        sa.Column("activation_digest", sa.String(length=64), nullable=True),
        sa.Column("activation_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("temporarily_unavailable", sa.Boolean(), nullable=False),
        sa.Column("emergency_code_hash", sa.String(length=300), nullable=True),
        sa.Column("emergency_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["token_model.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("activation_digest"),
        sa.UniqueConstraint("serial"),
    )
    op.create_index("ix_token_domain_path", "token", ["domain_path"])
    op.create_index("ix_token_owner", "token", ["owner"])
    op.create_index("ix_token_request_id", "token", ["request_id"])
    op.create_index("ix_token_state_model", "token", ["state", "model_id"])

    op.create_table(
        "token_event",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=150), nullable=False),
        sa.Column("from_state", sa.String(length=20), nullable=True),
        sa.Column("to_state", sa.String(length=20), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["token_id"], ["token.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_token_event_token_id", "token_event", ["token_id"])

    op.create_table(
        "directory_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=150), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "group_member",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["directory_group.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("group_id", "username"),
    )
    op.create_index("ix_group_member_username", "group_member", ["username"])

    op.create_table(
        "ondemand_service",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("delivery", sa.String(length=10), nullable=False),
        sa.Column("destination", sa.String(length=320), nullable=False),
        sa.Column("enabled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )


def downgrade() -> None:
    op.drop_table("ondemand_service")
    op.drop_index("ix_group_member_username", table_name="group_member")
    op.drop_table("group_member")
    op.drop_table("directory_group")
    op.drop_index("ix_token_event_token_id", table_name="token_event")
    op.drop_table("token_event")
    op.drop_index("ix_token_state_model", table_name="token")
    op.drop_index("ix_token_request_id", table_name="token")
    op.drop_index("ix_token_owner", table_name="token")
    op.drop_index("ix_token_domain_path", table_name="token")
    op.drop_table("token")
    op.drop_table("token_model")

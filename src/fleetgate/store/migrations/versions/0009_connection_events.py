"""Create the connection log.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connection_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("project_id", sa.String(63), nullable=False),
        sa.Column("device_id", sa.String(24), nullable=True),
        sa.Column("certificate_id", sa.String(128), nullable=True),
        sa.Column("peer", sa.String(64), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(48), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        sa.Column("other_peer", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_connection_events"),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_connection_events_project_id_projects",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_connection_events_project_id_id",
        "connection_events",
        ["project_id", "id"],
    )
    op.create_index(
        "ix_connection_events_project_id_certificate_id_id",
        "connection_events",
        ["project_id", "certificate_id", "id"],
    )
    op.create_index(
        "ix_connection_events_created_at", "connection_events", ["created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_connection_events_created_at", "connection_events")
    op.drop_index(
        "ix_connection_events_project_id_certificate_id_id", "connection_events"
    )
    op.drop_index("ix_connection_events_project_id_id", "connection_events")
    op.drop_table("connection_events")

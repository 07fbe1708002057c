"""Create the tables of device logs and LightDB Stream records.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-14
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _owner_columns(table: str) -> list[sa.Column[object] | sa.Constraint]:
    return [
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(63), nullable=False),
        sa.Column("device_id", sa.String(24), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=f"fk_{table}_project_id_projects",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=f"fk_{table}_device_id_devices",
            ondelete="CASCADE",
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "device_logs",
        *_owner_columns("device_logs"),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("module", sa.String(128), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
    )
    op.create_table(
        "device_stream",
        *_owner_columns("device_stream"),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
    )
    for table in ("device_logs", "device_stream"):
        op.create_index(f"ix_{table}_project_id", table, ["project_id"])
        op.create_index(
            f"ix_{table}_device_id_received_at", table, ["device_id", "received_at"]
        )


def downgrade() -> None:
    for table in ("device_stream", "device_logs"):
        op.drop_index(f"ix_{table}_device_id_received_at", table_name=table)
        op.drop_index(f"ix_{table}_project_id", table_name=table)
        op.drop_table(table)

"""Create the table of project settings and their per-device overrides.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "settings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(63), nullable=False),
        sa.Column("device_id", sa.String(24), nullable=True),
        sa.Column("key", sa.String(63), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_settings"),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_settings_project_id_projects",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name="fk_settings_device_id_devices",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_settings_project_id_device_id", "settings", ["project_id", "device_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_settings_project_id_device_id", "settings")
    op.drop_table("settings")

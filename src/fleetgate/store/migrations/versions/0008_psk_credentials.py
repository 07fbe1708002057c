"""Create the table of device PSK credentials.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "psk_credentials",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("project_id", sa.String(63), nullable=False),
        sa.Column("device_id", sa.String(24), nullable=False),
        sa.Column("identity", sa.String(128), nullable=False),
        sa.Column("sealed_key", sa.LargeBinary(), nullable=False),
        sa.Column("key_encryption_key_id", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_psk_credentials"),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_psk_credentials_project_id_projects",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name="fk_psk_credentials_device_id_devices",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_psk_credentials_project_id", "psk_credentials", ["project_id"])
    op.create_index("ix_psk_credentials_device_id", "psk_credentials", ["device_id"])
    op.create_index(
        "ix_psk_credentials_identity", "psk_credentials", ["identity"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ix_psk_credentials_identity", "psk_credentials")
    op.drop_index("ix_psk_credentials_device_id", "psk_credentials")
    op.drop_index("ix_psk_credentials_project_id", "psk_credentials")
    op.drop_table("psk_credentials")

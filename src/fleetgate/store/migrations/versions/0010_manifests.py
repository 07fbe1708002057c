"""Create manufacturing manifests and quarantines, and record device chains.

Adds ``projects.require_manifest``, which limits zero-touch creation to
listed certificate IDs, and ``devices.ca_chain``, the CA certificates
of each device's last verified chain, which a quarantine by CA reads.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _project_key(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["project_id"],
        ["projects.id"],
        name=f"fk_{table}_project_id_projects",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.add_column(
        "projects",
        sa.Column(
            "require_manifest", sa.Boolean(), nullable=False, server_default=sa.false()
        ),
    )
    op.add_column("devices", sa.Column("ca_chain", sa.JSON(), nullable=True))

    op.create_table(
        "manifest_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(63), nullable=False),
        sa.Column("batch", sa.String(128), nullable=False),
        sa.Column("certificate_id", sa.String(128), nullable=False),
        sa.Column("serial", sa.String(128), nullable=True),
        sa.Column("hardware_id", sa.String(200), nullable=True),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_manifest_entries"),
        _project_key("manifest_entries"),
        sa.UniqueConstraint(
            "project_id",
            "certificate_id",
            name="uq_manifest_entries_project_id_certificate_id",
        ),
    )
    op.create_index(
        "ix_manifest_entries_project_id_batch",
        "manifest_entries",
        ["project_id", "batch"],
    )

    op.create_table(
        "quarantines",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("project_id", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("actor", sa.String(32), nullable=False),
        _timestamp("created_at"),
        _timestamp("released_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_quarantines"),
        _project_key("quarantines"),
    )
    op.create_index("ix_quarantines_project_id", "quarantines", ["project_id"])

    op.create_table(
        "quarantine_devices",
        sa.Column("quarantine_id", sa.String(24), nullable=False),
        sa.Column("device_id", sa.String(24), nullable=False),
        sa.PrimaryKeyConstraint(
            "quarantine_id", "device_id", name="pk_quarantine_devices"
        ),
        sa.ForeignKeyConstraint(
            ["quarantine_id"],
            ["quarantines.id"],
            name="fk_quarantine_devices_quarantine_id_quarantines",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name="fk_quarantine_devices_device_id_devices",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_quarantine_devices_device_id", "quarantine_devices", ["device_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_quarantine_devices_device_id", table_name="quarantine_devices")
    op.drop_table("quarantine_devices")
    op.drop_index("ix_quarantines_project_id", table_name="quarantines")
    op.drop_table("quarantines")
    op.drop_index("ix_manifest_entries_project_id_batch", table_name="manifest_entries")
    op.drop_table("manifest_entries")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("ca_chain")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("require_manifest")

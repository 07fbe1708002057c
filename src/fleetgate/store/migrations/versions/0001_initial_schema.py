"""Create projects, CA certificates, devices and device state.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.String(63), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("require_v3", sa.Boolean(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
    )

    op.create_table(
        "ca_certificates",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("project_id", sa.String(63), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("subject", sa.String(1024), nullable=False),
        sa.Column("issuer", sa.String(1024), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        _timestamp("not_before"),
        _timestamp("not_after"),
        sa.Column("cert_type", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_ca_certificates"),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_ca_certificates_project_id_projects",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "project_id",
            "fingerprint",
            name="uq_ca_certificates_project_id_fingerprint",
        ),
    )
    op.create_index("ix_ca_certificates_project_id", "ca_certificates", ["project_id"])

    op.create_table(
        "devices",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("project_id", sa.String(63), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("certificate_id", sa.String(128), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("hardware_ids", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        _timestamp("created_at"),
        _timestamp("last_seen_at", nullable=True),
        sa.Column("last_certificate_fingerprint", sa.String(64), nullable=True),
        _timestamp("last_certificate_not_after", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_devices"),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_devices_project_id_projects",
            ondelete="CASCADE",
        ),
        # The association rule relies on these two to stay race-free.
        sa.UniqueConstraint("project_id", "name", name="uq_devices_project_id_name"),
        sa.UniqueConstraint(
            "project_id",
            "certificate_id",
            name="uq_devices_project_id_certificate_id",
        ),
    )
    op.create_index("ix_devices_project_id", "devices", ["project_id"])

    op.create_table(
        "device_state",
        sa.Column("device_id", sa.String(24), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("device_id", name="pk_device_state"),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name="fk_device_state_device_id_devices",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("device_state")
    op.drop_index("ix_devices_project_id", table_name="devices")
    op.drop_table("devices")
    op.drop_index("ix_ca_certificates_project_id", table_name="ca_certificates")
    op.drop_table("ca_certificates")
    op.drop_table("projects")

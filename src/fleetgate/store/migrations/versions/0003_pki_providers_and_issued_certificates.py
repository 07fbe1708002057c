"""Create PKI provider settings and the record of issued certificates.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-11
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "pki_providers",
        sa.Column("project_id", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.String(1024), nullable=True),
        sa.Column("ca_count", sa.Integer(), nullable=False),
        sa.Column("max_rotations_per_hour", sa.Integer(), nullable=False),
        _timestamp("last_sync_at", nullable=True),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("project_id", name="pk_pki_providers"),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_pki_providers_project_id_projects",
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "issued_certificates",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("project_id", sa.String(63), nullable=False),
        sa.Column("device_id", sa.String(24), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        _timestamp("not_before"),
        _timestamp("not_after"),
        sa.Column("provider", sa.String(16), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_issued_certificates"),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_issued_certificates_project_id_projects",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name="fk_issued_certificates_device_id_devices",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_issued_certificates_project_id", "issued_certificates", ["project_id"]
    )
    op.create_index(
        "ix_issued_certificates_device_id_created_at",
        "issued_certificates",
        ["device_id", "created_at"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_issued_certificates_device_id_created_at",
        table_name="issued_certificates",
    )
    op.drop_index("ix_issued_certificates_project_id", table_name="issued_certificates")
    op.drop_table("issued_certificates")
    op.drop_table("pki_providers")

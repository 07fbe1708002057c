"""Create the tables of OTA artifacts, releases and device component state.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _project_key(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["project_id"],
        ["projects.id"],
        name=f"fk_{table}_project_id_projects",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "ota_artifacts",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("project_id", sa.String(63), nullable=False),
        sa.Column("package", sa.String(32), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("bootloader", sa.String(7), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ota_artifacts"),
        _project_key("ota_artifacts"),
        sa.UniqueConstraint(
            "project_id",
            "package",
            "version",
            name="uq_ota_artifacts_project_id_package",
        ),
    )
    op.create_index("ix_ota_artifacts_project_id", "ota_artifacts", ["project_id"])

    op.create_table(
        "ota_artifact_chunks",
        sa.Column("artifact_id", sa.String(24), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("artifact_id", "index", name="pk_ota_artifact_chunks"),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["ota_artifacts.id"],
            name="fk_ota_artifact_chunks_artifact_id_ota_artifacts",
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "ota_releases",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("project_id", sa.String(63), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("rolled_out", sa.Boolean(), nullable=False),
        sa.Column("all_devices", sa.Boolean(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ota_releases"),
        _project_key("ota_releases"),
        sa.UniqueConstraint(
            "project_id", "name", name="uq_ota_releases_project_id_name"
        ),
    )
    op.create_index("ix_ota_releases_project_id", "ota_releases", ["project_id"])

    op.create_table(
        "ota_release_artifacts",
        sa.Column("release_id", sa.String(24), nullable=False),
        sa.Column("package", sa.String(32), nullable=False),
        sa.Column("artifact_id", sa.String(24), nullable=False),
        sa.PrimaryKeyConstraint(
            "release_id", "package", name="pk_ota_release_artifacts"
        ),
        sa.ForeignKeyConstraint(
            ["release_id"],
            ["ota_releases.id"],
            name="fk_ota_release_artifacts_release_id_ota_releases",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["ota_artifacts.id"],
            name="fk_ota_release_artifacts_artifact_id_ota_artifacts",
            ondelete="RESTRICT",
        ),
    )
    op.create_index(
        "ix_ota_release_artifacts_artifact_id",
        "ota_release_artifacts",
        ["artifact_id"],
    )

    op.create_table(
        "ota_release_devices",
        sa.Column("release_id", sa.String(24), nullable=False),
        sa.Column("device_id", sa.String(24), nullable=False),
        sa.PrimaryKeyConstraint(
            "release_id", "device_id", name="pk_ota_release_devices"
        ),
        sa.ForeignKeyConstraint(
            ["release_id"],
            ["ota_releases.id"],
            name="fk_ota_release_devices_release_id_ota_releases",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name="fk_ota_release_devices_device_id_devices",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_ota_release_devices_device_id", "ota_release_devices", ["device_id"]
    )

    op.create_table(
        "ota_component_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(63), nullable=False),
        sa.Column("device_id", sa.String(24), nullable=False),
        sa.Column("package", sa.String(32), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Integer(), nullable=False),
        sa.Column("current_version", sa.String(32), nullable=True),
        sa.Column("target_version", sa.String(32), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ota_component_reports"),
        _project_key("ota_component_reports"),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name="fk_ota_component_reports_device_id_devices",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_ota_component_reports_project_id", "ota_component_reports", ["project_id"]
    )
    op.create_index(
        "ix_ota_component_reports_device_id_package",
        "ota_component_reports",
        ["device_id", "package"],
    )


def downgrade() -> None:
    op.drop_table("ota_component_reports")
    op.drop_table("ota_release_devices")
    op.drop_table("ota_release_artifacts")
    op.drop_table("ota_releases")
    op.drop_table("ota_artifact_chunks")
    op.drop_table("ota_artifacts")

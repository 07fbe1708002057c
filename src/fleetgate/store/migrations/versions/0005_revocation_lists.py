"""Create the table of CRLs loaded for registered CA certificates.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-14
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revocation_lists",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("ca_certificate_id", sa.String(24), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("this_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=True),
        sa.Column("crl_number", sa.String(64), nullable=True),
        sa.Column("revoked_count", sa.Integer(), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_revocation_lists"),
        sa.ForeignKeyConstraint(
            ["ca_certificate_id"],
            ["ca_certificates.id"],
            name="fk_revocation_lists_ca_certificate_id_ca_certificates",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_revocation_lists_ca_certificate_id",
        "revocation_lists",
        ["ca_certificate_id"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ix_revocation_lists_ca_certificate_id", "revocation_lists")
    op.drop_table("revocation_lists")

"""Token expiry, scopes, rate limits and rolling; the version every token change bumps.

Existing tokens keep working as they did: no expiry (NULL), every scope (NULL), the default
rate limit (NULL), and no previous secret.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("scopes", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("rate_limit", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("previous_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("previous_expires_at", sa.DateTime(), nullable=True))
    op.create_index("ix_tokens_previous_hash", "tokens", ["previous_hash"], unique=True)
    op.create_table(
        "token_version",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO token_version (id, version) VALUES (1, 0)")


def downgrade():
    op.drop_table("token_version")
    op.drop_index("ix_tokens_previous_hash", table_name="tokens")
    with op.batch_alter_table("tokens") as batch:
        for name in ("previous_expires_at", "previous_hash", "rate_limit", "scopes", "expires_at"):
            batch.drop_column(name)

"""identities: users, API tokens, sessions, study shares

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("pk", PK, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("roles", sa.String(256), nullable=False),
        sa.Column("person_name", sa.String(324), nullable=False),
        sa.Column("institutions", sa.Text(), nullable=False),
        sa.Column("departments", sa.Text(), nullable=False),
        sa.Column("issuers", sa.Text(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("pk", PK, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_pk", PK, nullable=False),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_pk"], ["users.pk"], name=op.f("fk_api_tokens_user_pk_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_api_tokens_user_pk"), "api_tokens", ["user_pk"])
    op.create_table(
        "sessions",
        sa.Column("pk", PK, primary_key=True, autoincrement=True),
        sa.Column("session_hash", sa.String(64), nullable=False),
        sa.Column("user_pk", PK, nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_pk"], ["users.pk"], name=op.f("fk_sessions_user_pk_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_sessions")),
        sa.UniqueConstraint("session_hash", name=op.f("uq_sessions_session_hash")),
    )
    op.create_index(op.f("ix_sessions_user_pk"), "sessions", ["user_pk"])
    op.create_table(
        "study_shares",
        sa.Column("pk", PK, primary_key=True, autoincrement=True),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("user_pk", PK, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_pk"], ["users.pk"], name=op.f("fk_study_shares_user_pk_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_study_shares")),
        sa.UniqueConstraint("study_uid", "user_pk", name=op.f("uq_study_shares_study_uid_user_pk")),
    )
    op.create_index(op.f("ix_study_shares_study_uid"), "study_shares", ["study_uid"])
    op.create_index(op.f("ix_study_shares_user_pk"), "study_shares", ["user_pk"])


def downgrade() -> None:
    op.drop_table("study_shares")
    op.drop_table("sessions")
    op.drop_table("api_tokens")
    op.drop_table("users")

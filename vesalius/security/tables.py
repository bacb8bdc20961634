"""Tables of identities (users, API tokens, sessions, study shares), on the index's metadata.

Created by the Alembic migration ``0003``; see :mod:`vesalius.security.identity`.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from vesalius.index.models import PK, metadata

users = Table(
    "users",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False, default=""),  # argon2id; "" for OIDC-only users
    Column("roles", String(256), nullable=False, default=""),  # comma-separated
    Column("person_name", String(324), nullable=False, default=""),  # as in ReferringPhysicianName
    Column("institutions", Text, nullable=False, default=""),  # "\\"-separated scopes
    Column("departments", Text, nullable=False, default=""),
    Column("issuers", Text, nullable=False, default=""),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),  # SHA-256 of the token
    Column("user_pk", PK, ForeignKey("users.pk", ondelete="CASCADE"), nullable=False, index=True),
    Column("label", String(128), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
)

sessions = Table(
    "sessions",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("session_hash", String(64), nullable=False, unique=True),  # SHA-256 of the cookie value
    Column("user_pk", PK, ForeignKey("users.pk", ondelete="CASCADE"), nullable=False, index=True),
    Column("csrf", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
)

study_shares = Table(
    "study_shares",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("study_uid", String(64), nullable=False, index=True),
    Column("user_pk", PK, ForeignKey("users.pk", ondelete="CASCADE"), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("study_uid", "user_pk"),
)

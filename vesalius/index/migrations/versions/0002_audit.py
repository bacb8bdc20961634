"""audit trail: audit_log, audit_refs, audit_head (append-only, hash-chained)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:00:00.000000

The tables of ``vesalius/security/audit.py``. Triggers make ``audit_log`` and ``audit_refs``
append-only (UPDATE, DELETE and, on PostgreSQL, TRUNCATE are refused); the hash chain finds
whatever is changed around them. ``audit_head`` starts at position 0 with the genesis hash.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

GENESIS = "0" * 64
_PK = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_SEARCH_TEXT = sa.Text().with_variant(sa.TEXT(collation='C'), 'postgresql')
_APPEND_ONLY = ("audit_log", "audit_refs")


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('pk', _PK, autoincrement=False, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event_id', sa.String(length=16), nullable=False),
    sa.Column('action', sa.String(length=1), nullable=False),
    sa.Column('outcome', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Text(), nullable=False),
    sa.Column('source_address', sa.Text(), nullable=False),
    sa.Column('patient_id', _SEARCH_TEXT, nullable=False),
    sa.Column('study_uid', sa.Text(), nullable=False),
    sa.Column('xml', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_user_id_at'), ['user_id', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_event_id_at'), ['event_id', 'at'], unique=False)

    op.create_table('audit_refs',
    sa.Column('pk', _PK, autoincrement=True, nullable=False),
    sa.Column('audit_pk', _PK, nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('value', _SEARCH_TEXT, nullable=False),
    sa.ForeignKeyConstraint(['audit_pk'], ['audit_log.pk'], name=op.f('fk_audit_refs_audit_pk_audit_log')),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_audit_refs'))
    )
    with op.batch_alter_table('audit_refs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_refs_audit_pk'), ['audit_pk'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_refs_kind_value_audit_pk'), ['kind', 'value', 'audit_pk'],
                              unique=False)

    head = op.create_table('audit_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('seq', _PK, nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_head'))
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS, "updated_at": None}])

    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION vesalius_audit_append_only() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'audit trail is append-only (% on %)', TG_OP, TG_TABLE_NAME; END; "
            "$$ LANGUAGE plpgsql"
        )
        for table in _APPEND_ONLY:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION vesalius_audit_append_only()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION vesalius_audit_append_only()")
    elif dialect == "sqlite":
        for table in _APPEND_ONLY:
            for verb in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, 'audit trail is append-only ({verb} on {table})'); END")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for table in _APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS vesalius_audit_append_only()")
    elif dialect == "sqlite":
        for table in _APPEND_ONLY:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")

    op.drop_table('audit_head')
    with op.batch_alter_table('audit_refs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_refs_kind_value_audit_pk'))
        batch_op.drop_index(batch_op.f('ix_audit_refs_audit_pk'))

    op.drop_table('audit_refs')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_event_id_at'))
        batch_op.drop_index(batch_op.f('ix_audit_log_user_id_at'))
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))

    op.drop_table('audit_log')

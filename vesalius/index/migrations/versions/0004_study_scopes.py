"""study scopes: InstitutionName and InstitutionalDepartmentName per study

Revision ID: 0004
Revises: 0003

Access scopes (vesalius.security.policy) match these in SQL instead of reading each match's
stored header. Existing studies are filled from their first instance's header.
"""

from __future__ import annotations

import json
import zlib

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _text() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(sa.dialects.postgresql.TEXT(collation="C"), "postgresql")


def upgrade() -> None:
    op.add_column("studies", sa.Column("institution", _text(), nullable=False, server_default=""))
    op.add_column("studies", sa.Column("department", _text(), nullable=False, server_default=""))
    op.create_index(op.f("ix_studies_institution"), "studies", ["institution"])
    conn = op.get_bind()
    studies = sa.table("studies", sa.column("pk"), sa.column("institution"), sa.column("department"))
    rows = conn.execute(sa.text(
        "SELECT i.study_pk, i.header FROM instances i JOIN "
        "(SELECT study_pk, MIN(pk) AS first FROM instances GROUP BY study_pk) f ON i.pk = f.first")).all()
    for study_pk, blob in rows:
        try:
            header = json.loads(zlib.decompress(blob))
        except Exception:
            continue
        values = {}
        for column, tag in (("institution", "00080080"), ("department", "00081040")):
            v = (header.get(tag) or {}).get("Value") or [""]
            values[column] = str(v[0])[:64]
        if any(values.values()):
            conn.execute(sa.update(studies).where(studies.c.pk == study_pk).values(**values))


def downgrade() -> None:
    op.drop_index(op.f("ix_studies_institution"), table_name="studies")
    op.drop_column("studies", "department")
    op.drop_column("studies", "institution")

"""Index tables (SQLAlchemy 2 Core/ORM metadata), one row per patient, study, series, instance.

Query keys live in columns (indexed where C-FIND and QIDO-RS search by them); counts that
the standard defines as derived (PS3.4 C.3.4, e.g. NumberOfStudyRelatedInstances) are kept
up to date on ingest; the whole header of every instance is kept as zlib-compressed DICOM
JSON (PS3.18 F.2) without bulk data, so metadata is served without reading stored files.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import postgresql

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: Text compared with byte order on PostgreSQL too, so prefix ranges match LIKE prefixes.
SearchText = Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")
PK = BigInteger().with_variant(Integer(), "sqlite")

patients = Table(
    "patients",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("patient_id", SearchText, nullable=False, default=""),
    Column("issuer", SearchText, nullable=False, default=""),
    Column("patient_name", Text, nullable=False, default=""),
    Column("pn_alpha", SearchText, nullable=False, default=""),  # upper-cased alphabetic group
    Column("pn_ideo", SearchText, nullable=False, default=""),
    Column("pn_phon", SearchText, nullable=False, default=""),
    Column("birth_date", String(8), nullable=False, default=""),
    Column("sex", String(16), nullable=False, default=""),
    Column("num_studies", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("patient_id", "issuer"),
    Index(None, "pn_alpha"),
    Index(None, "pn_ideo"),
    Index(None, "pn_phon"),
    Index(None, "birth_date"),
)

studies = Table(
    "studies",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("study_uid", String(64), nullable=False, unique=True),
    Column("patient_pk", PK, ForeignKey("patients.pk", ondelete="CASCADE"), nullable=False, index=True),
    Column("study_date", String(8), nullable=False, default=""),
    Column("study_time", String(16), nullable=False, default=""),
    Column("accession_number", SearchText, nullable=False, default=""),
    Column("study_id", SearchText, nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    Column("referring_name", Text, nullable=False, default=""),
    Column("modalities", String(256), nullable=False, default=""),  # "\CT\SR\" for LIKE matching
    Column("sop_classes", Text, nullable=False, default=""),
    Column("num_series", Integer, nullable=False, default=0),
    Column("num_instances", Integer, nullable=False, default=0),
    Column("size_bytes", BigInteger, nullable=False, default=0),
    Column("charset", String(128), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Access scopes (InstitutionName, InstitutionalDepartmentName of the study's first instance)
    Column("institution", SearchText, nullable=False, default="", server_default=""),
    Column("department", SearchText, nullable=False, default="", server_default=""),
    Index(None, "study_date"),
    Index(None, "institution"),
    Index(None, "accession_number"),
    Index(None, "updated_at"),
)

series = Table(
    "series",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("series_uid", String(64), nullable=False, unique=True),
    Column("study_pk", PK, ForeignKey("studies.pk", ondelete="CASCADE"), nullable=False, index=True),
    Column("modality", String(16), nullable=False, default=""),
    Column("series_number", Integer, nullable=True),
    Column("description", Text, nullable=False, default=""),
    Column("body_part", String(64), nullable=False, default=""),
    Column("series_date", String(8), nullable=False, default=""),
    Column("series_time", String(16), nullable=False, default=""),
    Column("num_instances", Integer, nullable=False, default=0),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index(None, "modality"),
)

instances = Table(
    "instances",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("sop_uid", String(64), nullable=False, unique=True),
    Column("series_pk", PK, ForeignKey("series.pk", ondelete="CASCADE"), nullable=False, index=True),
    Column("study_pk", PK, ForeignKey("studies.pk", ondelete="CASCADE"), nullable=False, index=True),
    Column("sop_class_uid", String(64), nullable=False),
    Column("instance_number", Integer, nullable=True),
    Column("number_of_frames", Integer, nullable=True),
    Column("transfer_syntax", String(64), nullable=False),
    Column("blob_key", String(64), nullable=False, index=True),
    Column("size", BigInteger, nullable=False),
    Column("charset", String(128), nullable=False, default=""),
    Column("header", LargeBinary, nullable=False),  # zlib(DICOM JSON), bulk data left out
    Column("source_ae", String(16), nullable=False, default=""),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

conflicts = Table(
    "conflicts",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("kind", String(32), nullable=False),  # instance | patient
    Column("action", String(16), nullable=False),  # kept | replaced | rejected | recorded
    Column("sop_uid", String(64), nullable=False, default=""),
    Column("study_uid", String(64), nullable=False, default=""),
    Column("old_key", String(64), nullable=False, default=""),
    Column("new_key", String(64), nullable=False, default=""),
    Column("source_ae", String(16), nullable=False, default=""),
    Column("detail", Text, nullable=False, default=""),
)

remotes = Table(
    "remotes",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("ae_title", String(16), nullable=False),
    Column("host", String(255), nullable=False),
    Column("port", Integer, nullable=False),
)


# ============================================================================ audit trail
# Tables of the audit trail (vesalius/security/audit.py; migration 0002_audit). They hold PHI by
# design (who saw which patient's images) and are append-only: the migration adds triggers that
# refuse UPDATE and DELETE, and every row is hash-chained to the one before it, so an edit made
# around the triggers is still found by ``AuditLog.verify``.

#: One row per audit message. ``pk`` is the position in the hash chain (1, 2, 3 ...), assigned
#: under the lock on ``audit_head``, so a gap means a deleted record.
audit_log = Table(
    "audit_log",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),  # EventDateTime, UTC
    Column("event_id", String(16), nullable=False),  # EventID code, e.g. 110112
    Column("action", String(1), nullable=False),  # EventActionCode C/R/U/D/E
    Column("outcome", Integer, nullable=False),  # EventOutcomeIndicator 0/4/8/12
    Column("user_id", Text, nullable=False, default=""),  # the requesting participant's UserID
    Column("source_address", Text, nullable=False, default=""),  # its NetworkAccessPointID
    Column("patient_id", SearchText, nullable=False, default=""),  # first patient (ParticipantObjectID)
    Column("study_uid", Text, nullable=False, default=""),  # first study
    Column("xml", Text, nullable=False),  # the PS3.15 A.5 AuditMessage
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),  # SHA-256(prev_hash || canonical record bytes)
    Index(None, "at"),
    Index(None, "user_id", "at"),
    Index(None, "event_id", "at"),
)

#: Every patient and study an audit message names (a message may name several studies),
#: covered by the record's hash.
audit_refs = Table(
    "audit_refs",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("audit_pk", PK, ForeignKey("audit_log.pk"), nullable=False, index=True),
    Column("kind", String(8), nullable=False),  # patient | study
    Column("value", SearchText, nullable=False),
    Index(None, "kind", "value", "audit_pk"),
)

#: One row (id = 1): the chain's last position and hash, so a deleted tail is found too.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", PK, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=True),
)

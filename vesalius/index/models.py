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
    Index(None, "study_date"),
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

"""Retrieve: locate the instances a C-MOVE / C-GET / WADO request names (PS3.4 C.4.2, C.4.3).

Sub-operations send each instance in its stored transfer syntax when the peer accepts
it, and otherwise transcode it (see :mod:`vesalius.dicom.transcode`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from sqlalchemy import Select, select
from sqlalchemy.engine import Engine

from vesalius.dicom.keys import Level, level_of_identifier
from vesalius.dicom.uids import is_valid_uid
from vesalius.errors import QueryError
from vesalius.index.models import instances, patients, series, studies
from vesalius.storage.base import BlobStore


@dataclass(frozen=True)
class InstanceRef:
    """Where one archived instance is and what it is."""

    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    blob_key: str
    size: int
    study_uid: str
    series_uid: str


def _uid_list(ds: Dataset, keyword: str) -> list[str]:
    v = ds.get(keyword)
    if v is None or v == "":
        return []
    items = list(v) if isinstance(v, (list, tuple, MultiValue)) else str(v).split("\\")
    vals = [str(x).strip() for x in items if str(x).strip()]
    for x in vals:
        if not is_valid_uid(x):
            raise QueryError(f"{keyword} contains an invalid UID")
    return vals


class RetrieveService:
    """Finds instances for retrieval and reads their bytes."""

    def __init__(self, engine: Engine, store: BlobStore) -> None:
        self.engine = engine
        self.store = store

    def locate(self, identifier: Dataset, level: Level | None = None) -> list[InstanceRef]:
        """The instances named by a C-MOVE/C-GET identifier (unique keys, PS3.4 C.4.2.1.4)."""
        stmt = self._statement(identifier, level)
        with self.engine.connect() as conn:
            return [InstanceRef(*row) for row in conn.execute(stmt)]

    def _statement(self, identifier: Dataset, level: Level | None, *extra: Any) -> Select[Any]:
        if level is None:
            level = level_of_identifier(identifier)
        stmt = (select(instances.c.sop_uid, instances.c.sop_class_uid, instances.c.transfer_syntax,
                       instances.c.blob_key, instances.c.size, studies.c.study_uid, series.c.series_uid,
                       *extra)
                .select_from(instances.join(series, instances.c.series_pk == series.c.pk)
                             .join(studies, instances.c.study_pk == studies.c.pk)
                             .join(patients, studies.c.patient_pk == patients.c.pk)))
        constrained = False
        if level == Level.PATIENT or identifier.get("PatientID"):
            pid = str(identifier.get("PatientID", "") or "").strip()
            if level == Level.PATIENT and not pid:
                raise QueryError("PatientID is required for a PATIENT level retrieve")
            if pid:
                stmt = stmt.where(patients.c.patient_id == pid)
                constrained = True
        for kw, col, lv in (("StudyInstanceUID", studies.c.study_uid, Level.STUDY),
                            ("SeriesInstanceUID", series.c.series_uid, Level.SERIES),
                            ("SOPInstanceUID", instances.c.sop_uid, Level.IMAGE)):
            uids = _uid_list(identifier, kw)
            if lv.depth <= level.depth and lv.depth == level.depth and not uids:
                raise QueryError(f"{kw} is required for a {level.value} level retrieve")
            if uids and lv.depth <= level.depth:
                stmt = stmt.where(col.in_(uids))
                constrained = True
        if not constrained:
            raise QueryError("the retrieve identifier names no patient, study, series or instance")
        return stmt.order_by(series.c.pk, instances.c.instance_number, instances.c.pk)

    @staticmethod
    def _identifier(study_uid: str | None, series_uid: str | None, sop_uid: str | None
                    ) -> tuple[Dataset, Level]:
        ds = Dataset()
        level = Level.STUDY
        if study_uid:
            ds.StudyInstanceUID = study_uid
        if series_uid:
            ds.SeriesInstanceUID = series_uid
            level = Level.SERIES
        if sop_uid:
            ds.SOPInstanceUID = sop_uid
            level = Level.IMAGE
        return ds, level

    def instances_of(self, study_uid: str | None = None, series_uid: str | None = None,
                     sop_uid: str | None = None) -> list[InstanceRef]:
        """The instances of a study, series or one instance (WADO-RS paths)."""
        return self.locate(*self._identifier(study_uid, series_uid, sop_uid))

    def metadata(self, study_uid: str | None = None, series_uid: str | None = None,
                 sop_uid: str | None = None) -> list[tuple[InstanceRef, str]]:
        """Each instance with its header as DICOM JSON text (PS3.18 F.2), from the index only.

        Bulk data values hold the placeholder ``bulk:<tag>`` (see :mod:`vesalius.dicom.record`).
        """
        stmt = self._statement(*self._identifier(study_uid, series_uid, sop_uid), instances.c.header)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [(InstanceRef(*row[:7]), zlib.decompress(row[7]).decode()) for row in rows]

    def study_facts(self, study_uid: str) -> dict[str, str] | None:
        stmt = (select(studies.c.referring_name, studies.c.institution, studies.c.department, patients.c.issuer,
                       patients.c.patient_id)
                .join(patients, studies.c.patient_pk == patients.c.pk).where(studies.c.study_uid == study_uid))
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return None
        return {"StudyInstanceUID": study_uid, "ReferringPhysicianName": row.referring_name or "",
                "IssuerOfPatientID": row.issuer or "", "PatientID": row.patient_id or "",
                "InstitutionName": row.institution or "", "InstitutionalDepartmentName": row.department or ""}

    def read(self, ref: InstanceRef) -> bytes:
        return self.store.get(ref.blob_key)

    def path(self, ref: InstanceRef) -> Path | None:
        return self.store.local_path(ref.blob_key)

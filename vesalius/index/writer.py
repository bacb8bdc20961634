"""The index's write side: one transaction per stored instance.

Counters defined by PS3.4 C.3.4 (NumberOfStudyRelated*, NumberOfSeriesRelatedInstances,
NumberOfPatientRelatedStudies) and ModalitiesInStudy are maintained here, so queries
never count rows.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, case, delete, func, insert, literal, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from vesalius.dicom.record import InstanceRecord
from vesalius.index.db import write_engine
from vesalius.index.models import conflicts, instances, patients, series, studies


class Outcome(StrEnum):
    """What happened to an incoming instance."""

    STORED = "stored"
    DUPLICATE = "duplicate"  # same SOP Instance UID, same bytes: nothing to do
    KEPT = "kept"  # same UID, other bytes, policy keep: the first copy stays
    REPLACED = "replaced"  # same UID, other bytes, policy replace: the new copy wins
    REJECTED = "rejected"  # same UID, other bytes, policy reject


@dataclass(frozen=True)
class IngestResult:
    outcome: Outcome
    old_key: str = ""  # the replaced object's blob key, to remove after commit


def _add_member(col: Any, name: str) -> Any:
    """SQL: ``col`` with ``\\<:name>\\`` appended unless already a member."""
    value: Any = bindparam(name)
    member = literal("\\") + value + literal("\\")
    return case((col.contains(member, escape="!"), col),
                (col == "", member),
                else_=col + value + literal("\\"))


# Statements built once: per instance of a known series the hot path runs four of them.
_SELECT_EXISTING = select(instances.c.pk, instances.c.blob_key, instances.c.size, instances.c.series_pk,
                          instances.c.study_pk).where(instances.c.sop_uid == bindparam("sop"))
_INSERT_INSTANCE = insert(instances)
_UPDATE_SERIES = (update(series).where(series.c.pk == bindparam("s_pk"))
                  .values(num_instances=series.c.num_instances + 1, updated_at=bindparam("ts")))
_UPDATE_STUDY = (update(studies).where(studies.c.pk == bindparam("st_pk")).values(
    num_instances=studies.c.num_instances + 1,
    num_series=studies.c.num_series + bindparam("new_series"),
    size_bytes=studies.c.size_bytes + bindparam("size"),
    updated_at=bindparam("ts"),
    modalities=case((bindparam("modality") == "", studies.c.modalities),
                    else_=_add_member(studies.c.modalities, "modality")),
    sop_classes=_add_member(studies.c.sop_classes, "sop_class"),
))


def now() -> datetime:
    return datetime.now(UTC)


_CacheEntry = tuple[str, tuple[int, int, tuple[str, str]]]


class _Waiter:
    """A record waiting for the next group commit."""

    __slots__ = ("rec", "on_conflict", "result", "error", "done")

    def __init__(self, rec: InstanceRecord, on_conflict: str) -> None:
        self.rec = rec
        self.on_conflict = on_conflict
        self.result: IngestResult | None = None
        self.error: Exception | None = None
        self.done = False


class IndexWriter:
    """Transactional writes of instances, patients, studies and series."""

    def __init__(self, engine: Engine) -> None:
        self.read_engine = engine
        self.engine = write_engine(engine)
        # SQLite has one writer at a time; serialising in-process avoids busy retries.
        self._lock = threading.Lock() if engine.dialect.name == "sqlite" else None
        # series UID -> (series pk, study pk, 0): parents known to exist, so an instance of a
        # known series costs one INSERT and two UPDATEs. Filled only after a commit.
        self._parents: dict[str, tuple[int, int, tuple[str, str]]] = {}
        self._queue: list[_Waiter] = []
        self._queue_lock = threading.Lock()

    def close(self) -> None:
        if self.engine is not self.read_engine:
            self.engine.dispose()

    def _remember(self, entry: _CacheEntry | None) -> None:
        if entry is not None:
            if len(self._parents) > 50000:
                self._parents.clear()
            self._parents[entry[0]] = entry[1]

    @staticmethod
    def _conflict(conn: Connection, kind: str, action: str, rec: InstanceRecord, old_key: str,
                  detail: str) -> None:
        conn.execute(insert(conflicts).values(
            at=now(), kind=kind, action=action, sop_uid=rec.sop_uid, study_uid=rec.study_uid,
            old_key=old_key, new_key=rec.blob_key, source_ae=rec.source_ae, detail=detail))

    def ingest(self, rec: InstanceRecord, on_conflict: str) -> IngestResult:
        """Index ``rec`` (its object is already durable in storage) under the conflict policy."""
        deadline = time.monotonic() + 30.0
        attempt = 0
        while True:
            try:
                return self._ingest_once(rec, on_conflict)
            except OperationalError as exc:
                # SQLite: another process holds the write lock (we do not wait inside SQLite).
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                attempt += 1
                time.sleep(min(0.0002 * attempt, 0.005) * (0.5 + random.random()))

    def _ingest_once(self, rec: InstanceRecord, on_conflict: str) -> IngestResult:
        if self._lock is not None:
            return self._ingest_grouped(rec, on_conflict)
        return self._ingest_retrying(rec, on_conflict)

    def _ingest_grouped(self, rec: InstanceRecord, on_conflict: str) -> IngestResult:
        """SQLite group commit: records that arrive while another commit runs are indexed
        together in the next transaction, so N waiting writers cost one commit (one WAL
        fsync), not N. Each caller returns only after its own record has committed."""
        waiter = _Waiter(rec, on_conflict)
        with self._queue_lock:
            self._queue.append(waiter)
        assert self._lock is not None
        with self._lock:
            if not waiter.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit_group(batch)
        if waiter.error is not None:
            raise waiter.error
        assert waiter.result is not None
        return waiter.result

    def _commit_group(self, batch: list[_Waiter]) -> None:
        if len(batch) > 1:
            try:
                entries = []
                with self.engine.begin() as conn:
                    for w in batch:
                        w.result, entry = self._ingest(conn, w.rec, w.on_conflict)
                        entries.append(entry)
                for entry in entries:
                    self._remember(entry)
                for w in batch:
                    w.done = True
                return
            except Exception:
                for w in batch:
                    w.result = None
                    self._parents.pop(w.rec.series_uid, None)
        # one record, or a group that failed: each on its own, so one cannot fail the rest
        for w in batch:
            try:
                w.result = self._ingest_retrying(w.rec, w.on_conflict)
            except Exception as exc:
                w.error = exc
            w.done = True

    def _ingest_retrying(self, rec: InstanceRecord, on_conflict: str) -> IngestResult:
        for attempt in range(20):
            try:
                with self.engine.begin() as conn:
                    result, entry = self._ingest(conn, rec, on_conflict)
                self._remember(entry)
                return result
            except IntegrityError:
                # A parallel writer created the same patient/study/series/instance first, or
                # a cached parent was deleted: run again from the database's current rows.
                self._parents.pop(rec.series_uid, None)
                if attempt == 19:
                    raise
            except OperationalError as exc:  # e.g. PostgreSQL deadlock between parallel writers
                if attempt == 19 or "deadlock" not in str(exc).lower():
                    raise
        raise RuntimeError("unreachable")

    def _ingest(self, conn: Connection, rec: InstanceRecord, on_conflict: str
                ) -> tuple[IngestResult, _CacheEntry | None]:
        ts = now()
        existing = conn.execute(_SELECT_EXISTING, {"sop": rec.sop_uid}).first()
        if existing is not None:
            if existing.blob_key == rec.blob_key:
                return IngestResult(Outcome.DUPLICATE), None
            detail = "same SOP Instance UID with different content"
            if on_conflict == "reject":
                self._conflict(conn, "instance", "rejected", rec, existing.blob_key, detail)
                return IngestResult(Outcome.REJECTED), None
            if on_conflict == "keep":
                self._conflict(conn, "instance", "kept", rec, existing.blob_key, detail)
                return IngestResult(Outcome.KEPT), None
            # replace: the new object takes the old one's place in the same hierarchy
            conn.execute(update(instances).where(instances.c.pk == existing.pk).values(
                sop_class_uid=rec.sop_class_uid, instance_number=rec.instance_number,
                number_of_frames=rec.number_of_frames, transfer_syntax=rec.transfer_syntax,
                blob_key=rec.blob_key, size=rec.size, charset=rec.charset, header=rec.header,
                source_ae=rec.source_ae, received_at=ts))
            conn.execute(update(studies).where(studies.c.pk == existing.study_pk).values(
                size_bytes=studies.c.size_bytes + (rec.size - existing.size), updated_at=ts))
            conn.execute(update(series).where(series.c.pk == existing.series_pk).values(updated_at=ts))
            self._conflict(conn, "instance", "replaced", rec, existing.blob_key, detail)
            return IngestResult(Outcome.REPLACED, old_key=existing.blob_key), None

        cached = self._parents.get(rec.series_uid)
        if cached is None or cached[2] != (rec.patient_id, rec.issuer):
            series_pk, study_pk, new_series = self._resolve_parents(conn, rec, ts)
        else:
            series_pk, study_pk, new_series = cached[0], cached[1], 0
        conn.execute(_INSERT_INSTANCE, {
            "sop_uid": rec.sop_uid, "series_pk": series_pk, "study_pk": study_pk,
            "sop_class_uid": rec.sop_class_uid, "instance_number": rec.instance_number,
            "number_of_frames": rec.number_of_frames, "transfer_syntax": rec.transfer_syntax,
            "blob_key": rec.blob_key, "size": rec.size, "charset": rec.charset, "header": rec.header,
            "source_ae": rec.source_ae, "received_at": ts})
        conn.execute(_UPDATE_SERIES, {"s_pk": series_pk, "ts": ts})
        # Members are added in SQL (not from a value read earlier) so parallel writers never
        # lose one.
        conn.execute(_UPDATE_STUDY, {"st_pk": study_pk, "new_series": new_series, "size": rec.size, "ts": ts,
                                     "modality": rec.modality, "sop_class": rec.sop_class_uid})
        return IngestResult(Outcome.STORED), (rec.series_uid, (series_pk, study_pk, (rec.patient_id, rec.issuer)))

    def _resolve_parents(self, conn: Connection, rec: InstanceRecord, ts: datetime) -> tuple[int, int, int]:
        """Find or create the patient, study and series of ``rec``: (series_pk, study_pk, new_series)."""
        ser = conn.execute(select(series.c.pk, series.c.study_pk)
                           .where(series.c.series_uid == rec.series_uid)).first()
        study = conn.execute(select(studies.c.pk, studies.c.patient_pk)
                             .where(studies.c.study_uid == rec.study_uid)).first()
        if study is None:
            patient_pk = self._patient(conn, rec, ts)
            study_pk = conn.execute(insert(studies).values(
                study_uid=rec.study_uid, patient_pk=patient_pk, study_date=rec.study_date,
                study_time=rec.study_time, accession_number=rec.accession_number,
                study_id=rec.study_id, description=rec.study_description,
                institution=rec.institution, department=rec.department,
                referring_name=rec.referring_name, modalities="", sop_classes="", num_series=0,
                num_instances=0, size_bytes=0, charset=rec.charset, created_at=ts, updated_at=ts,
            ).returning(studies.c.pk)).scalar_one()
            conn.execute(update(patients).where(patients.c.pk == patient_pk)
                         .values(num_studies=patients.c.num_studies + 1))
        else:
            study_pk, patient_pk = study.pk, study.patient_pk
            owner = conn.execute(select(patients.c.patient_id, patients.c.issuer)
                                 .where(patients.c.pk == patient_pk)).first()
            if owner is not None and (owner.patient_id, owner.issuer) != (rec.patient_id, rec.issuer):
                self._conflict(conn, "patient", "recorded", rec, "",
                               "study arrived under a different Patient ID/Issuer than before; "
                               "indexed under the study's first patient")
        if ser is not None:
            return int(ser.pk), int(ser.study_pk), 0
        series_pk = conn.execute(insert(series).values(
            series_uid=rec.series_uid, study_pk=study_pk, modality=rec.modality,
            series_number=rec.series_number, description=rec.series_description,
            body_part=rec.body_part, series_date=rec.series_date, series_time=rec.series_time,
            num_instances=0, updated_at=ts,
        ).returning(series.c.pk)).scalar_one()
        return int(series_pk), int(study_pk), 1

    @staticmethod
    def _patient(conn: Connection, rec: InstanceRecord, ts: datetime) -> int:
        row = conn.execute(select(patients.c.pk).where(
            patients.c.patient_id == rec.patient_id, patients.c.issuer == rec.issuer)).first()
        if row is not None:
            return int(row.pk)
        alpha, ideo, phon = rec.pn_parts
        pk = conn.execute(insert(patients).values(
            patient_id=rec.patient_id, issuer=rec.issuer, patient_name=rec.patient_name,
            pn_alpha=alpha, pn_ideo=ideo, pn_phon=phon, birth_date=rec.birth_date, sex=rec.sex,
            num_studies=0, created_at=ts,
        ).returning(patients.c.pk)).scalar_one()
        return int(pk)

    # ------------------------------------------------------------------ delete
    def delete(self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None) -> list[str]:
        """Remove a study, series or instance from the index; return the blob keys it held.

        Counters and ModalitiesInStudy of the parents are recomputed; parents left empty are
        removed (a patient with no study left goes too). The caller removes the objects from
        storage after this commits.
        """
        deadline = time.monotonic() + 30.0
        while True:
            try:
                if self._lock is not None:
                    with self._lock, self.engine.begin() as conn:
                        keys = self._delete(conn, study_uid, series_uid, sop_uid)
                else:
                    with self.engine.begin() as conn:
                        keys = self._delete(conn, study_uid, series_uid, sop_uid)
                self._parents.clear()
                return keys
            except OperationalError as exc:
                if ("locked" not in str(exc) and "deadlock" not in str(exc).lower()) \
                        or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    @staticmethod
    def _delete(conn: Connection, study_uid: str, series_uid: str | None, sop_uid: str | None) -> list[str]:
        study = conn.execute(select(studies.c.pk, studies.c.patient_pk)
                             .where(studies.c.study_uid == study_uid)).first()
        if study is None:
            return []
        stmt = select(instances.c.pk, instances.c.blob_key, instances.c.series_pk).where(
            instances.c.study_pk == study.pk)
        if series_uid:
            stmt = stmt.join(series, instances.c.series_pk == series.c.pk).where(series.c.series_uid == series_uid)
        if sop_uid:
            stmt = stmt.where(instances.c.sop_uid == sop_uid)
        rows = conn.execute(stmt).all()
        if not rows:
            return []
        pks = [r.pk for r in rows]
        for i in range(0, len(pks), 500):
            conn.execute(delete(instances).where(instances.c.pk.in_(pks[i:i + 500])))
        ts = now()
        for s_pk in {r.series_pk for r in rows}:
            left = conn.execute(select(func.count()).select_from(instances)
                                .where(instances.c.series_pk == s_pk)).scalar_one()
            if left:
                conn.execute(update(series).where(series.c.pk == s_pk).values(num_instances=left, updated_at=ts))
            else:
                conn.execute(delete(series).where(series.c.pk == s_pk))
        n_inst, size = conn.execute(select(func.count(), func.coalesce(func.sum(instances.c.size), 0))
                                    .where(instances.c.study_pk == study.pk)).one()
        if n_inst:
            mods = [m for (m,) in conn.execute(select(series.c.modality).distinct()
                                               .where(series.c.study_pk == study.pk)) if m]
            classes = [c for (c,) in conn.execute(select(instances.c.sop_class_uid).distinct()
                                                  .where(instances.c.study_pk == study.pk))]
            n_series = conn.execute(select(func.count()).select_from(series)
                                    .where(series.c.study_pk == study.pk)).scalar_one()
            conn.execute(update(studies).where(studies.c.pk == study.pk).values(
                num_instances=n_inst, num_series=n_series, size_bytes=size, updated_at=ts,
                modalities="\\" + "\\".join(sorted(mods)) + "\\" if mods else "",
                sop_classes="\\" + "\\".join(sorted(classes)) + "\\" if classes else ""))
        else:
            conn.execute(delete(studies).where(studies.c.pk == study.pk))
            conn.execute(update(patients).where(patients.c.pk == study.patient_pk)
                         .values(num_studies=patients.c.num_studies - 1))
            conn.execute(delete(patients).where(patients.c.pk == study.patient_pk, patients.c.num_studies <= 0))
        return [r.blob_key for r in rows]

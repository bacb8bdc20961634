"""Ingest: validate, dedupe, store durably, index, then acknowledge (PS3.4 Annex B).

Order of operations for every object, whatever interface it came from:
parse and validate -> SHA-256 -> (duplicate? answer now) -> write, fsync, rename ->
index in one transaction -> answer success. An object on disk without an index row was
never acknowledged and is removed by start-up recovery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from pydicom.dataset import Dataset

from vesalius.dicom.parse import parse_part10
from vesalius.dicom.record import make_record
from vesalius.errors import InvalidDicom, StorageError
from vesalius.index.writer import IndexWriter, Outcome
from vesalius.storage.base import BlobStore, blob_key_for

log = logging.getLogger("vesalius.ingest")



class Status(int, Enum):
    """C-STORE statuses (PS3.4 B.2.3, PS3.7 C) that ingest answers with."""

    SUCCESS = 0x0000
    WARNING_COERCION = 0xB000
    DUPLICATE_INVOCATION = 0x0111  # Duplicate SOP Instance (PS3.7 C.5.8): used for reject
    OUT_OF_RESOURCES = 0xA700
    DATASET_MISMATCH = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    PROCESSING_FAILURE = 0x0110
    NOT_AUTHORIZED = 0x0124  # Refused: Not Authorized (PS3.7 C.4.1)
    STUDY_MISMATCH = 0xC409  # STOW-RS to /studies/{uid} with an instance of another study


@dataclass(frozen=True)
class IngestReport:
    """The answer to one stored object."""

    status: Status
    outcome: str  # stored | duplicate | kept | replaced | rejected | invalid | error
    reason: str = ""
    sop_instance_uid: str = ""
    study_uid: str = ""
    blob_key: str = ""
    sop_class_uid: str = ""
    series_uid: str = ""

    @property
    def ok(self) -> bool:
        return self.status == Status.SUCCESS or self.status == Status.WARNING_COERCION


class Ingestor:
    """Turns bytes into archived instances under the configured conflict policy."""

    def __init__(self, store: BlobStore, writer: IndexWriter, on_conflict: str) -> None:
        self.store = store
        self.writer = writer
        self.on_conflict = on_conflict

    def ingest(self, data: bytes, source_ae: str = "", expected_sop_instance: str | None = None,
               expected_study: str | None = None,
               authorize: Callable[[Dataset], bool] | None = None) -> IngestReport:
        """Archive one Part-10 object; never raises for bad input, answers a status instead.

        (Hashing and writing on a worker thread while this one parses was measured slower:
        the threads contend for the GIL more than the overlap gains.)
        """
        try:
            parsed = parse_part10(data, expected_sop_instance=expected_sop_instance)
            rec = make_record(parsed.dataset, sop_uid=parsed.sop_instance_uid, sop_class=parsed.sop_class_uid,
                              study_uid=parsed.study_uid, series_uid=parsed.series_uid,
                              transfer_syntax=parsed.transfer_syntax, blob_key="", size=len(data),
                              source_ae=source_ae)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, InvalidDicom) else f"header cannot be indexed ({type(exc).__name__})"
            log.info("refused object from %s: %s", source_ae or "local", reason)
            return IngestReport(Status.CANNOT_UNDERSTAND, "invalid", reason)
        uid, study, sop_class = parsed.sop_instance_uid, parsed.study_uid, parsed.sop_class_uid
        if authorize is not None and not authorize(parsed.dataset):
            return IngestReport(Status.NOT_AUTHORIZED, "refused",
                                "the caller may not store into this study's institution or department",
                                uid, study, "", sop_class)
        if expected_study is not None and study != expected_study:
            return IngestReport(Status.STUDY_MISMATCH, "mismatch",
                                "the instance belongs to another study than the one in the request",
                                uid, study, "", sop_class)
        try:
            key = self._hash_and_put(data)
        except StorageError as exc:
            log.error("storage failure: %s", exc)
            return IngestReport(Status.OUT_OF_RESOURCES, "error", str(exc), uid, study, "", sop_class)
        rec.blob_key = key
        try:
            result = self.writer.ingest(rec, self.on_conflict)
        except Exception as exc:
            log.error("index failure: %s", type(exc).__name__)
            self.discard_if_unreferenced(key)
            self.store.settle(key)
            return IngestReport(Status.OUT_OF_RESOURCES, "error", f"index failure ({type(exc).__name__})",
                                uid, study, "", sop_class)
        if result.outcome in (Outcome.KEPT, Outcome.REJECTED):
            self.discard_if_unreferenced(key)
        if result.outcome == Outcome.REPLACED and result.old_key and result.old_key != key:
            self.discard_if_unreferenced(result.old_key)
        self.store.settle(key)
        if result.outcome == Outcome.REJECTED:
            return IngestReport(Status.DUPLICATE_INVOCATION, "rejected",
                                "an instance with this SOP Instance UID and different content is already "
                                "archived (on_conflict = reject)", uid, study, key, sop_class)
        return IngestReport(Status.SUCCESS, result.outcome.value, "", uid, study, key, sop_class,
                            parsed.series_uid)

    def _hash_and_put(self, data: bytes) -> str:
        key = blob_key_for(data)
        self.store.put(key, data)  # content-addressed: a re-sent object is not written again
        return key

    def discard_if_unreferenced(self, key: str) -> None:
        from sqlalchemy import select

        from vesalius.index.models import instances

        with self.writer.read_engine.connect() as conn:
            used = conn.execute(select(instances.c.pk).where(instances.c.blob_key == key).limit(1)).first()
        if used is None:
            self.store.delete(key)

"""Ingest: durable store, dedupe, conflict policies, recovery (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydicom.dataset import Dataset

from tests.conftest import make_settings
from tests.factory import instance, uid
from vesalius.archive import Archive, open_archive
from vesalius.archive.maintenance import verify


def test_store_then_find(archive: Archive) -> None:
    data = instance()
    rep = archive.store_bytes(data, "MODALITY")
    assert rep.ok and rep.outcome == "stored"
    assert rep.blob_key == hashlib.sha256(data).hexdigest()
    assert archive.store.get(rep.blob_key) == data  # byte-exact
    s = archive.stats()
    assert (s["patients"], s["studies"], s["series"], s["instances"]) == (1, 1, 1, 1)
    assert s["bytes"] == len(data)


def test_same_bytes_twice_is_stored_once(archive: Archive) -> None:
    data = instance()
    assert archive.store_bytes(data).outcome == "stored"
    rep = archive.store_bytes(data)
    assert rep.ok and rep.outcome == "duplicate"
    assert archive.stats()["instances"] == 1
    assert len(list(archive.store.keys())) == 1


def test_conflict_keep_first(archive: Archive) -> None:
    first, second = instance(seed=1), instance(seed=2)  # same UIDs, other pixels
    archive.store_bytes(first)
    rep = archive.store_bytes(second)
    assert rep.ok and rep.outcome == "kept"
    (ref,) = archive.retrieval.instances_of(sop_uid=uid("S1", "SE1", 1))
    assert archive.read(ref) == first
    assert list(archive.store.keys()) == [hashlib.sha256(first).hexdigest()]
    assert archive.stats()["conflicts"] == 1


def test_conflict_replace(tmp_path: Path, db_url: str) -> None:
    a = open_archive(make_settings(tmp_path, db_url, on_conflict="replace"))
    first, second = instance(seed=1), instance(seed=2)
    a.store_bytes(first)
    rep = a.store_bytes(second)
    assert rep.ok and rep.outcome == "replaced"
    (ref,) = a.retrieval.instances_of(sop_uid=uid("S1", "SE1", 1))
    assert a.read(ref) == second
    assert list(a.store.keys()) == [hashlib.sha256(second).hexdigest()]
    s = a.stats()
    assert s["instances"] == 1 and s["bytes"] == len(second)
    a.close()


def test_conflict_reject(tmp_path: Path, db_url: str) -> None:
    a = open_archive(make_settings(tmp_path, db_url, on_conflict="reject"))
    a.store_bytes(instance(seed=1))
    rep = a.store_bytes(instance(seed=2))
    assert not rep.ok and rep.outcome == "rejected"
    assert int(rep.status) & 0xF000 in (0x0000, 0xA000, 0xC000) or int(rep.status) == 0x0111
    assert a.stats()["conflicts"] == 1
    a.close()


def test_study_under_another_patient_is_recorded(archive: Archive) -> None:
    archive.store_bytes(instance(n=1, patient_id="A"))
    rep = archive.store_bytes(instance(n=2, patient_id="B"))
    assert rep.ok
    from vesalius.archive.maintenance import list_conflicts

    kinds = [c["kind"] for c in list_conflicts(archive.engine)]
    assert kinds == ["patient"]


def test_counters_and_modalities(archive: Archive) -> None:
    for n in range(3):
        archive.store_bytes(instance("S1", "SE1", n))
    archive.store_bytes(instance("S1", "SE2", 0, modality="SR"))
    archive.store_bytes(instance("S2", "SE1", 0))
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = uid("S1")
    q.ModalitiesInStudy = ""
    q.NumberOfStudyRelatedSeries = ""
    q.NumberOfStudyRelatedInstances = ""
    (doc,) = archive.find(archive.parse_query(q))
    assert doc["00080061"]["Value"] == ["CT", "SR"]
    assert doc["00201206"]["Value"] == [2]
    assert doc["00201208"]["Value"] == [4]
    p = Dataset()
    p.QueryRetrieveLevel = "PATIENT"
    p.PatientID = "PID1"
    p.NumberOfPatientRelatedStudies = ""
    (pdoc,) = archive.find(archive.parse_query(p))
    assert pdoc["00201200"]["Value"] == [2]


def test_invalid_objects_leave_nothing(archive: Archive) -> None:
    good = instance()
    bad = [b"", b"hello world" * 100, good[:200], good[:-10], b"MZ" + good[2:]]
    for data in bad:
        rep = archive.store_bytes(data)
        assert not rep.ok and rep.reason
    assert archive.stats()["instances"] == 0
    assert list(archive.store.keys()) == []


def test_header_kept_as_json_without_bulk(archive: Archive) -> None:
    archive.store_bytes(instance())
    q = Dataset()
    q.QueryRetrieveLevel = "IMAGE"
    q.SOPInstanceUID = ""
    q.Rows = ""
    q.RescaleIntercept = ""
    q.PixelData = None
    (doc,) = archive.find(archive.parse_query(q))
    assert doc["00280010"]["Value"] == [32]
    assert doc["00281052"]["Value"] == [-1024]
    assert "BulkDataURI" in doc["7FE00010"] and "InlineBinary" not in doc["7FE00010"]


def test_recovery_removes_unacknowledged_objects(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    a = open_archive(settings)
    a.store_bytes(instance(n=1))
    # Simulate a crash between storage and index: an object on disk, marked pending.
    orphan = instance(n=2)
    key = hashlib.sha256(orphan).hexdigest()
    a.store.put(key, orphan)
    (settings.data_dir / "storage" / "tmp" / "x.part").write_bytes(b"partial")
    a.close()
    b = open_archive(settings)
    assert not b.store.exists(key)
    assert not list((settings.data_dir / "storage" / "tmp").iterdir())
    assert verify(b.engine, b.store).clean
    assert b.stats()["instances"] == 1
    b.close()


def test_verify_detects_altered_and_missing(sqlite_archive: Archive) -> None:
    a = sqlite_archive
    r1 = a.store_bytes(instance(n=1))
    r2 = a.store_bytes(instance(n=2))
    p1 = a.store.local_path(r1.blob_key)
    p2 = a.store.local_path(r2.blob_key)
    assert p1 is not None and p2 is not None
    p1.write_bytes(p1.read_bytes()[:-1] + b"\x00")
    p2.unlink()
    rep = verify(a.engine, a.store)
    assert rep.corrupt == [r1.sop_instance_uid] and rep.missing == [r2.sop_instance_uid]

"""The DICOM listener under load, at its association limit and against hostile input.

- 32 associations at once, each holding on while it echoes and stores, all succeed.
- Over ``max_associations`` a peer gets a transient A-ASSOCIATE-RJ at once (PS3.8 9.3.4,
  reason 2 "local-limit-exceeded"), not a hang; once a slot is free it is served again.
- Hostile C-STORE data sets (path traversal in UIDs, NUL bytes, empty UIDs, impossible
  lengths, a SOP Instance UID other than the request's, a deflate bomb) get a failure
  status, leave nothing behind, and the next association is served.
- C-FIND with an unknown or wrong Query/Retrieve Level fails with a status.
- No patient name reaches the logs, at DEBUG, while storing, finding and retrieving.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian
from pynetdicom import AE, _config, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from tests import peers
from tests.conftest import make_settings
from tests.dicomgen import hostile_files
from tests.factory import instance, uid
from vesalius.archive import Archive, open_archive
from vesalius.dimse.server import DimseServer

AET = "VESALIUS"
HOST = "127.0.0.1"


def _ae(calling: str, *contexts: str) -> AE:
    ae = AE(calling)
    for cx in contexts or (Verification, CTImageStorage):
        ae.add_requested_context(cx)
    ae.acse_timeout = 10
    ae.dimse_timeout = 30
    ae.network_timeout = 30
    return ae


def _objects(archive: Archive) -> list[Path]:
    root = archive.settings.data_dir / "storage" / "objects"
    return [p for p in root.rglob("*") if p.is_file()]


def _is_failure(code: int) -> bool:
    """C-STORE failure statuses: 0xA7xx refused, 0xA9xx data set mismatch, 0xCxxx cannot
    understand (PS3.4 B.2.3); anything else (success, warning, pending) is not a failure."""
    return (code >> 8) in (0xA7, 0xA9) or (code >> 12) == 0xC


# ------------------------------------------------------------------------------ concurrency


def test_32_concurrent_associations(server: DimseServer, archive: Archive) -> None:
    n, stores = 32, 2
    # All 32 are established before any stores, and all stay until all have stored.
    barrier = threading.Barrier(n, timeout=60)
    results: dict[int, list[int]] = {}
    errors: list[str] = []

    def worker(i: int) -> None:
        ae = _ae(f"SCU{i:02d}")
        assoc = ae.associate(HOST, server.port, ae_title=AET)
        try:
            if not assoc.is_established:
                errors.append(f"{i}: association not established")
                barrier.abort()
                return
            barrier.wait()
            codes = [int(assoc.send_c_echo().Status)]
            for k in range(stores):
                ds = dcmread(io.BytesIO(instance(f"LOAD{i}", "SE1", k, patient_id=f"P{i}")))
                codes.append(int(assoc.send_c_store(ds).Status))
            results[i] = codes
            barrier.wait()
        except threading.BrokenBarrierError:
            errors.append(f"{i}: another worker failed")
        except Exception as exc:  # reported below
            errors.append(f"{i}: {type(exc).__name__}: {exc}")
            barrier.abort()
        finally:
            if assoc.is_established:
                assoc.release()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert sorted(results) == list(range(n))
    assert all(codes == [0x0000] * (1 + stores) for codes in results.values()), results
    stats = archive.stats()
    assert (stats["patients"], stats["studies"], stats["instances"]) == (n, n, n * stores)


# ------------------------------------------------------------------------------ association limit


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[DimseServer]:
    archive = open_archive(make_settings(tmp_path, max_associations=2))
    srv = DimseServer(archive, host=HOST, port=0)
    srv.start()
    yield srv
    srv.stop(grace=5.0)
    archive.close()


def test_association_over_the_limit_is_rejected_at_once(limited: DimseServer) -> None:
    held = [_ae(f"HOLD{i}").associate(HOST, limited.port, ae_title=AET) for i in range(2)]
    try:
        assert all(a.is_established for a in held)
        rejections: list[tuple[int, int, int]] = []

        def on_acse(event: Event) -> None:
            p = event.primitive  # type: ignore[attr-defined]
            if getattr(p, "result", None) not in (None, 0):
                rejections.append((int(p.result), int(p.result_source), int(p.diagnostic)))

        started = time.monotonic()
        extra = _ae("EXTRA").associate(HOST, limited.port, ae_title=AET,
                                       evt_handlers=[(evt.EVT_ACSE_RECV, on_acse)])
        elapsed = time.monotonic() - started
        assert extra.is_rejected
        assert elapsed < 2.0
        # Result 2 rejected-transient, source 3 service-provider (presentation related
        # function), reason 2 local-limit-exceeded (PS3.8 9.3.4).
        assert rejections == [(0x02, 0x03, 0x02)]
        # dcmtk sees the same
        proc = peers.echoscu(AET, limited.port, check=False)
        assert proc.returncode != 0
        assert "Local Limit Exceeded" in proc.stdout + proc.stderr
        # a slot frees up: the next association is served
        held.pop().release()
        deadline = time.monotonic() + 2.0
        while True:
            again = _ae("AGAIN").associate(HOST, limited.port, ae_title=AET)
            if again.is_established or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert again.is_established
        assert int(again.send_c_echo().Status) == 0x0000
        again.release()
    finally:
        for a in held:
            if a.is_established:
                a.release()


# ------------------------------------------------------------------------------ hostile C-STORE


def _empty_sop_uid_in_data_set(folder: Path) -> Path:
    """A valid request whose data set has a zero-length SOP Instance UID."""
    ds = dcmread(io.BytesIO(instance("HOSTILE", "SE1", 7, patient_name="Hostile^Test")))
    ds.SOPInstanceUID = ""  # the file meta (and so the request) keeps the real UID
    path = folder / "empty_sop_uid_in_data_set.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


HOSTILE = ("uid_path_traversal", "uids_path_traversal_all", "uid_with_nul", "absurd_length",
           "meta_uid_mismatch", "truncated_in_header", "truncated_in_pixel_data",
           "huge_dimensions", "deflate_bomb")


def _send_files(port: int, files: dict[str, Path]) -> dict[str, int]:
    """C-STORE each file as it is (its own data set bytes) on one association."""
    ae = AE("HOSTILE")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    ae.add_requested_context(CTImageStorage, [DeflatedExplicitVRLittleEndian])
    assoc = ae.associate(HOST, port, ae_title=AET)
    assert assoc.is_established
    codes: dict[str, int] = {}
    try:
        for name, path in files.items():
            status = assoc.send_c_store(path)
            codes[name] = int(status.Status) if "Status" in status else -1
            assert assoc.is_established, f"association lost after {name}"
    finally:
        assoc.release()
    return codes


def test_hostile_data_sets_get_failure_statuses(server: DimseServer, archive: Archive,
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # bytes as they are
    every = hostile_files(tmp_path / "hostile")
    files = {name: every[name] for name in HOSTILE}
    files["empty_sop_uid_in_data_set"] = _empty_sop_uid_in_data_set(tmp_path)
    codes = _send_files(server.port, files)
    assert {name: hex(code) for name, code in codes.items() if not _is_failure(code)} == {}
    assert archive.stats()["instances"] == 0
    assert _objects(archive) == []
    # The next association is served.
    good = _ae("GOOD").associate(HOST, server.port, ae_title=AET)
    assert good.is_established
    try:
        assert int(good.send_c_echo().Status) == 0x0000
        ds = dcmread(io.BytesIO(instance("AFTER", "SE1", 1)))
        assert int(good.send_c_store(ds).Status) == 0x0000
    finally:
        good.release()
    assert archive.stats()["instances"] == 1


def test_request_with_empty_affected_sop_instance_uid_is_answered(
        sqlite_archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    path = hostile_files(tmp_path / "hostile")["empty_sop_uid"]  # meta and data set: ''
    with DimseServer(sqlite_archive, host=HOST, port=0) as srv:
        ae = AE("HOSTILE")
        ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
        ae.dimse_timeout = 2
        assoc = ae.associate(HOST, srv.port, ae_title=AET)
        assert assoc.is_established
        started = time.monotonic()
        status = assoc.send_c_store(path)
        elapsed = time.monotonic() - started
        answered = "Status" in status and _is_failure(int(status.Status))
        if assoc.is_established:
            assoc.release()
    # A failure status, or at least an A-ABORT from the archive, well before our timeout.
    assert elapsed < 1.5
    assert answered or assoc.is_aborted
    assert sqlite_archive.stats()["instances"] == 0


# ------------------------------------------------------------------------------ bad C-FIND


def _find_status(port: int, identifier: Dataset, model: Any) -> int:
    ae = _ae("BADFIND", model)
    assoc = ae.associate(HOST, port, ae_title=AET)
    assert assoc.is_established
    final = -1
    try:
        for status, _ in assoc.send_c_find(identifier, model):
            if "Status" in status:
                final = int(status.Status)
    finally:
        assoc.release()
    return final


BAD_LEVELS = [
    ("FOO", StudyRootQueryRetrieveInformationModelFind),
    ("PATIENT", StudyRootQueryRetrieveInformationModelFind),  # not in the Study Root model
    ("", StudyRootQueryRetrieveInformationModelFind),
    ("FOO", PatientRootQueryRetrieveInformationModelFind),
]


def test_find_with_a_bad_level_fails(server: DimseServer, archive: Archive) -> None:
    assert archive.store_bytes(instance("Q", "SE1", 1)).ok
    codes = {}
    for level, model in BAD_LEVELS:
        ds = Dataset()
        ds.QueryRetrieveLevel = level
        ds.PatientName = "*"
        ds.PatientID = ""
        ds.StudyInstanceUID = ""
        codes[(level, str(model))] = _find_status(server.port, ds, model)
    # 0xA900 identifier does not match SOP class, 0xCxxx unable to process (PS3.4 C.4.1.1.4)
    bad = {k: hex(c) for k, c in codes.items() if not (c == 0xA900 or (c >> 12) == 0xC)}
    assert bad == {}
    # ... and a good query on the same server still works
    ds.QueryRetrieveLevel = "STUDY"
    assert _find_status(server.port, ds, StudyRootQueryRetrieveInformationModelFind) == 0x0000


# ------------------------------------------------------------------------------ logs


def test_no_patient_names_in_logs(server: DimseServer, archive: Archive, tmp_path: Path,
                                  caplog: pytest.LogCaptureFixture) -> None:
    """dcmtk as the peers, so every captured record comes from the archive's side."""
    for name in ("vesalius", "pynetdicom", ""):
        caplog.set_level(logging.DEBUG, logger=name)
    folder = tmp_path / "in"
    folder.mkdir()
    good = [folder / f"{n}.dcm" for n in range(2)]
    for n, path in enumerate(good):
        path.write_bytes(instance("SECRET", "SE1", n, patient_name="SECRET^PATIENT",
                                       patient_id="SECRETID"))
    bad = tmp_path / "bad.dcm"  # refused (a UID with letters): its name must not be logged
    bad.write_bytes(instance("SECRET", "SE1", 9, patient_name="SECRET^PATIENT",
                             patient_id="SECRETID", SOPInstanceUID="1.2.3.abc"))
    peers.storescu(good, AET, server.port)
    peers.storescu([bad], AET, server.port, check=False)
    found = peers.findscu("STUDY", {"PatientName": "SECRET*", "PatientID": None,
                                    "StudyInstanceUID": None}, AET, server.port)
    assert [str(r.PatientName) for r in found] == ["SECRET^PATIENT"]
    got = peers.getscu("STUDY", {"StudyInstanceUID": uid("SECRET")}, AET, server.port,
                       tmp_path / "get")
    assert len(got) == 2
    assert archive.stats()["instances"] == 2
    assert caplog.records, "nothing was logged: the check would prove nothing"
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "SECRET" not in text

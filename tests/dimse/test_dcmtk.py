"""The archive against dcmtk as modality and workstation (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydicom import dcmread

from tests import peers
from tests.factory import instance, uid
from vesalius.archive import Archive
from vesalius.config import Remote
from vesalius.dimse.server import DimseServer

pytestmark = pytest.mark.skipif(not peers.dcmtk_available("storescu", "findscu", "movescu", "getscu", "storescp"),
                                reason="dcmtk is not installed (apt-get install dcmtk)")
AET = "VESALIUS"


def write_study(folder: Path, study: str, n: int, **kw: object) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"{study}_{i:03d}.dcm"
        p.write_bytes(instance(study, "SE1", i, **kw))  # type: ignore[arg-type]
        out.append(p)
    return out


def test_echo(server: DimseServer) -> None:
    peers.echoscu(AET, server.port)


def test_wrong_called_ae_is_rejected(server: DimseServer) -> None:
    proc = peers.echoscu("NOTUS", server.port, check=False)
    assert proc.returncode != 0
    assert "Called AE Title Not Recognized" in proc.stdout + proc.stderr or "Rejected" in proc.stdout + proc.stderr


def test_store_find_move_get(server: DimseServer, archive: Archive, tmp_path: Path) -> None:
    files = write_study(tmp_path / "in", "A", 5, patient_name="DOE^JOHN", patient_id="PX") + \
        write_study(tmp_path / "in", "B", 3, patient_name="ROE^JANE", patient_id="PY", study_date="20230101")
    peers.storescu(files, AET, server.port)
    assert archive.stats()["instances"] == 8
    originals = {dcmread(f).SOPInstanceUID: dcmread(f) for f in files}

    rsp = peers.findscu("STUDY", {"PatientName": "DOE*", "StudyInstanceUID": None,
                                  "NumberOfStudyRelatedInstances": None, "ModalitiesInStudy": None}, AET, server.port)
    assert [(r.StudyInstanceUID, int(r.NumberOfStudyRelatedInstances), r.ModalitiesInStudy) for r in rsp] == \
        [(uid("A"), 5, "CT")]
    rsp = peers.findscu("STUDY", {"StudyDate": "20230101-20231231", "StudyInstanceUID": None}, AET, server.port)
    assert [r.StudyInstanceUID for r in rsp] == [uid("B")]
    rsp = peers.findscu("PATIENT", {"PatientID": "P*", "PatientName": None}, AET, server.port, model="P")
    assert sorted(str(r.PatientName) for r in rsp) == ["DOE^JOHN", "ROE^JANE"]
    rsp = peers.findscu("IMAGE", {"StudyInstanceUID": uid("A"), "SeriesInstanceUID": uid("A", "SE1"),
                                  "SOPInstanceUID": None, "InstanceNumber": None}, AET, server.port)
    assert sorted(int(r.InstanceNumber) for r in rsp) == [0, 1, 2, 3, 4]

    with peers.StoreSCP(tmp_path / "dest", aet="DEST") as dest:
        archive.add_remote(Remote("dest", "DEST", "127.0.0.1", dest.port))
        peers.movescu("STUDY", {"StudyInstanceUID": uid("A")}, AET, server.port, move_destination="DEST")
        got = dest.wait_for_files(5)
    for f in got:
        ds = dcmread(f)
        assert ds.PixelData == originals[ds.SOPInstanceUID].PixelData

    out = peers.getscu("SERIES", {"StudyInstanceUID": uid("B"), "SeriesInstanceUID": uid("B", "SE1")}, AET,
                       server.port, tmp_path / "get")
    assert len(out) == 3
    for f in out:
        ds = dcmread(f)
        assert ds.PixelData == originals[ds.SOPInstanceUID].PixelData


def test_move_to_unknown_destination(server: DimseServer, archive: Archive, tmp_path: Path) -> None:
    peers.storescu(write_study(tmp_path / "in", "A", 1), AET, server.port)
    with pytest.raises(peers.DcmtkError) as exc:
        peers.movescu("STUDY", {"StudyInstanceUID": uid("A")}, AET, server.port, move_destination="NOBODY")
    assert "a801" in str(exc.value).lower() or "Unknown" in str(exc.value) or "Refused" in str(exc.value)


def test_bad_objects_get_failure_status_and_server_goes_on(server: DimseServer, archive: Archive,
                                                          tmp_path: Path) -> None:
    good = write_study(tmp_path / "in", "A", 2)
    bad = tmp_path / "bad.dcm"
    data = instance("Z", "SE1", 0, SOPInstanceUID="1.2.3.abc")
    bad.write_bytes(data)
    proc = peers.storescu([bad], AET, server.port, check=False)
    assert "Success" not in "".join(peers._statuses(proc.stdout + proc.stderr, "Store"))
    peers.storescu(good, AET, server.port)  # the next association is served
    assert archive.stats()["instances"] == 2


def test_stored_bytes_match_what_was_sent(server: DimseServer, archive: Archive, tmp_path: Path) -> None:
    files = write_study(tmp_path / "in", "A", 2)
    peers.storescu(files, AET, server.port)
    for f in files:
        (ref,) = archive.retrieval.instances_of(sop_uid=dcmread(f).SOPInstanceUID)
        stored = archive.read(ref)
        assert ref.blob_key == hashlib.sha256(stored).hexdigest()
        # the data set part is byte-exact (file meta is rebuilt from the association)
        assert stored.endswith(f.read_bytes()[-1000:])


def test_find_over_the_result_cap_is_refused(tmp_path: Path) -> None:
    from tests.conftest import make_settings
    from vesalius.archive import open_archive

    a = open_archive(make_settings(tmp_path, max_find_results=3))
    for study in "ABCD":
        a.store_bytes(instance(study, "SE1", 0))
    srv = DimseServer(a, host="127.0.0.1", port=0)
    srv.start()
    try:
        with pytest.raises(peers.DcmtkError) as exc:
            peers.findscu("STUDY", {"StudyInstanceUID": None}, AET, srv.port)
        assert "Refused: OutOfResources" in str(exc.value)
        rsp = peers.findscu("STUDY", {"StudyInstanceUID": f"{uid('A')}\\{uid('B')}"}, AET, srv.port)
        assert len(rsp) == 2
    finally:
        srv.stop(grace=2)
        a.close()

"""DICOMweb in-process: STOW-RS, QIDO-RS, WADO-RS (instances, metadata, bulk, frames,
rendered), WADO-URI, DELETE, and the bad input each must answer with the right 4xx."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from tests.conftest import make_settings
from tests.dicomgen import make_ct_series, make_us_multiframe, pydicom_test_file
from tests.web.conftest import admin_headers
from vesalius.archive import Archive, open_archive

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from vesalius.web.app import create_app

DW = "/dicom-web"
MULTI_DICOM = 'multipart/related; type="application/dicom"'


def multipart_body(parts: list[bytes], boundary: str = "vesaliusTestBoundary",
                   ctype: str = "application/dicom") -> tuple[bytes, str]:
    body = b"".join(b"--" + boundary.encode() + f"\r\nContent-Type: {ctype}\r\n\r\n".encode() + p + b"\r\n"
                    for p in parts) + b"--" + boundary.encode() + b"--\r\n"
    return body, f'{MULTI_DICOM}; boundary={boundary}'


def split_multipart(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """Parts of a multipart/related body: (Content-Type, payload), strictly as RFC 2046 frames them."""
    assert content_type.startswith("multipart/related"), content_type
    boundary = content_type.split("boundary=")[1].split(";")[0].strip('"').encode()
    assert body.endswith(b"--" + boundary + b"--\r\n")
    chunks = body.split(b"--" + boundary)
    assert chunks[0] == b"" and chunks[-1] == b"--\r\n"
    out = []
    for chunk in chunks[1:-1]:
        assert chunk.startswith(b"\r\n") and chunk.endswith(b"\r\n")
        head, _, payload = chunk[2:-2].partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        out.append((headers.get("Content-Type", ""), payload))
    return out


@pytest.fixture
def web_archive(tmp_path: Path) -> Iterator[Archive]:
    a = open_archive(make_settings(tmp_path))
    yield a
    a.close()


@pytest.fixture
def client(web_archive: Archive) -> TestClient:
    return TestClient(create_app(web_archive, viewer=False), headers=admin_headers(web_archive))


@pytest.fixture(scope="module")
def ct_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return sorted(make_ct_series(tmp_path_factory.mktemp("ct"), n_slices=6, rows=128, cols=128, seed=3))


def stow(client: TestClient, files: list[Path] | list[bytes], url: str = f"{DW}/studies") -> tuple[int, dict]:
    body, ctype = multipart_body([f if isinstance(f, bytes) else f.read_bytes() for f in files])
    r = client.post(url, content=body, headers={"Content-Type": ctype})
    return r.status_code, r.json()


def uids_of(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


# --------------------------------------------------------------------------- STOW-RS


def test_stow_stores_and_reports(client: TestClient, web_archive: Archive, ct_files: list[Path]) -> None:
    status, doc = stow(client, ct_files)
    assert status == 200
    refs = doc["00081199"]["Value"]
    assert len(refs) == len(ct_files)
    study, series, sop = uids_of(ct_files[0])
    assert doc["00081190"]["Value"] == [f"http://testserver{DW}/studies/{study}"]
    urls = {r["00081190"]["Value"][0] for r in refs}
    assert f"http://testserver{DW}/studies/{study}/series/{series}/instances/{sop}" in urls
    assert web_archive.stats()["instances"] == len(ct_files)
    # the same again: duplicates are success, nothing stored twice
    status, _ = stow(client, ct_files)
    assert status == 200
    assert web_archive.stats()["instances"] == len(ct_files)


def test_stow_mixed_good_and_bad_parts(client: TestClient, web_archive: Archive, ct_files: list[Path]) -> None:
    good = ct_files[0].read_bytes()
    status, doc = stow(client, [good, b"this is not DICOM at all" * 10, good[: len(good) // 2]])
    assert status == 202
    assert len(doc["00081199"]["Value"]) == 1
    failed = doc["00081198"]["Value"]
    assert len(failed) == 2
    assert all(f["00081197"]["Value"][0] == 0xC000 for f in failed)
    assert web_archive.stats()["instances"] == 1


def test_stow_all_bad_is_409(client: TestClient, web_archive: Archive) -> None:
    status, doc = stow(client, [b"\0" * 300])
    assert status == 409
    assert "00081199" not in doc
    assert web_archive.stats()["instances"] == 0


def test_stow_to_study_refuses_other_study(client: TestClient, web_archive: Archive, ct_files: list[Path]) -> None:
    study, _, _ = uids_of(ct_files[0])
    status, _ = stow(client, ct_files[:1], f"{DW}/studies/{study}")
    assert status == 200
    status, doc = stow(client, ct_files[1:2], f"{DW}/studies/1.2.3.4")
    assert status == 409
    assert doc["00081198"]["Value"][0]["00081197"]["Value"] == [0xC409]
    assert web_archive.stats()["instances"] == 1


@pytest.mark.parametrize("headers, status", [
    ({}, 415),
    ({"Content-Type": "application/json"}, 415),
    ({"Content-Type": 'multipart/related; type="application/dicom+xml"; boundary=x'}, 415),
    ({"Content-Type": 'multipart/related; type="application/dicom"'}, 400),
    ({"Content-Type": "multipart/related; boundary=\"unterminated"}, 400),
])
def test_stow_bad_content_type(client: TestClient, headers: dict[str, str], status: int) -> None:
    r = client.post(f"{DW}/studies", content=b"--x\r\n\r\nabc\r\n--x--\r\n", headers=headers)
    assert r.status_code == status, r.text
    assert "error" in r.json()


def test_stow_body_without_parts_and_truncated(client: TestClient, web_archive: Archive,
                                               ct_files: list[Path]) -> None:
    r = client.post(f"{DW}/studies", content=b"no boundary here at all",
                    headers={"Content-Type": f"{MULTI_DICOM}; boundary=abc"})
    assert r.status_code == 400
    body, ctype = multipart_body([ct_files[0].read_bytes(), ct_files[1].read_bytes()])
    r = client.post(f"{DW}/studies", content=body[: len(body) - 3000], headers={"Content-Type": ctype})
    assert r.status_code == 202
    assert len(r.json()["00081199"]["Value"]) == 1
    assert web_archive.stats()["instances"] == 1


def test_stow_size_limit(tmp_path: Path, ct_files: list[Path]) -> None:
    a = open_archive(make_settings(tmp_path, stow_max_bytes=50_000))
    try:
        c = TestClient(create_app(a, viewer=False), headers=admin_headers(a))
        body, ctype = multipart_body([p.read_bytes() for p in ct_files])
        r = c.post(f"{DW}/studies", content=body, headers={"Content-Type": ctype})
        assert r.status_code == 413
        r = c.post(f"{DW}/studies", content=b"x", headers={"Content-Type": ctype, "Content-Length": "10" * 10})
        assert r.status_code in (400, 413)
    finally:
        a.close()


# --------------------------------------------------------------------------- QIDO-RS


@pytest.fixture
def loaded(client: TestClient, ct_files: list[Path]) -> TestClient:
    assert stow(client, ct_files)[0] == 200
    return client


def test_qido_levels(loaded: TestClient, ct_files: list[Path]) -> None:
    study, series, sop = uids_of(ct_files[0])
    r = loaded.get(f"{DW}/studies")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/dicom+json")
    [st] = r.json()
    assert st["0020000D"]["Value"] == [study]
    assert st["00201208"]["Value"] == [len(ct_files)]  # NumberOfStudyRelatedInstances
    assert st["00080061"]["Value"] == ["CT"]
    [se] = loaded.get(f"{DW}/studies/{study}/series").json()
    assert se["0020000E"]["Value"] == [series]
    assert len(loaded.get(f"{DW}/series?Modality=CT").json()) == 1
    assert len(loaded.get(f"{DW}/studies/{study}/series/{series}/instances").json()) == len(ct_files)
    assert len(loaded.get(f"{DW}/studies/{study}/instances").json()) == len(ct_files)
    hits = loaded.get(f"{DW}/instances", params={"SOPInstanceUID": sop}).json()
    assert [h["00080018"]["Value"][0] for h in hits] == [sop]


def test_qido_matching_and_paging(loaded: TestClient, ct_files: list[Path]) -> None:
    ds = pydicom.dcmread(ct_files[0], stop_before_pixels=True)
    name = str(ds.PatientName)
    assert len(loaded.get(f"{DW}/studies", params={"PatientName": name[:3] + "*"}).json()) == 1
    assert len(loaded.get(f"{DW}/studies", params={"PatientName": "ZZZ*"}).json()) == 0
    # percent-encoded keyword and tag forms, as dicomweb-client sends them
    assert len(loaded.get(f"{DW}/studies?00100020={ds.PatientID}").json()) == 1
    assert len(loaded.get(f"{DW}/studies?PatientName={name[:3]}%2A").json()) == 1
    assert len(loaded.get(f"{DW}/studies", params={"StudyDate": f"{ds.StudyDate}-"}).json()) == 1
    assert len(loaded.get(f"{DW}/studies", params={"StudyDate": "19000101-19001231"}).json()) == 0
    # fuzzy: a lower-case prefix of the family name
    fam = name.split("^")[0]
    assert len(loaded.get(f"{DW}/studies", params={"PatientName": fam[:3].lower(),
                                                   "fuzzymatching": "true"}).json()) == 1
    study = ds.StudyInstanceUID
    url = f"{DW}/studies/{study}/instances"
    all_sops = [i["00080018"]["Value"][0] for i in loaded.get(url).json()]
    page = [i["00080018"]["Value"][0] for i in loaded.get(url, params={"limit": 2, "offset": 2}).json()]
    assert page == all_sops[2:4]


def test_qido_includefield(loaded: TestClient, ct_files: list[Path]) -> None:
    [st] = loaded.get(f"{DW}/studies", params={"includefield": "00081030,PatientAge"}).json()
    assert "00081030" in st and "00101010" in st
    [inst, *_] = loaded.get(f"{DW}/instances", params={"includefield": "all"}).json()
    assert inst["00280010"]["Value"] == [128]  # Rows: from the stored header
    assert "00180050" in inst  # SliceThickness
    assert "7FE00010" not in inst  # never bulk data


@pytest.mark.parametrize("query", [
    "Foo=1", "PatientName.Bar=1", "StudyDate=2020", "StudyDate=abc-def", "limit=-1", "limit=x",
    "includefield=NotAKeyword", "fuzzymatching=maybe", "ReferencedStudySequence=1",
])
def test_qido_bad_queries(loaded: TestClient, query: str) -> None:
    r = loaded.get(f"{DW}/studies?{query}")
    assert r.status_code == 400, (query, r.text)
    assert r.json()["error"]


@pytest.mark.parametrize("value", ["' OR 1=1 --", "x'; DROP TABLE studies; --", '"quoted"', "%27%22", "%_*", "_*"])
def test_qido_hostile_values_match_nothing(loaded: TestClient, value: str) -> None:
    r = loaded.get(f"{DW}/studies", params={"PatientID": value})
    assert r.status_code == 200 and r.json() == []
    assert len(loaded.get(f"{DW}/studies").json()) == 1


def test_qido_unsupported_accept(loaded: TestClient) -> None:
    r = loaded.get(f"{DW}/studies", headers={"Accept": "application/dicom+xml"})
    assert r.status_code == 406


# --------------------------------------------------------------------------- WADO-RS


def test_retrieve_instance_as_stored_and_default(loaded: TestClient, ct_files: list[Path]) -> None:
    study, series, sop = uids_of(ct_files[0])
    url = f"{DW}/studies/{study}/series/{series}/instances/{sop}"
    r = loaded.get(url, headers={"Accept": f"{MULTI_DICOM}; transfer-syntax=*"})
    assert r.status_code == 200
    [(ctype, body)] = split_multipart(r.headers["content-type"], r.content)
    assert body == ct_files[0].read_bytes()  # byte-exact as stored
    r = loaded.get(f"{DW}/studies/{study}")
    parts = split_multipart(r.headers["content-type"], r.content)
    assert len(parts) == len(ct_files)


def test_retrieve_transcodes_compressed(client: TestClient) -> None:
    src = pydicom_test_file("MR_small_RLE.dcm")
    assert stow(client, [src])[0] == 200
    study, series, sop = uids_of(src)
    url = f"{DW}/studies/{study}/series/{series}/instances/{sop}"
    r = client.get(url, headers={"Accept": MULTI_DICOM})  # default: Explicit VR Little Endian
    [(ctype, body)] = split_multipart(r.headers["content-type"], r.content)
    assert "1.2.840.10008.1.2.1" in ctype
    ds = pydicom.dcmread(io.BytesIO(body))
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert ds.SOPInstanceUID == sop
    np.testing.assert_array_equal(ds.pixel_array, pydicom.dcmread(src).pixel_array)
    r = client.get(url, headers={"Accept": f"{MULTI_DICOM}; transfer-syntax=1.2.840.10008.1.2.4.50"})
    assert r.status_code == 406  # never lossy from a lossless original
    r = client.get(url, headers={"Accept": "text/html"})
    assert r.status_code == 406


def test_metadata_from_index(loaded: TestClient, ct_files: list[Path]) -> None:
    study, series, sop = uids_of(ct_files[0])
    r = loaded.get(f"{DW}/studies/{study}/series/{series}/metadata")
    assert r.status_code == 200
    docs = r.json()
    assert len(docs) == len(ct_files)
    mine = next(d for d in docs if d["00080018"]["Value"] == [sop])
    uri = mine["7FE00010"]["BulkDataURI"]
    assert uri == f"http://testserver{DW}/studies/{study}/series/{series}/instances/{sop}/bulk/7FE00010"
    assert mine["00083002"]["Value"] == ["1.2.840.10008.1.2.1"]
    assert mine["00280010"]["Value"] == [128]
    # the BulkDataURI resolves to the pixel data
    b = loaded.get(uri, headers={"Accept": "application/octet-stream"})
    assert b.status_code == 200
    assert b.content == pydicom.dcmread(ct_files[0]).PixelData
    assert loaded.get(f"{DW}/studies/{study}/metadata").status_code == 200
    assert len(loaded.get(f"{DW}/studies/{study}/series/{series}/instances/{sop}/metadata").json()) == 1


def test_frames_native_and_passthrough(client: TestClient, tmp_path: Path) -> None:
    us = make_us_multiframe(tmp_path, n_frames=4, rows=64, cols=80, seed=2)
    src = pydicom_test_file("examples_ybr_color.dcm")  # JPEG baseline, 30 frames
    assert stow(client, [us, src])[0] == 200
    study, series, sop = uids_of(src)
    base = f"{DW}/studies/{study}/series/{series}/instances/{sop}/frames"
    r = client.get(f"{base}/2,5", headers={"Accept": "multipart/related; type=application/octet-stream; "
                                                    "transfer-syntax=*"})
    assert r.status_code == 200
    parts = split_multipart(r.headers["content-type"], r.content)
    assert len(parts) == 2
    assert "transfer-syntax=1.2.840.10008.1.2.4.50" in parts[0][0]
    assert parts[0][1][:2] == b"\xff\xd8"  # a JPEG codestream, not re-encoded
    r = client.get(f"{base}/2", headers={"Accept": "multipart/related; type=image/jpeg"})
    assert split_multipart(r.headers["content-type"], r.content)[0][1][:2] == b"\xff\xd8"
    # uncompressed on request: pixel values equal pydicom's decode
    r = client.get(f"{base}/3", headers={"Accept": "multipart/related; type=application/octet-stream"})
    [(ctype, raw)] = split_multipart(r.headers["content-type"], r.content)
    ref = pydicom.dcmread(src).pixel_array[2]
    assert np.frombuffer(raw, np.uint8).reshape(ref.shape).tolist() == ref.tolist()
    assert client.get(f"{base}/31").status_code == 404
    assert client.get(f"{base}/0").status_code == 400
    assert client.get(f"{base}/1;2").status_code == 400
    assert client.get(f"{base}/1", headers={"Accept": "image/jp2"}).status_code == 406
    # native multi-frame: a frame is a byte range of the stored file
    study, series, sop = uids_of(us)
    r = client.get(f"{DW}/studies/{study}/series/{series}/instances/{sop}/frames/4")
    [(ctype, raw)] = split_multipart(r.headers["content-type"], r.content)
    ref = pydicom.dcmread(us).pixel_array[3]
    assert raw == np.ascontiguousarray(ref).tobytes()


def test_rendered_and_thumbnail(loaded: TestClient, ct_files: list[Path]) -> None:
    study, series, sop = uids_of(ct_files[0])
    inst = f"{DW}/studies/{study}/series/{series}/instances/{sop}"
    r = loaded.get(f"{inst}/rendered")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(r.content))
    assert img.size == (128, 128)
    assert np.asarray(img).std() > 5  # an image, not a blank
    r = loaded.get(f"{inst}/frames/1/rendered", params={"window": "40,400,linear", "viewport": "64,64"},
                   headers={"Accept": "image/png"})
    assert r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (64, 64)
    for url in (f"{DW}/studies/{study}/thumbnail", f"{DW}/studies/{study}/series/{series}/thumbnail",
                f"{inst}/thumbnail"):
        r = loaded.get(url)
        assert r.status_code == 200, url
        assert max(Image.open(io.BytesIO(r.content)).size) <= 128
    assert loaded.get(f"{inst}/rendered", params={"window": "a,b"}).status_code == 400
    assert loaded.get(f"{inst}/rendered", headers={"Accept": "image/tiff"}).status_code == 406


def test_wado_uri(loaded: TestClient, ct_files: list[Path]) -> None:
    study, series, sop = uids_of(ct_files[0])
    q = f"/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}"
    r = loaded.get(q)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    r = loaded.get(q + "&contentType=application/dicom")
    assert r.content == ct_files[0].read_bytes()
    assert loaded.get(q.replace("requestType=WADO", "requestType=X")).status_code == 400
    assert loaded.get(f"/wado?requestType=WADO&studyUID={study}").status_code == 400
    assert loaded.get(q + "&contentType=text/html").status_code == 406


@pytest.mark.parametrize("path", [
    "/studies/1.2.abc", "/studies/1.2.3/series/..%2F..%2Fetc", "/studies/%27%20OR%201%3D1/metadata",
    "/studies/" + "1." * 40 + "1", "/studies/1.2.3/series/1.2/instances/1.2/bulk/zz",
])
def test_invalid_uids_in_path(loaded: TestClient, path: str) -> None:
    r = loaded.get(DW + path)
    assert r.status_code in (400, 404), r.text
    assert r.headers["content-type"].startswith("application/json")


def test_unknown_resources_are_404(loaded: TestClient) -> None:
    assert loaded.get(f"{DW}/studies/1.2.3").status_code == 404
    assert loaded.get(f"{DW}/studies/1.2.3/metadata").status_code == 404
    assert loaded.get(f"{DW}/nothing-here").status_code == 404


# --------------------------------------------------------------------------- DELETE


def test_delete_levels(loaded: TestClient, web_archive: Archive, ct_files: list[Path]) -> None:
    study, series, sop = uids_of(ct_files[0])
    r = loaded.delete(f"{DW}/studies/{study}/series/{series}/instances/{sop}")
    assert r.status_code == 200 and r.json() == {"deleted_instances": 1}
    [st] = loaded.get(f"{DW}/studies").json()
    assert st["00201208"]["Value"] == [len(ct_files) - 1]
    assert loaded.delete(f"{DW}/studies/{study}/series/{series}/instances/{sop}").status_code == 404
    r = loaded.delete(f"{DW}/studies/{study}")
    assert r.json() == {"deleted_instances": len(ct_files) - 1}
    assert loaded.get(f"{DW}/studies").json() == []
    assert web_archive.stats()["instances"] == 0
    assert list(web_archive.store.keys()) == []
    # and the study can come back
    assert stow(loaded, ct_files)[0] == 200
    assert web_archive.stats()["instances"] == len(ct_files)


def test_cors_setting(tmp_path: Path) -> None:
    a = open_archive(make_settings(tmp_path, cors_origins="https://viewer.example.org"))
    try:
        c = TestClient(create_app(a, viewer=False), headers=admin_headers(a))
        r = c.get(f"{DW}/studies", headers={"Origin": "https://viewer.example.org"})
        assert r.headers["access-control-allow-origin"] == "https://viewer.example.org"
        r = c.get(f"{DW}/studies", headers={"Origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in r.headers
    finally:
        a.close()


def test_ultrasound_regions_reach_the_viewer(client: TestClient, tmp_path: Path) -> None:
    """Measurements in ultrasound are calibrated by the Sequence of Ultrasound Regions
    (PS3.3 C.8.5.5), Doppler velocity regions included: the metadata must carry them whole."""
    from pydicom.dataset import Dataset

    path = make_us_multiframe(tmp_path, n_frames=3, rows=64, cols=80, seed=4)
    ds = pydicom.dcmread(path)
    doppler = Dataset()
    doppler.RegionSpatialFormat = 3  # spectral
    doppler.RegionDataType = 3  # PW spectral Doppler
    doppler.RegionFlags = 0
    doppler.RegionLocationMinX0, doppler.RegionLocationMinY0 = 0, 40
    doppler.RegionLocationMaxX1, doppler.RegionLocationMaxY1 = 79, 63
    doppler.ReferencePixelX0, doppler.ReferencePixelY0 = 0, 52
    doppler.PhysicalUnitsXDirection = 4  # seconds
    doppler.PhysicalUnitsYDirection = 7  # cm/s
    doppler.PhysicalDeltaX, doppler.PhysicalDeltaY = 0.01, 2.5
    ds.SequenceOfUltrasoundRegions.append(doppler)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert stow(client, [buf.getvalue()])[0] == 200
    [meta] = client.get(f"{DW}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/metadata").json()
    regions = meta["00186011"]["Value"]
    assert len(regions) == 2
    assert regions[1]["00186026"]["Value"] == [7]  # PhysicalUnitsYDirection: cm/s
    assert regions[1]["0018602E"]["Value"] == [2.5]  # PhysicalDeltaY
    assert regions[0]["0018602C"]["Value"][0] == pytest.approx(float(ds.SequenceOfUltrasoundRegions[0].PhysicalDeltaX))

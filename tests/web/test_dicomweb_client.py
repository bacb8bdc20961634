"""DICOMweb against a real server, through the reference client (``dicomweb-client``).

One uvicorn on 127.0.0.1 (a free port, in a thread) serves ``create_app`` over a fresh SQLite
archive for the whole module. The client stores a CT series, an MR series, a 2 MB CR image (so
its STOW-RS body goes out chunked), a multi-frame ultrasound and pydicom's compressed samples
(JPEG baseline / extended / lossless, JPEG-LS, JPEG 2000, RLE), then searches, retrieves,
transcodes, fetches frames, metadata, bulk data, rendered images and thumbnails, and deletes.
Pixel values are always compared with pydicom's own decode of the original file.

An ASGI recorder in front of the app keeps what reached the server (method, path, raw query
string, headers, status), so the tests can show that the client really sent a chunked body
and percent-encoded query values, and that no request got a 5xx.

Last, 20 threads mix STOW / QIDO / metadata / frames for a few seconds; every instance a STOW
acknowledged must then be retrievable.
"""

from __future__ import annotations

import copy
import io
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from requests.exceptions import HTTPError

from tests.conftest import make_settings
from tests.dicomgen import (
    make_cr_image,
    make_ct_series,
    make_mr_series,
    make_us_multiframe,
    pydicom_test_file,
)
from tests.web.conftest import AsAdmin, Recorder, live_server
from vesalius.archive import Archive, open_archive
from vesalius.web.app import create_app

EXPLICIT_LE = str(ExplicitVRLittleEndian)

#: pydicom's compressed samples: name -> (media type of a native frame, its transfer syntax).
COMPRESSED: dict[str, tuple[str, str]] = {
    "SC_rgb_jpeg_dcmtk.dcm": ("image/jpeg", "1.2.840.10008.1.2.4.50"),      # JPEG baseline, YBR_FULL
    "examples_ybr_color.dcm": ("image/jpeg", "1.2.840.10008.1.2.4.50"),     # 30 frames, YBR_FULL_422
    "JPGExtended.dcm": ("image/jpeg", "1.2.840.10008.1.2.4.51"),            # 12-bit JPEG extended
    "SC_rgb_jpeg_gdcm.dcm": ("image/jpeg", "1.2.840.10008.1.2.4.70"),       # JPEG lossless SV1
    "MR_small_jpeg_ls_lossless.dcm": ("image/jls", "1.2.840.10008.1.2.4.80"),
    "MR_small_jp2klossless.dcm": ("image/jp2", "1.2.840.10008.1.2.4.90"),
    "JPEG2000.dcm": ("image/jp2", "1.2.840.10008.1.2.4.91"),
    "MR_small_RLE.dcm": ("image/dicom-rle", "1.2.840.10008.1.2.5"),
}


# --------------------------------------------------------------------------- server


@dataclass
class Live:
    base: str  # http://127.0.0.1:PORT
    archive: Archive
    recorder: Recorder

    @property
    def root(self) -> str:
        return self.base + "/dicom-web"

    def rebase(self, url: str) -> str:
        """``url`` on our server. dicomweb-client sends ``Host: 127.0.0.1`` without the port on
        every non-chunked request, and the server (rightly) builds BulkDataURI / RetrieveURL from
        the Host header, so the URLs it hands this client name port 80."""
        parts = urlsplit(url)
        return self.base + parts.path + (f"?{parts.query}" if parts.query else "")

    def client(self) -> DICOMwebClient:
        c = DICOMwebClient(url=self.root)
        c.set_http_retry_params(retry=False)  # a failure must show, not be retried away
        return c


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    archive = open_archive(make_settings(tmp_path_factory.mktemp("dwc-archive")))
    recorder = Recorder(AsAdmin(create_app(archive, viewer=False), archive))
    try:
        with live_server(recorder) as base:
            yield Live(base, archive, recorder)
    finally:
        archive.close()


@pytest.fixture(scope="module")
def dw(live: Live) -> DICOMwebClient:
    return live.client()


# --------------------------------------------------------------------------- data


def uids(ds: Dataset) -> tuple[str, str, str]:
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def value(item: dict[str, Any], tag: str) -> Any:
    """First value of ``tag`` in a DICOM JSON object (None when absent or empty)."""
    v = item.get(tag, {}).get("Value")
    return v[0] if v else None


@dataclass
class Corpus:
    ct: list[Dataset]
    mr: list[Dataset]
    cr: Dataset
    us: Dataset
    compressed: dict[str, Dataset]
    stow: dict[str, Dataset] = field(default_factory=dict)  # STOW-RS answers, by batch name
    stow_statuses: list[int] = field(default_factory=list)  # of the requests above


def _reuid(ds: Dataset) -> Dataset:
    """pydicom's MR_small variants share UIDs: give each file its own series and instance."""
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


@pytest.fixture(scope="module")
def corpus(live: Live, dw: DICOMwebClient) -> Corpus:
    """Generate the data, and store it all through the client's STOW-RS (module scope)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ct = [pydicom.dcmread(p) for p in sorted(make_ct_series(
            root / "ct", n_slices=8, rows=128, cols=128, seed=11,
            patient_name="Ctpatient^Anna", patient_id="DWC-CT"))]
        mr = [pydicom.dcmread(p) for p in sorted(make_mr_series(
            root / "mr", n_slices=4, rows=64, cols=64, seed=12,
            patient_name="Mrpatient^Bob", patient_id="DWC-MR"))]
        cr = pydicom.dcmread(make_cr_image(root / "cr", rows=1024, cols=1024, seed=13,
                                           patient_name="Crpatient^Cyd", patient_id="DWC-CR"))
        us = pydicom.dcmread(make_us_multiframe(root / "us", n_frames=8, rows=120, cols=160, seed=14,
                                                patient_name="Uspatient^Dora", patient_id="DWC-US"))
    compressed = {name: _reuid(pydicom.dcmread(pydicom_test_file(name))) for name in COMPRESSED}
    data = Corpus(ct, mr, cr, us, compressed)

    mark = len(live.recorder.seen)
    data.stow["ct+mr"] = dw.store_instances(ct + mr)
    data.stow["cr"] = dw.store_instances([cr])  # ~2 MB: sent with chunked transfer encoding
    data.stow["us"] = dw.store_instances([us], study_instance_uid=us.StudyInstanceUID)
    data.stow["compressed"] = dw.store_instances(list(compressed.values()))
    posts = [s for s in live.recorder.since(mark) if s.method == "POST"]
    data.stow_statuses = [s.status for s in posts]
    return data


# --------------------------------------------------------------------------- STOW-RS


def _referenced(answer: Dataset) -> dict[str, Dataset]:
    return {str(item.ReferencedSOPInstanceUID): item for item in answer.get("ReferencedSOPSequence", [])}


def test_store_acknowledges_every_instance(corpus: Corpus) -> None:
    batches = {
        "ct+mr": corpus.ct + corpus.mr,
        "cr": [corpus.cr],
        "us": [corpus.us],
        "compressed": list(corpus.compressed.values()),
    }
    for name, sent in batches.items():
        answer = corpus.stow[name]
        assert "FailedSOPSequence" not in answer, (name, answer)
        refs = _referenced(answer)
        assert set(refs) == {str(ds.SOPInstanceUID) for ds in sent}, name
        for ds in sent:
            item = refs[str(ds.SOPInstanceUID)]
            assert item.ReferencedSOPClassUID == ds.SOPClassUID
            study, series, sop = uids(ds)
            # The path part only: for bodies under 1 MB, dicomweb-client overrides the Host header
            # with the bare host name (no port), and the server builds URLs from Host, as it should.
            assert str(item.RetrieveURL).endswith(f"/dicom-web/studies/{study}/series/{series}/instances/{sop}")
    assert corpus.stow_statuses == [200, 200, 200, 200]  # all stored


def test_chunked_stow_over_one_megabyte(corpus: Corpus, live: Live) -> None:
    """The 2 MB CR went out as Transfer-Encoding: chunked (no Content-Length) and was stored whole."""
    posts = [s for s in live.recorder.seen if s.method == "POST" and s.headers.get("transfer-encoding") == "chunked"]
    assert len(posts) >= 1 and "content-length" not in posts[0].headers and posts[0].status == 200
    assert posts[0].headers["content-type"].startswith("multipart/related")
    study, series, sop = uids(corpus.cr)
    # With chunked bodies the client leaves Host alone, so the URL is the one we called.
    item = _referenced(corpus.stow["cr"])[sop]
    assert item.RetrieveURL == f"{live.root}/studies/{study}/series/{series}/instances/{sop}"
    assert len(corpus.cr.PixelData) > 1_000_000
    got = live.client().retrieve_instance(study, series, sop,
                                          media_types=(("application/dicom", EXPLICIT_LE),))
    assert got.PixelData == corpus.cr.PixelData


def test_store_again_is_idempotent_and_study_path_is_checked(corpus: Corpus, dw: DICOMwebClient) -> None:
    again = dw.store_instances([corpus.ct[0]])
    assert str(corpus.ct[0].SOPInstanceUID) in _referenced(again)
    # POST /studies/{other study}: an instance of another study is refused (409, all failed).
    with pytest.raises(HTTPError) as err:
        dw.store_instances([corpus.mr[0]], study_instance_uid=corpus.ct[0].StudyInstanceUID)
    assert err.value.response.status_code == 409
    assert "00081198" in err.value.response.json()


# --------------------------------------------------------------------------- QIDO-RS


def _query_of(live: Live, mark: int, path_end: str) -> str:
    found = [s.query for s in live.recorder.since(mark) if s.path.endswith(path_end)]
    assert found, path_end
    return found[-1]


def test_search_for_studies(corpus: Corpus, dw: DICOMwebClient, live: Live) -> None:
    all_studies = {value(s, "0020000D") for s in dw.search_for_studies()}
    expected = {str(ds.StudyInstanceUID) for ds in [corpus.ct[0], corpus.mr[0], corpus.cr, corpus.us,
                                                     *corpus.compressed.values()]}
    assert expected <= all_studies

    mark = len(live.recorder.seen)
    found = dw.search_for_studies(search_filters={"PatientName": "Ctpat*"})
    assert [value(s, "0020000D") for s in found] == [corpus.ct[0].StudyInstanceUID]
    assert "PatientName=Ctpat%2A" in _query_of(live, mark, "/studies")  # percent-encoded wildcard

    mark = len(live.recorder.seen)
    found = dw.search_for_studies(search_filters={"PatientName": "Mrpatient^Bob"})
    assert [value(s, "00100010")["Alphabetic"] for s in found] == ["Mrpatient^Bob"]
    assert "PatientName=Mrpatient%5EBob" in _query_of(live, mark, "/studies")

    found = dw.search_for_studies(search_filters={"00100020": "DWC-US"})  # a tag as the key
    assert [value(s, "0020000D") for s in found] == [corpus.us.StudyInstanceUID]
    found = dw.search_for_studies(search_filters={"ModalitiesInStudy": "CR"})
    assert corpus.cr.StudyInstanceUID in {value(s, "0020000D") for s in found}
    assert all("CR" in s["00080061"]["Value"] for s in found)
    found = dw.search_for_studies(search_filters={"PatientID": "DWC-*", "StudyDate": "20240101-20240103"})
    assert len(found) == 4
    for s in found:
        assert value(s, "00201206") >= 1 and value(s, "00201208") >= 1
    assert dw.search_for_studies(search_filters={"PatientID": "DWC-*", "StudyDate": "20250101-"}) == []


def test_search_fuzzymatching(corpus: Corpus, dw: DICOMwebClient) -> None:
    assert dw.search_for_studies(search_filters={"PatientName": "ctpatient"}) == []
    found = dw.search_for_studies(search_filters={"PatientName": "ctpatient"}, fuzzymatching=True)
    assert [value(s, "0020000D") for s in found] == [corpus.ct[0].StudyInstanceUID]
    found = dw.search_for_studies(search_filters={"PatientName": "MRPAT"}, fuzzymatching=True)
    assert [value(s, "0020000D") for s in found] == [corpus.mr[0].StudyInstanceUID]


def test_search_fields(corpus: Corpus, dw: DICOMwebClient) -> None:
    study = corpus.ct[0].StudyInstanceUID
    plain = dw.search_for_series(study_instance_uid=study)
    assert len(plain) == 1 and "00180050" not in plain[0] and "00180060" not in plain[0]
    with_fields = dw.search_for_series(study_instance_uid=study, fields=["SliceThickness", "00180060"])
    assert float(value(with_fields[0], "00180050")) == float(corpus.ct[0].SliceThickness)
    assert float(value(with_fields[0], "00180060")) == float(corpus.ct[0].KVP)
    everything = dw.search_for_instances(study_instance_uid=study, fields=["all"], limit=1)
    assert value(everything[0], "00100010") == {"Alphabetic": "Ctpatient^Anna"}  # a study-level key
    assert "00200032" in everything[0] and "7FE00010" not in everything[0]  # the header, no bulk data


def test_search_for_series(corpus: Corpus, dw: DICOMwebClient) -> None:
    mr = dw.search_for_series(search_filters={"Modality": "MR", "PatientID": "DWC-MR"})
    assert [value(s, "0020000E") for s in mr] == [corpus.mr[0].SeriesInstanceUID]
    assert value(mr[0], "00201209") == 4  # NumberOfSeriesRelatedInstances
    compressed_study = corpus.compressed["MR_small_RLE.dcm"].StudyInstanceUID
    series = dw.search_for_series(study_instance_uid=compressed_study)
    expected = {str(ds.SeriesInstanceUID) for ds in corpus.compressed.values()
                if ds.StudyInstanceUID == compressed_study}
    assert {value(s, "0020000E") for s in series} == expected
    assert len(expected) == 3


def test_search_for_instances_with_limit_and_offset(corpus: Corpus, dw: DICOMwebClient) -> None:
    study, series, _ = uids(corpus.ct[0])
    every = dw.search_for_instances(study_instance_uid=study, series_instance_uid=series)
    assert {value(i, "00080018") for i in every} == {str(ds.SOPInstanceUID) for ds in corpus.ct}
    pages = [dw.search_for_instances(study_instance_uid=study, limit=3, offset=o) for o in (0, 3, 6)]
    assert [len(p) for p in pages] == [3, 3, 2]
    paged = [value(i, "00080018") for p in pages for i in p]
    assert sorted(paged) == sorted(value(i, "00080018") for i in every)  # no gap, no repeat
    assert dw.search_for_instances(study_instance_uid=study, limit=5, offset=8) == []
    remaining = dw.search_for_instances(study_instance_uid=study, limit=3, get_remaining=True)
    assert len(remaining) == 8
    by_number = dw.search_for_instances(study_instance_uid=study, search_filters={"InstanceNumber": "5"})
    assert [value(i, "00200013") for i in by_number] == [5]
    us = dw.search_for_instances(search_filters={"SOPInstanceUID": corpus.us.SOPInstanceUID})
    assert value(us[0], "00280008") == 8  # NumberOfFrames
    assert value(us[0], "00080016") == corpus.us.SOPClassUID


def test_instance_search_returns_image_size(corpus: Corpus, dw: DICOMwebClient) -> None:
    found = dw.search_for_instances(search_filters={"SOPInstanceUID": corpus.ct[0].SOPInstanceUID})
    assert [value(found[0], t) for t in ("00280010", "00280011", "00280100")] == [128, 128, 16]


def test_search_answers_carry_retrieve_url(corpus: Corpus, live: Live) -> None:
    study, series, sop = uids(corpus.ct[0])
    with httpx.Client(base_url=live.root) as http:  # sends Host with the port
        for path, url in ((f"/studies?StudyInstanceUID={study}", f"{live.root}/studies/{study}"),
                          (f"/studies/{study}/series", f"{live.root}/studies/{study}/series/{series}"),
                          (f"/studies/{study}/series/{series}/instances?SOPInstanceUID={sop}",
                           f"{live.root}/studies/{study}/series/{series}/instances/{sop}")):
            r = http.get(path)
            assert r.status_code == 200
            assert value(r.json()[0], "00081190") == url, path


# --------------------------------------------------------------------------- WADO-RS instances


def test_retrieve_study_series_instance(corpus: Corpus, dw: DICOMwebClient) -> None:
    study, series, sop = uids(corpus.ct[0])
    got = dw.retrieve_study(study)
    assert sorted(str(d.SOPInstanceUID) for d in got) == sorted(str(d.SOPInstanceUID) for d in corpus.ct)
    got = dw.retrieve_series(*uids(corpus.mr[0])[:2])
    by_uid = {str(d.SOPInstanceUID): d for d in got}
    for ds in corpus.mr:
        assert by_uid[str(ds.SOPInstanceUID)].PixelData == ds.PixelData
    one = dw.retrieve_instance(study, series, sop)
    assert one.PixelData == corpus.ct[0].PixelData
    assert one.PatientName == "Ctpatient^Anna"
    us_series = list(dw.iter_series(*uids(corpus.us)[:2]))
    assert len(us_series) == 1 and us_series[0].NumberOfFrames == 8
    with pytest.raises(HTTPError) as err:
        dw.retrieve_instance(study, series, generate_uid())
    assert err.value.response.status_code == 404


@pytest.mark.parametrize("name", sorted(COMPRESSED))
def test_compressed_instance_as_stored_and_transcoded(name: str, corpus: Corpus, dw: DICOMwebClient) -> None:
    original = corpus.compressed[name]
    # The client's default Accept is transfer-syntax=*: the stored bytes come back as they are.
    as_stored = dw.retrieve_instance(*uids(original))
    assert as_stored.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert as_stored.PixelData == original.PixelData
    # Asked for Explicit VR Little Endian: decoded on the server, values as pydicom decodes them.
    native = dw.retrieve_instance(*uids(original), media_types=(("application/dicom", EXPLICIT_LE),))
    assert native.file_meta.TransferSyntaxUID == EXPLICIT_LE
    expected = original.pixel_array
    got = native.pixel_array
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("target", ["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5"])
def test_uncompressed_transcoded_to_lossless(target: str, corpus: Corpus, dw: DICOMwebClient) -> None:
    ds = corpus.ct[3]
    got = dw.retrieve_instance(*uids(ds), media_types=(("application/dicom", target),))
    assert got.file_meta.TransferSyntaxUID == target
    assert np.array_equal(got.pixel_array, ds.pixel_array)


def test_unencodable_transfer_syntax_is_not_acceptable(corpus: Corpus, live: Live) -> None:
    study, series, sop = uids(corpus.ct[0])
    r = httpx.get(f"{live.root}/studies/{study}/series/{series}/instances/{sop}",
                  headers={"Accept": 'multipart/related; type="application/dicom"; '
                                     "transfer-syntax=1.2.840.10008.1.2.4.70"})
    if r.status_code == 200:  # acceptable only if the instance really is in the body
        assert r.content.count(b"Content-Type: application/dicom") == 1, r.content[:200]
    else:
        assert r.status_code == 406


def test_urls_follow_the_host_header(corpus: Corpus, live: Live) -> None:
    """With a well-behaved client (Host with the port), BulkDataURIs and RetrieveURLs are ours."""
    study, series, sop = uids(corpus.ct[1])
    r = httpx.get(f"{live.root}/studies/{study}/series/{series}/instances/{sop}/metadata")
    assert r.status_code == 200
    assert r.json()[0]["7FE00010"]["BulkDataURI"] == (
        f"{live.root}/studies/{study}/series/{series}/instances/{sop}/bulk/7FE00010")


def test_lossy_is_never_made_from_lossless(corpus: Corpus, dw: DICOMwebClient) -> None:
    with pytest.raises(HTTPError) as err:
        dw.retrieve_instance(*uids(corpus.ct[0]), media_types=(("application/dicom", "1.2.840.10008.1.2.4.50"),))
    assert err.value.response.status_code == 406


# --------------------------------------------------------------------------- metadata + bulk data


def test_metadata_at_each_level(corpus: Corpus, dw: DICOMwebClient, live: Live) -> None:
    study, series, sop = uids(corpus.ct[2])
    study_meta = dw.retrieve_study_metadata(study)
    assert sorted(value(m, "00080018") for m in study_meta) == sorted(str(d.SOPInstanceUID) for d in corpus.ct)
    series_meta = dw.retrieve_series_metadata(*uids(corpus.mr[0])[:2])
    assert len(series_meta) == 4
    meta = dw.retrieve_instance_metadata(study, series, sop)
    assert value(meta, "00083002") == EXPLICIT_LE  # AvailableTransferSyntaxUID
    assert value(meta, "00280010") == 128 and value(meta, "00280011") == 128
    assert value(meta, "00200032") == pytest.approx(float(corpus.ct[2].ImagePositionPatient[0]))
    parsed = Dataset.from_json(meta, bulk_data_uri_handler=lambda tag, vr, uri: b"")
    assert parsed.SOPInstanceUID == sop and parsed.PatientName == "Ctpatient^Anna"
    # Pixel data is a BulkDataURI, and it resolves to the stored value.
    uri = meta["7FE00010"]["BulkDataURI"]
    assert urlsplit(uri).path == f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/bulk/7FE00010"
    assert dw.retrieve_bulkdata(live.rebase(uri)) == [corpus.ct[2].PixelData]
    us_meta = dw.retrieve_instance_metadata(*uids(corpus.us))
    assert value(us_meta, "00280008") == 8


def test_metadata_of_compressed_instance(corpus: Corpus, dw: DICOMwebClient, live: Live) -> None:
    original = corpus.compressed["examples_ybr_color.dcm"]
    meta = dw.retrieve_instance_metadata(*uids(original))
    assert value(meta, "00083002") == "1.2.840.10008.1.2.4.50"
    assert value(meta, "00280004") == "YBR_FULL_422"
    assert value(meta, "00280008") == 30
    frames = dw.retrieve_bulkdata(live.rebase(meta["7FE00010"]["BulkDataURI"]), media_types=("image/jpeg",))
    assert frames == list(generate_frames(original.PixelData, number_of_frames=30))


# --------------------------------------------------------------------------- frames


def _frame_array(data: bytes, ds: Dataset) -> np.ndarray:
    """An uncompressed frame as pydicom's pixel_array of one frame would hold it."""
    dtype = np.dtype(f"{'i' if ds.PixelRepresentation else 'u'}{ds.BitsAllocated // 8}").newbyteorder("<")
    spp = int(ds.SamplesPerPixel)
    shape = (ds.Rows, ds.Columns, spp) if spp > 1 else (ds.Rows, ds.Columns)
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def test_frames_of_uncompressed_instances(corpus: Corpus, dw: DICOMwebClient) -> None:
    ct = corpus.ct[4]
    for media in (None, ("application/octet-stream",), (("application/octet-stream", EXPLICIT_LE),)):
        got = dw.retrieve_instance_frames(*uids(ct), frame_numbers=[1], media_types=media)
        assert got == [ct.PixelData], media
    assert np.array_equal(_frame_array(got[0], ct), ct.pixel_array)
    us = corpus.us
    got = dw.retrieve_instance_frames(*uids(us), frame_numbers=[1, 3, 8])
    assert len(got) == 3
    for data, n in zip(got, (1, 3, 8), strict=True):
        assert np.array_equal(_frame_array(data, us), us.pixel_array[n - 1])
    with pytest.raises(HTTPError) as err:
        dw.retrieve_instance_frames(*uids(us), frame_numbers=[9])
    assert err.value.response.status_code in (400, 404)


@pytest.mark.parametrize("name", sorted(COMPRESSED))
def test_frames_of_compressed_instances(name: str, corpus: Corpus, dw: DICOMwebClient) -> None:
    original = corpus.compressed[name]
    media, ts = COMPRESSED[name]
    n_frames = int(original.get("NumberOfFrames", 1) or 1)
    wanted = [1, n_frames] if n_frames > 1 else [1]
    stored = list(generate_frames(original.PixelData, number_of_frames=n_frames))
    # In the stored encoding, passed through untouched.
    native = dw.retrieve_instance_frames(*uids(original), frame_numbers=wanted, media_types=((media, ts),))
    assert native == [stored[n - 1] for n in wanted]
    # Decoded by the server: values as pydicom's pixel_array (converted as pydicom converts).
    decoded = dw.retrieve_instance_frames(*uids(original), frame_numbers=wanted,
                                          media_types=(("application/octet-stream", EXPLICIT_LE),))
    expected = original.pixel_array if n_frames > 1 else original.pixel_array[np.newaxis]
    for data, n in zip(decoded, wanted, strict=True):
        assert np.array_equal(_frame_array(data, original), expected[n - 1]), (name, n)


# --------------------------------------------------------------------------- rendered + thumbnails


def _image(data: bytes, fmt: str) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    assert img.format == fmt
    img.load()
    return img


def test_rendered(corpus: Corpus, dw: DICOMwebClient, live: Live) -> None:
    ct = corpus.ct[4]
    img = _image(dw.retrieve_instance_rendered(*uids(ct), media_types=("image/jpeg",)), "JPEG")
    assert img.size == (128, 128) and np.asarray(img).std() > 5
    img = _image(dw.retrieve_instance_rendered(*uids(ct), media_types=("image/png",),
                                               params={"viewport": "64,64", "window": "40,400,linear"}), "PNG")
    assert img.size == (64, 64)
    img = _image(dw.retrieve_series_rendered(*uids(ct)[:2], media_types=("image/png",)), "PNG")
    assert img.size == (128, 128)
    us = corpus.us
    img = _image(dw.retrieve_instance_frames_rendered(*uids(us), frame_numbers=[3], media_types=("image/png",)),
                 "PNG")
    assert img.size == (160, 120) and img.mode == "RGB"
    # The rendered colour frame is the frame itself (no windowing of RGB).
    assert np.abs(np.asarray(img).astype(int) - us.pixel_array[2].astype(int)).max() <= 1
    for name in ("SC_rgb_jpeg_dcmtk.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm"):
        original = corpus.compressed[name]
        img = _image(dw.retrieve_instance_rendered(*uids(original), media_types=("image/png",)), "PNG")
        assert img.size == (original.Columns, original.Rows)
    # The study level has no method in the client: plain HTTP.
    r = httpx.get(f"{live.root}/studies/{ct.StudyInstanceUID}/rendered", headers={"Accept": "image/jpeg"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert _image(r.content, "JPEG").size == (128, 128)


def test_thumbnails(corpus: Corpus, live: Live) -> None:
    """dicomweb-client has no thumbnail method: plain HTTP (PS3.18 10.4.1.1.5 thumbnail resources)."""
    study, series, sop = uids(corpus.cr)
    with httpx.Client(base_url=live.root, timeout=30) as http:
        for path in (f"/studies/{study}/thumbnail", f"/studies/{study}/series/{series}/thumbnail",
                     f"/studies/{study}/series/{series}/instances/{sop}/thumbnail"):
            r = http.get(path, headers={"Accept": "image/jpeg"})
            assert r.status_code == 200, (path, r.text[:200])
            img = _image(r.content, "JPEG")
            assert max(img.size) <= 128 and np.asarray(img).std() > 5, path
        us_study, us_series, us_sop = uids(corpus.us)
        r = http.get(f"/studies/{us_study}/series/{us_series}/instances/{us_sop}/frames/2/thumbnail",
                     params={"accept": "image/png"})
        assert r.status_code == 200 and _image(r.content, "PNG").size == (128, 96)


# --------------------------------------------------------------------------- DELETE


def test_delete_series_through_the_client(corpus: Corpus, live: Live) -> None:
    dw = live.client()
    extra = copy.deepcopy(corpus.mr[0])
    extra.SeriesInstanceUID = generate_uid()
    extra.SOPInstanceUID = generate_uid()
    extra.file_meta.MediaStorageSOPInstanceUID = extra.SOPInstanceUID
    dw.store_instances([extra])
    study, series, sop = uids(extra)
    assert len(dw.search_for_series(study, search_filters={"SeriesInstanceUID": series})) == 1
    dw.delete_series(study, series)
    assert dw.search_for_series(study, search_filters={"SeriesInstanceUID": series}) == []
    with pytest.raises(HTTPError) as err:
        dw.retrieve_instance(study, series, sop)
    assert err.value.response.status_code == 404
    assert len(dw.search_for_series(study)) == 1  # the study's other series is untouched


# --------------------------------------------------------------------------- no server errors


def test_no_server_error_so_far(corpus: Corpus, live: Live) -> None:
    errors = [(s.method, s.path, s.status) for s in live.recorder.seen if s.status >= 500 or s.status == 0]
    assert errors == []


# --------------------------------------------------------------------------- concurrency


CONCURRENCY_THREADS = 20
CONCURRENCY_SECONDS = 8.0


def test_concurrent_mixed_load(corpus: Corpus, live: Live) -> None:
    """20 threads mix STOW / QIDO / metadata / frames; all succeed and every ack is retrievable."""
    template = corpus.ct[0]
    study_uid = generate_uid()
    ct_refs = [uids(ds) for ds in corpus.ct]
    ct_pixels = {str(ds.SOPInstanceUID): ds.PixelData for ds in corpus.ct}
    acked: dict[str, tuple[str, str, bytes]] = {}
    errors: list[str] = []
    counts: dict[str, int] = {"stow": 0, "qido": 0, "metadata": 0, "frames": 0}
    lock = threading.Lock()
    mark = len(live.recorder.seen)
    start = threading.Barrier(CONCURRENCY_THREADS)
    deadline = 0.0

    def worker(index: int) -> None:
        rng = random.Random(index)
        dw = live.client()
        series_uid = generate_uid()
        number = 0
        start.wait()
        while time.monotonic() < deadline:
            op = rng.choice(("stow", "stow", "qido", "metadata", "frames"))
            try:
                if op == "stow":
                    number += 1
                    ds = copy.deepcopy(template)
                    ds.StudyInstanceUID = study_uid
                    ds.SeriesInstanceUID = series_uid
                    ds.SOPInstanceUID = generate_uid()
                    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                    ds.InstanceNumber = number
                    ds.PatientID = "DWC-LOAD"
                    pixels = rng.randbytes(len(template.PixelData))
                    ds.PixelData = pixels
                    answer = dw.store_instances([ds])
                    if "FailedSOPSequence" in answer or str(ds.SOPInstanceUID) not in _referenced(answer):
                        raise AssertionError(f"STOW not acknowledged: {answer}")
                    with lock:
                        acked[str(ds.SOPInstanceUID)] = (study_uid, series_uid, pixels)
                elif op == "qido":
                    if rng.random() < 0.5:
                        found = dw.search_for_instances(study_instance_uid=study_uid, limit=20)
                        assert len(found) <= 20
                    else:
                        found = dw.search_for_studies(search_filters={"PatientID": "DWC-*"})
                        assert len(found) >= 4
                elif op == "metadata":
                    meta = dw.retrieve_series_metadata(*ct_refs[0][:2])
                    assert len(meta) == len(ct_refs)
                else:
                    ref = rng.choice(ct_refs)
                    got = dw.retrieve_instance_frames(*ref, frame_numbers=[1])
                    assert got == [ct_pixels[ref[2]]]
                with lock:
                    counts[op] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is collected and reported
                with lock:
                    errors.append(f"{op}: {type(exc).__name__}: {str(exc)[:300]}")

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(CONCURRENCY_THREADS)]
    deadline = time.monotonic() + CONCURRENCY_SECONDS + 1.0  # +1 s for the threads to line up
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=CONCURRENCY_SECONDS + 60)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    assert errors == [], f"{len(errors)} errors, first: {errors[:5]}"
    assert counts["stow"] >= CONCURRENCY_THREADS and min(counts.values()) > 0, counts
    print(f"concurrency: {counts} in {CONCURRENCY_SECONDS} s")
    statuses = {s.status for s in live.recorder.since(mark)}
    assert statuses <= {200}, statuses

    dw = live.client()
    listed = dw.search_for_instances(study_instance_uid=study_uid, get_remaining=True, limit=100)
    assert {value(i, "00080018") for i in listed} == set(acked)
    for sop, (study, series, pixels) in acked.items():
        got = dw.retrieve_instance_frames(study, series, sop, frame_numbers=[1])
        assert got == [pixels], sop

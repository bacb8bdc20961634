"""Reading and validating incoming DICOM objects (PS3.10 file format, PS3.5 encoding).

Every object that enters the archive, over DIMSE, HTTP or from a file, goes through
:func:`parse_part10`, which refuses what the archive must not keep and extracts what the
index needs. It never trusts names or UIDs a peer sent for anything but their values.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from dataclasses import dataclass

from pydicom import config as pdconfig
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag
from pydicom.uid import UID

from vesalius.dicom.uids import DEFLATED_LE, UNCOMPRESSED, is_valid_uid
from vesalius.errors import InvalidDicom

# Values from the wild are often slightly off; never let validation warnings (which may
# quote patient data) reach the logs, and never fail a read because of them.
pdconfig.settings.reading_validation_mode = pdconfig.IGNORE
pdconfig.settings.writing_validation_mode = pdconfig.IGNORE
logging.getLogger("pydicom").setLevel(logging.ERROR)

#: Executable headers that must never ride in the 128-byte preamble (PS3.10 7.1 allows any
#: content there; attackers use it for polyglot files). TIFF headers are legitimate.
_EXECUTABLE_MAGIC = (b"MZ", b"\x7fELF", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xcf\xfa\xed\xfe",
                     b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"#!", b"PK\x03\x04", b"{", b"[{",
                     b"<?xml", b"<html", b"<HTML", b"<script", b"<svg", b"%PDF")

#: The most any single object may be (1 GiB would already be a very long cine loop).
MAX_OBJECT_BYTES = 4 * 1024**3
#: The most a deflated data set may inflate to (decompression bombs, PS3.5 A.5).
MAX_INFLATED_BYTES = 256 * 1024**2
#: A deflated data set inflating more than this many times its size, past the floor, is refused.
MAX_DEFLATE_RATIO = 200
MAX_RATIO_FLOOR = 4 * 1024**2


@dataclass(frozen=True)
class ParsedInstance:
    """An accepted DICOM object: its bytes, header and identity."""

    data: bytes
    dataset: Dataset
    transfer_syntax: str
    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str


def check_preamble(data: bytes) -> None:
    """Refuse a Part-10 preamble that carries an executable (polyglot) header."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        pre = data[:128]
        for magic in _EXECUTABLE_MAGIC:
            if pre.startswith(magic):
                raise InvalidDicom("the 128-byte preamble carries an executable or document header; "
                                   "refused (PS3.10 7.1 polyglot)")


def _check_lengths(ds: Dataset) -> None:
    """Refuse truncated objects: every element read must hold as many bytes as it declared.

    pydicom reads leniently and returns a short value for the last, truncated element.
    """
    for raw in ds._dict.values():
        if isinstance(raw, RawDataElement):
            length = raw.length
            if length != 0xFFFFFFFF and raw.value is not None and len(raw.value) != length:
                raise InvalidDicom("truncated object: an element is shorter than its declared length")


def _check_encapsulated_end(ds: Dataset, data: bytes, ts: str) -> None:
    """Encapsulated pixel data must end with a whole sequence delimiter (PS3.5 A.4)."""
    raw = ds._dict.get(Tag(0x7FE00010))
    if not isinstance(raw, RawDataElement) or raw.length != 0xFFFFFFFF or ts == DEFLATED_LE:
        return
    end = raw.value_tell + len(raw.value or b"")
    delim = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00" if raw.is_little_endian else b"\xff\xfe\xe0\xdd\x00\x00\x00\x00"
    if data[end:end + 8] != delim:
        raise InvalidDicom("truncated object: encapsulated pixel data has no sequence delimiter")


def _meta_end(data: bytes) -> tuple[str, int]:
    """The Transfer Syntax UID of the file meta and where the data set starts, read the way
    pydicom reads them (with or without a group length)."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    fp = io.BytesIO(data)
    try:
        read_preamble(fp, False)
        meta = _read_file_meta_info(fp)
        ts = str(meta.get("TransferSyntaxUID", "")).rstrip("\0 ")
    except Exception as exc:
        raise InvalidDicom(f"file meta information is malformed ({type(exc).__name__})") from None
    return ts, fp.tell()


def _check_deflate_bomb(data: bytes) -> None:
    """Refuse a Deflated Explicit VR Little Endian data set that inflates past the limit."""
    ts, meta_end = _meta_end(data)
    if ts != DEFLATED_LE:
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending, total = data[meta_end:], 0
    try:
        while pending and not inflater.eof:  # inflate in bounded steps, keeping nothing
            out = len(inflater.decompress(pending, 16 * 1024**2))
            total += out
            if out == 0 and inflater.unconsumed_tail == pending:
                break  # no progress: nothing more will come out of this input
            pending = inflater.unconsumed_tail
            if total > MAX_INFLATED_BYTES:
                raise InvalidDicom("deflated data set inflates past the 256 MiB limit (decompression bomb)")
        compressed = max(len(data) - meta_end, 1)
        if total > MAX_RATIO_FLOOR and total > MAX_DEFLATE_RATIO * compressed:
            # Real data sets deflate a few times; thousands of times is a run of one byte,
            # which pydicom would read as millions of empty elements (seconds of CPU each MiB).
            raise InvalidDicom(f"deflated data set inflates {total // compressed}-fold (decompression bomb)")
    except zlib.error:
        raise InvalidDicom("deflated data set is not valid deflate data") from None


def _check_native_pixel_length(ds: Dataset, ts: str) -> None:
    """Native pixel data must hold Rows x Columns x Samples x Bits x Frames (PS3.5 8.1.1)."""
    raw = ds._dict.get(Tag(0x7FE00010))
    if raw is None or ts not in UNCOMPRESSED or not isinstance(raw, RawDataElement):
        return
    try:
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.get("BitsAllocated", 0) or 0)
        frames = int(str(ds.get("NumberOfFrames", 1) or 1).strip() or 1)
    except (TypeError, ValueError):
        raise InvalidDicom("image pixel description (Rows, Columns, BitsAllocated...) is malformed") from None
    if not (rows and cols and bits):
        return
    expected = rows * cols * spp * frames * bits // 8
    if len(raw.value or b"") < expected:
        raise InvalidDicom("pixel data is shorter than Rows x Columns x Samples x Bits x Frames declare")


def _check_uid(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None or str(value) == "":
        raise InvalidDicom(f"{keyword} is missing or empty")
    text = str(value).rstrip("\0 ")
    if not is_valid_uid(text):
        raise InvalidDicom(f"{keyword} is not a valid UID (PS3.5 9.1: digits and dots, at most 64)")
    return text


def parse_part10(data: bytes, *, expected_sop_instance: str | None = None) -> ParsedInstance:
    """Parse and validate one DICOM Part-10 object held in memory.

    Raises :class:`InvalidDicom` with the reason when the bytes are not DICOM, are truncated,
    carry malformed or dangerous UIDs, have an executable preamble or impossible lengths.
    """
    if len(data) > MAX_OBJECT_BYTES:
        raise InvalidDicom("object is larger than the 4 GiB limit")
    if len(data) < 132 or data[128:132] != b"DICM":
        raise InvalidDicom("not a DICOM Part-10 object (no 'DICM' prefix after the 128-byte preamble)")
    check_preamble(data)
    if b"1.2.840.10008.1.2.1.99" in data:
        _check_deflate_bomb(data)
    try:
        return _parse(data, expected_sop_instance)
    except InvalidDicom:
        raise
    except RecursionError:
        raise InvalidDicom("sequences nested too deeply to read") from None
    except Exception as exc:
        # pydicom raises many kinds for hostile bytes (zlib.error, BytesLengthException, ...):
        # all mean the same to the sender
        raise InvalidDicom(f"corrupt or malformed DICOM object ({type(exc).__name__})") from None


def _parse(data: bytes, expected_sop_instance: str | None) -> ParsedInstance:
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = dcmread(io.BytesIO(data), force=False)
            _check_lengths(ds)
        for w in caught:
            text = str(w.message)
            if "End of file" in text or "delimiter" in text:
                # e.g. encapsulated pixel data cut before its sequence delimiter (PS3.5 A.4)
                raise InvalidDicom("truncated object: the data set ends before its last element does")
    except InvalidDicomError as exc:
        raise InvalidDicom(f"not a valid DICOM object: {exc}") from None
    except (EOFError, OSError, struct.error, ValueError, KeyError, TypeError, IndexError,
            OverflowError, MemoryError, NotImplementedError, AttributeError) as exc:
        raise InvalidDicom(f"corrupt or truncated DICOM object ({type(exc).__name__})") from None
    meta: FileMetaDataset = ds.file_meta
    ts = str(meta.get("TransferSyntaxUID", "")).rstrip("\0 ")
    if not is_valid_uid(ts):
        raise InvalidDicom("file meta information has no valid Transfer Syntax UID (0002,0010)")
    _check_encapsulated_end(ds, data, ts)
    sop_class = _check_uid(ds, "SOPClassUID")
    sop_inst = _check_uid(ds, "SOPInstanceUID")
    study = _check_uid(ds, "StudyInstanceUID")
    series = _check_uid(ds, "SeriesInstanceUID")
    # A Media Storage SOP Instance UID that differs from the data set's happens in real files
    # (pydicom's rtdose.dcm); the data set is authoritative and the bytes are kept as they are.
    _check_native_pixel_length(ds, ts)
    if expected_sop_instance is not None and sop_inst != expected_sop_instance.rstrip("\0 "):
        raise InvalidDicom("SOP Instance UID in the data set differs from the one in the request")
    return ParsedInstance(data, ds, ts, sop_class, sop_inst, study, series)


def build_part10(dataset_bytes: bytes, sop_class: str, sop_instance: str, transfer_syntax: str,
                 source_ae: str | None = None) -> bytes:
    """Wrap a data set received over the network in a Part-10 file (PS3.10 7.1), as received.

    The preamble is zeroed; the data set bytes are kept exactly as the peer encoded them.
    """
    from pydicom.filewriter import write_file_meta_info

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    if source_ae:
        meta.SourceApplicationEntityTitle = source_ae
    buf = io.BytesIO()
    buf.write(b"\0" * 128 + b"DICM")
    from pydicom.filebase import DicomFileLike

    fp = DicomFileLike(buf)
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_file_meta_info(fp, meta, enforce_standard=True)
    buf.write(dataset_bytes)
    return buf.getvalue()


#: Our implementation identity in file meta and association negotiation (PS3.7 D.3.3.2).
IMPLEMENTATION_CLASS_UID = UID("1.2.826.0.1.3680043.10.1426.1")
IMPLEMENTATION_VERSION = "VESALIUS_010"

"""Transfer-syntax conversion for retrieval (PS3.5 Section 10, Annex A).

The archive sends what it stored whenever the peer accepts that transfer syntax. When it
does not, the object is decoded (pydicom with pylibjpeg / python-gdcm) to native pixel
data, or re-encoded to a lossless compressed syntax the peer accepts. A lossy syntax is
never produced from a lossless original.
"""

from __future__ import annotations

import io

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID

from vesalius.dicom.uids import (
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    UNCOMPRESSED,
    is_lossy,
)
from vesalius.errors import InvalidDicom

_NATIVE = (EXPLICIT_VR_LE, IMPLICIT_VR_LE, EXPLICIT_VR_BE)


class TranscodeError(InvalidDicom):
    """The object cannot be converted to any transfer syntax the peer accepts."""


def can_encode(ts: str) -> bool:
    """True if ``ts`` is native or pydicom has an available encoder for it here."""
    if ts in _NATIVE:
        return True
    try:
        from pydicom.pixels.encoders.base import get_encoder

        return bool(get_encoder(UID(ts)).is_available)
    except Exception:
        return False


def choose(stored: str, accepted: set[str] | frozenset[str]) -> str | None:
    """The transfer syntax to send ``stored`` in, or None if none is possible.

    Preference: as stored; a native syntax (little endian first); a lossless compressed
    syntax (a lossy one only if the original is lossy too).
    """
    if stored in accepted:
        return stored
    for ts in _NATIVE:
        if ts in accepted:
            return ts
    for other in sorted(accepted):
        if other not in UNCOMPRESSED and (not is_lossy(other) or is_lossy(stored)) and can_encode(other):
            return other
    return None


_SWAP_WIDTH = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def _swap_bytes(ds: Dataset) -> None:
    """Byte-swap the binary values pydicom writes as they are (PS3.5 7.3: OW/OF/OL/OD/OV)."""
    for elem in ds.iterall():
        width = _SWAP_WIDTH.get(elem.VR)
        if width and isinstance(elem.value, bytes) and len(elem.value) % width == 0:
            elem.value = np.frombuffer(elem.value, dtype=f"u{width}").byteswap().tobytes()


def _relabel(ds: Dataset, target: str) -> None:
    """Make ``ds`` encode as the native syntax ``target`` (VR explicitness and byte order)."""
    t = UID(target)
    little = ds.original_encoding[1]
    if little is not None and little != t.is_little_endian:
        _swap_bytes(ds)
    ds.file_meta.TransferSyntaxUID = t
    ds.set_original_encoding(t.is_implicit_VR, t.is_little_endian, ds.original_character_set)


def transcode(data: bytes, target: str) -> Dataset:
    """Decode ``data`` (a Part-10 object) and re-encode it in ``target``.

    The SOP Instance UID is kept: the copy is the same instance in another encoding
    (PS3.5 Section 10; a lossy re-encoding would need a new UID, and is never made here).
    """
    ds = dcmread(io.BytesIO(data))
    stored = str(ds.file_meta.TransferSyntaxUID)
    if stored == target:
        return ds
    try:
        if stored not in UNCOMPRESSED and "PixelData" in ds:
            ds.decompress(generate_instance_uid=False)
        if target in _NATIVE:
            _relabel(ds, target)
            return ds
        if ds.original_encoding[1] is False:
            _relabel(ds, EXPLICIT_VR_LE)
        ds.compress(UID(target), generate_instance_uid=False)
        return ds
    except Exception as exc:
        raise TranscodeError(f"cannot convert {stored} to {target}: {type(exc).__name__}: {exc}") from None

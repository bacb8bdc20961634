"""Transfer-syntax conversion for retrieval (PS3.5 Section 10, Annex A).

The archive sends what it stored whenever the peer accepts that transfer syntax. When it
does not, the object is decoded (pydicom with pylibjpeg / python-gdcm) to native pixel
data, or re-encoded to a lossless compressed syntax the peer accepts. A lossy syntax is
never produced from a lossless original.
"""

from __future__ import annotations

import io

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID

from vesalius.dicom.uids import (
    DEFLATED_LE,
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


def choose(stored: str, accepted: set[str] | frozenset[str]) -> str | None:
    """The transfer syntax to send ``stored`` in, or None if none is possible.

    Preference: as stored; native (which pynetdicom converts between implicit/explicit);
    a lossless compressed syntax (or lossy only if the original is lossy too).
    """
    if stored in accepted:
        return stored
    if stored in UNCOMPRESSED and stored != DEFLATED_LE:
        for ts in _NATIVE:
            if ts in accepted:
                return ts
    for ts in _NATIVE:
        if ts in accepted:
            return ts
    for other in sorted(accepted):
        if other not in UNCOMPRESSED and (not is_lossy(other) or is_lossy(stored)):
            return other
    return None


def transcode(data: bytes, target: str) -> Dataset:
    """Decode ``data`` (a Part-10 object) and re-encode it in ``target``."""
    ds = dcmread(io.BytesIO(data))
    stored = str(ds.file_meta.TransferSyntaxUID)
    if stored == target:
        return ds
    try:
        if target in _NATIVE:
            if stored not in UNCOMPRESSED and "PixelData" in ds:
                ds.decompress()
            ds.file_meta.TransferSyntaxUID = UID(target)
            return ds
        if stored not in UNCOMPRESSED and "PixelData" in ds:
            ds.decompress()
        ds.compress(UID(target))
        return ds
    except Exception as exc:
        raise TranscodeError(f"cannot convert {stored} to {target}: {type(exc).__name__}: {exc}") from None

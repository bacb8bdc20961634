"""Frames of a stored object without decoding the rest (PS3.5 8.2 and Annex A.4, PS3.18 8.7.3).

WADO-RS ``frames`` returns single frames of an instance. For native pixel data a frame is a
byte range of the stored file; for encapsulated pixel data it is the frame's fragments,
found through the Basic (or Extended) Offset Table by pydicom. Only when a client asks for
another encoding is a frame decoded (pydicom with pylibjpeg / python-gdcm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from pydicom import dcmread
from pydicom.encaps import get_frame
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID

from vesalius.dicom.uids import DEFLATED_LE, EXPLICIT_VR_BE
from vesalius.errors import InvalidDicom, NotFound

_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)


@dataclass(frozen=True)
class PixelLayout:
    """Where the frames of one stored object lie (offsets are from the start of the file)."""

    transfer_syntax: str
    frames: int
    rows: int
    columns: int
    samples: int
    bits_allocated: int
    offset: int = -1  # first byte of the Pixel Data value; -1: the file cannot be read in place
    length: int = 0  # the value's length (native data)
    encapsulated: bool = False
    extended_offsets: tuple[bytes, bytes] | None = None

    @property
    def frame_size(self) -> int:
        """Bytes per native frame (PS3.5 8.1.1); 0 for bit-packed (1-bit) data."""
        if self.bits_allocated % 8:
            return 0
        return self.rows * self.columns * self.samples * (self.bits_allocated // 8)

    @property
    def in_place(self) -> bool:
        """True when a frame can be cut from the file without decoding anything else."""
        if self.offset < 0:
            return False
        return self.encapsulated or (self.frame_size > 0 and self.frames * self.frame_size <= self.length)


def pixel_layout(fp: BinaryIO) -> PixelLayout:
    """Read the header of a Part-10 object and locate its pixel data."""
    try:
        ds = dcmread(fp, defer_size=256, force=True)
        ts = str(ds.file_meta.TransferSyntaxUID)
        tag = next((t for t in _PIXEL_TAGS if t in ds), None)
        if tag is None:
            raise InvalidDicom("the instance has no pixel data")
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        layout = dict(transfer_syntax=ts, frames=max(frames, 1), rows=int(ds.Rows),
                      columns=int(ds.Columns), samples=int(ds.get("SamplesPerPixel", 1) or 1),
                      bits_allocated=int(ds.BitsAllocated))
        if ts == DEFLATED_LE:
            return PixelLayout(**layout)  # type: ignore[arg-type]
        raw = ds.get_item(tag, keep_deferred=True)
        tell = getattr(raw, "value_tell", None)
        length = getattr(raw, "length", 0)
        if tell is None:
            return PixelLayout(**layout)  # type: ignore[arg-type]
        ext: tuple[bytes, bytes] | None = None
        if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
            ext = (bytes(ds.ExtendedOffsetTable), bytes(ds.ExtendedOffsetTableLengths))
        return PixelLayout(**layout, offset=int(tell), length=int(length),  # type: ignore[arg-type]
                           encapsulated=UID(ts).is_encapsulated, extended_offsets=ext)
    except InvalidDicom:
        raise
    except Exception as exc:
        raise InvalidDicom(f"cannot locate the pixel data ({type(exc).__name__})") from None


def _check_index(layout: PixelLayout, number: int) -> int:
    if not 1 <= number <= layout.frames:
        raise NotFound(f"frame {number} does not exist; the instance has {layout.frames} frame(s)")
    return number - 1


def stored_frame(fp: BinaryIO, layout: PixelLayout, number: int) -> bytes:
    """Frame ``number`` (1-based) as stored: native bytes (little endian) or the codestream."""
    index = _check_index(layout, number)
    if not layout.in_place:
        raise InvalidDicom("the frame cannot be read in place")
    if layout.encapsulated:
        fp.seek(layout.offset)
        try:
            return get_frame(fp, index, number_of_frames=layout.frames,
                             extended_offsets=layout.extended_offsets)
        except Exception as exc:
            raise InvalidDicom(f"the encapsulated pixel data is damaged ({type(exc).__name__})") from None
    size = layout.frame_size
    fp.seek(layout.offset + index * size)
    data = fp.read(size)
    if len(data) != size:
        raise InvalidDicom("the pixel data is shorter than its frames")
    if layout.transfer_syntax == EXPLICIT_VR_BE and layout.bits_allocated > 8:
        data = np.frombuffer(data, dtype=f">u{layout.bits_allocated // 8}").astype(
            f"<u{layout.bits_allocated // 8}").tobytes()
    return data


def decoded_frame(fp: BinaryIO, number: int, frames: int) -> bytes:
    """Frame ``number`` (1-based) decoded to native little-endian bytes (PS3.18 8.7.3.5.2)."""
    if not 1 <= number <= frames:
        raise NotFound(f"frame {number} does not exist; the instance has {frames} frame(s)")
    try:
        fp.seek(0)
        arr = pixel_array(fp, index=number - 1)
    except Exception as exc:
        raise InvalidDicom(f"the pixel data cannot be decoded ({type(exc).__name__}: {exc})") from None
    return np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()

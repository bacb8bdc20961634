"""Frames, rendered images and thumbnails of archived instances (PS3.18 8.7.3, 9.5).

Frame locations are read once per object and cached; rendered images and thumbnails are
cached with a bounded total size, so a viewer scrolling back and forth is served from
memory.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from pydicom import dcmread

from vesalius.archive.retrieve import InstanceRef
from vesalius.dicom.frames import PixelLayout, decoded_frame, pixel_layout, stored_frame
from vesalius.dicom.render import RenderParams, render_frame
from vesalius.dicom.uids import UNCOMPRESSED
from vesalius.storage.base import BlobStore


class _LRU:
    """A thread-safe LRU mapping bounded by entry count and by total bytes of values."""

    def __init__(self, max_entries: int, max_bytes: int = 0) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: OrderedDict[object, object] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: object) -> object | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: object, value: object, size: int = 0) -> None:
        with self._lock:
            if key in self._data:
                return
            self._data[key] = value
            self._bytes += size
            while self._data and (len(self._data) > self.max_entries
                                  or (self.max_bytes and self._bytes > self.max_bytes)):
                _, old = self._data.popitem(last=False)
                if isinstance(old, bytes):
                    self._bytes -= len(old)
                elif isinstance(old, tuple) and old and isinstance(old[0], bytes):
                    self._bytes -= len(old[0])


class FrameService:
    """Reads frames in their stored or in native encoding, and renders them."""

    def __init__(self, store: BlobStore, render_cache_bytes: int = 128 << 20) -> None:
        self.store = store
        self._layouts = _LRU(20000)
        self._rendered = _LRU(100000, render_cache_bytes)

    @contextmanager
    def _open(self, ref: InstanceRef) -> Iterator[BinaryIO]:
        path = self.store.local_path(ref.blob_key)
        if path is not None:
            try:
                f = path.open("rb")
            except FileNotFoundError:
                from vesalius.errors import StorageError

                raise StorageError(f"object {ref.blob_key} is missing from storage") from None
            with f:
                yield f
        else:
            yield io.BytesIO(self.store.get(ref.blob_key))

    def layout(self, ref: InstanceRef, fp: BinaryIO | None = None) -> PixelLayout:
        cached = self._layouts.get(ref.blob_key)
        if isinstance(cached, PixelLayout):
            return cached
        if fp is None:
            with self._open(ref) as f:
                layout = pixel_layout(f)
        else:
            layout = pixel_layout(fp)
        self._layouts.put(ref.blob_key, layout)
        return layout

    def frames(self, ref: InstanceRef, numbers: list[int], *, native: bool) -> tuple[list[bytes], str]:
        """The frames ``numbers`` (1-based) and the transfer syntax they are in.

        ``native`` asks for uncompressed little-endian frames; otherwise frames come as
        stored (compressed codestreams are passed through untouched).
        """
        with self._open(ref) as f:
            layout = self.layout(ref, f)
            compressed = layout.transfer_syntax not in UNCOMPRESSED
            if layout.in_place and not (native and compressed):
                ts = layout.transfer_syntax if compressed else "1.2.840.10008.1.2.1"
                return [stored_frame(f, layout, n) for n in numbers], ts
            return [decoded_frame(f, n, layout.frames) for n in numbers], "1.2.840.10008.1.2.1"

    def number_of_frames(self, ref: InstanceRef) -> int:
        return self.layout(ref).frames

    def video(self, ref: InstanceRef) -> tuple[bytes, str]:
        """A video instance as a file a browser plays (MP4), from the cache if there."""
        key = (ref.blob_key, "video")
        cached = self._rendered.get(key)
        if isinstance(cached, tuple):
            return cached
        from vesalius.dicom.video import video_stream

        with self._open(ref) as f:
            ds = dcmread(f, force=True)
        out = video_stream(ds)
        self._rendered.put(key, out, len(out[0]))
        return out

    def render(self, ref: InstanceRef, frame: int, params: RenderParams) -> bytes:
        """Frame ``frame`` rendered as JPEG or PNG (PS3.18 8.3.5), from the cache if there."""
        key = (ref.blob_key, frame, params)
        cached = self._rendered.get(key)
        if isinstance(cached, bytes):
            return cached
        with self._open(ref) as f:
            ds = dcmread(f, force=True)
        out = render_frame(ds, frame, params)
        self._rendered.put(key, out, len(out))
        return out

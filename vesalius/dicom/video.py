"""Video instances as files a browser's ``<video>`` element plays.

DICOM keeps a video as one MPEG stream in the encapsulated Pixel Data (PS3.5 A.4): the fragments
of the (only) frame item, concatenated, are the stream, and the Basic Offset Table is empty.
The transfer syntax says which standard the stream follows:

- PS3.5 8.2.5 / 8.2.6: MPEG2 Main Profile @ Main Level / High Level (``1.2.840.10008.1.2.4.100``,
  ``.101``, and their fragmentable ``.1`` variants);
- PS3.5 8.2.7: MPEG-4 AVC/H.264 High Profile @ Level 4.1 / 4.2, BD-compatible, 3D and stereo
  (``.102`` to ``.106``, and ``.1`` variants);
- PS3.5 8.2.8: HEVC/H.265 Main and Main 10 (``.107``, ``.108``).

The stream itself may be a bare elementary stream (H.264/HEVC Annex B byte stream, MPEG-2 video
sequence), an MPEG-2 program or transport stream, or a whole MP4 (ISO BMFF) file, which is what
many converters (dcm4che's ``mp42dcm``, for one) embed.

Browsers play MP4 files holding H.264 (and, where the platform decodes it, HEVC); they play no
MPEG-2 at all and no bare elementary streams. PS3.18 8.7.4 (rendered media types) lets a
rendered video be ``video/mp4``; :func:`video_stream` therefore answers an MP4 file:

- an embedded MP4 file is returned as it is (only the even-length padding DICOM adds is cut);
- H.264 and HEVC in any other wrapping are remuxed into MP4 without re-encoding (``+faststart``,
  so the ``moov`` box comes first and playback starts before the whole file has arrived);
- MPEG-2 (and anything else FFmpeg decodes) is transcoded to H.264 with libx264 (preset
  ``fast``), interlaced material deinterlaced (``bwdif``) on the way.

Bare streams carry no usable timestamps; presentation times come from the data set: Frame Time
Vector (0018,1065) when Frame Increment Pointer names it, else Frame Time (0018,1063), Cine Rate
(0018,0040), Frame Time Vector, Recommended Display Frame Rate (0008,2144), else 30 frames/s.
Streams in a container keep the container's timestamps.

FFmpeg comes from PyAV (``av``), imported only when a video is converted.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Final

from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments

from vesalius.errors import InvalidDicom

if TYPE_CHECKING:  # pragma: no cover - typing only
    import av.container
    import av.video.frame
    import av.video.stream

__all__ = [
    "H264_TRANSFER_SYNTAXES",
    "HEVC_TRANSFER_SYNTAXES",
    "MPEG2_TRANSFER_SYNTAXES",
    "VIDEO_TRANSFER_SYNTAXES",
    "frame_times",
    "is_video",
    "stream_bytes",
    "video_stream",
]

_PREFIX = "1.2.840.10008.1.2.4."

#: MPEG2 MP@ML and MP@HL, and their fragmentable variants (PS3.5 8.2.5, 8.2.6).
MPEG2_TRANSFER_SYNTAXES: Final = frozenset(
    f"{_PREFIX}{n}{suffix}" for n in (100, 101) for suffix in ("", ".1")
)
#: MPEG-4 AVC/H.264 High Profile variants, and their fragmentable variants (PS3.5 8.2.7).
H264_TRANSFER_SYNTAXES: Final = frozenset(
    f"{_PREFIX}{n}{suffix}" for n in range(102, 107) for suffix in ("", ".1")
)
#: HEVC/H.265 Main and Main 10 Profile (PS3.5 8.2.8).
HEVC_TRANSFER_SYNTAXES: Final = frozenset({f"{_PREFIX}107", f"{_PREFIX}108"})
#: Every transfer syntax whose Pixel Data is one video stream rather than a set of frames.
VIDEO_TRANSFER_SYNTAXES: Final[frozenset[str]] = (
    MPEG2_TRANSFER_SYNTAXES | H264_TRANSFER_SYNTAXES | HEVC_TRANSFER_SYNTAXES
)

MP4: Final = "video/mp4"
DEFAULT_FPS: Final = 30.0
#: MP4 track time base: the 90 kHz clock of MPEG systems.
TIME_BASE: Final = Fraction(1, 90000)
_MIN_FPS, _MAX_FPS = 0.01, 1000.0
_COPY_CODECS: Final = {"h264": "avc1", "hevc": "hvc1"}  # hvc1: the tag Safari and Chrome accept
_RAW_FORMATS: Final = frozenset({"h264", "hevc", "mpegvideo", "m4v", "mpeg1video"})
_ITEM_TAG: Final = b"\xfe\xff\x00\xe0"  # (FFFE,E000), little endian: every video TS is LE


def is_video(ts: str) -> bool:
    """True when ``ts`` is an MPEG-2, H.264 or HEVC transfer syntax (PS3.5 8.2.5-8.2.8)."""
    return str(ts) in VIDEO_TRANSFER_SYNTAXES


# --------------------------------------------------------------------------- the stream


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if ts is None:
        raise InvalidDicom("the data set has no Transfer Syntax UID (0002,0010): read it from a "
                           "Part-10 file or set ds.file_meta.TransferSyntaxUID")
    return str(ts)


def stream_bytes(ds: Dataset) -> bytes:
    """The video stream held by the encapsulated Pixel Data of ``ds`` (PS3.5 A.4, 8.2.5-8.2.8).

    The Basic Offset Table item is skipped (it is empty for video) and the fragments that
    follow it are concatenated: a fragmentable transfer syntax (the ``.1`` variants) may split
    the stream over any number of fragments.
    """
    ts = _transfer_syntax(ds)
    if not is_video(ts):
        raise InvalidDicom(f"transfer syntax {ts} is not a video transfer syntax "
                           "(MPEG-2, H.264 or HEVC; PS3.5 8.2.5-8.2.8)")
    elem = ds.get(0x7FE00010)  # the element (a keyword would give the value)
    if elem is None or not elem.value:
        raise InvalidDicom("the video instance has no Pixel Data (7FE0,0010)")
    value = bytes(elem.value)
    if value[:4] != _ITEM_TAG or len(value) < 8:
        raise InvalidDicom("the Pixel Data of a video instance must be encapsulated (PS3.5 A.4): "
                           "no Basic Offset Table item found")
    (bot_length,) = struct.unpack_from("<I", value, 4)
    start = 8 + bot_length
    if start > len(value):
        raise InvalidDicom("the Basic Offset Table of the Pixel Data runs past its end")
    try:
        stream = b"".join(generate_fragments(value[start:]))
    except (ValueError, struct.error) as exc:
        raise InvalidDicom(f"the encapsulated Pixel Data is malformed: {exc}") from exc
    if not stream:
        raise InvalidDicom("the Pixel Data of the video instance holds no stream (no fragments)")
    return stream


# --------------------------------------------------------------------------- timing


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 and number == number else None


def _rate(value: float | None) -> float | None:
    return value if value is not None and _MIN_FPS <= value <= _MAX_FPS else None


def frame_times(ds: Dataset, n: int) -> list[float]:
    """Presentation time in seconds of each of ``n`` frames, from the data set (PS3.3 C.7.6.5).

    Frame Time Vector (0018,1065) holds, per frame, the milliseconds since the previous frame
    (its first value is 0); it wins when Frame Increment Pointer (0028,0009) names it. Then a
    constant interval from Frame Time (0018,1063, ms), Cine Rate (0018,0040, frames/s), the
    Frame Time Vector anyway, Recommended Display Frame Rate (0008,2144), else 30 frames/s.
    Values that are not positive and plausible are ignored.
    """
    vector = _vector_times(ds, n)
    pointers = ds.get("FrameIncrementPointer")
    if not isinstance(pointers, list | tuple):
        pointers = [pointers]
    if vector is not None and any(p is not None and int(p) == 0x00181065 for p in pointers):
        return vector
    frame_time = _positive(ds.get("FrameTime"))
    fps = _rate(1000.0 / frame_time if frame_time else None)
    fps = fps or _rate(_positive(ds.get("CineRate")))
    if fps is None and vector is not None:
        return vector
    fps = fps or _rate(_positive(ds.get("RecommendedDisplayFrameRate"))) or DEFAULT_FPS
    return [k / fps for k in range(n)]


def _vector_times(ds: Dataset, n: int) -> list[float] | None:
    raw = ds.get("FrameTimeVector")
    if raw is None or n <= 0:
        return None
    values = list(raw) if isinstance(raw, Iterable) and not isinstance(raw, str | bytes) else [raw]
    if len(values) < n:
        return None
    times, total = [], 0.0
    for k, v in enumerate(values[:n]):
        try:
            step = float(v)
        except (TypeError, ValueError):
            return None
        if k and not 1.0 <= step <= 100_000.0:  # between 1 ms and 100 s per frame
            return None
        total += step if k else 0.0
        times.append(total / 1000.0)
    return times


def _ticks(seconds: float) -> int:
    return round(seconds / TIME_BASE)


def _frame_duration(times: Sequence[float], rank: int) -> int:
    if rank + 1 < len(times):
        return max(1, _ticks(times[rank + 1]) - _ticks(times[rank]))
    if len(times) > 1:
        return max(1, round(_ticks(times[-1] - times[0]) / (len(times) - 1)))
    return _ticks(1.0 / DEFAULT_FPS)


# --------------------------------------------------------------------------- entry point


def video_stream(ds: Dataset, *, strict: bool = True) -> tuple[bytes, str]:
    """A file a browser's ``<video>`` plays, and its media type, for the video instance ``ds``.

    The answer is always ``video/mp4`` (PS3.18 8.7.4): an embedded MP4 file as it is, H.264 /
    HEVC remuxed without re-encoding, MPEG-2 transcoded to H.264 (see the module's docstring).

    With ``strict`` (the default) a stream that is damaged is refused: frames the decoder marks
    corrupt, packets it cannot decode, fewer frames than Number of Frames (0028,0008) says
    (a truncated stream). ``strict=False`` serves whatever part decodes. A stream of which no
    frame decodes, or one in no format FFmpeg knows, is refused either way.

    Raises :class:`~vesalius.errors.InvalidDicom` with the reason; never an FFmpeg error.
    """
    ts = _transfer_syntax(ds)
    data = stream_bytes(ds)
    if data[4:8] == b"ftyp" and ts not in MPEG2_TRANSFER_SYNTAXES:
        return _checked_mp4(data), MP4
    expected = _number_of_frames(ds)
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a dependency
        raise InvalidDicom("video needs PyAV: pip install av") from exc
    try:
        return _convert(data, ts, ds, expected, strict), MP4
    except av.FFmpegError as exc:
        raise InvalidDicom(f"the {_codec_family(ts)} stream of the video instance cannot be "
                           f"read: {exc}") from exc


def _number_of_frames(ds: Dataset) -> int | None:
    try:
        n = int(ds.get("NumberOfFrames") or 0)
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


def _codec_family(ts: str) -> str:
    if ts in MPEG2_TRANSFER_SYNTAXES:
        return "MPEG-2"
    return "HEVC" if ts in HEVC_TRANSFER_SYNTAXES else "H.264"


# --------------------------------------------------------------------------- MP4 as is


def _checked_mp4(data: bytes) -> bytes:
    """``data`` if its top-level ISO BMFF boxes (ISO/IEC 14496-12 4.2) are whole and a ``moov``
    is among them; trailing zero bytes (DICOM's even-length padding) are cut."""
    pos, kinds = 0, set()
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > len(data):
                break
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = len(data) - pos  # the last box runs to the end of the file
        if size < header:
            if not data[pos:].strip(b"\0"):
                break  # padding, not a box
            raise InvalidDicom(f"the MP4 file in the Pixel Data is corrupt: box {kind!r} at byte "
                               f"{pos} has an impossible size {size}")
        if pos + size > len(data):
            raise InvalidDicom(f"the MP4 file in the Pixel Data is truncated: box {kind!r} at byte "
                               f"{pos} needs {size} bytes, {len(data) - pos} are left")
        kinds.add(kind)
        pos += size
    if data[pos:].strip(b"\0"):
        raise InvalidDicom(f"the MP4 file in the Pixel Data is corrupt: {len(data) - pos} stray "
                           f"bytes after its last box")
    if b"moov" not in kinds:
        raise InvalidDicom("the MP4 file in the Pixel Data has no 'moov' box (truncated or not "
                           "an MP4 file)")
    return data[:pos]


# --------------------------------------------------------------------------- remux / transcode


def _input_format(data: bytes, ts: str) -> str | None:
    """The FFmpeg demuxer for ``data``; ``None``: let FFmpeg probe."""
    if data[4:8] == b"ftyp":
        return "mp4"
    if data[:1] == b"\x47" and (len(data) < 189 or data[188:189] == b"\x47"):
        return "mpegts"  # ISO/IEC 13818-1 transport stream: 188-byte packets, sync byte 0x47
    zeros = len(data) - len(data.lstrip(b"\0"))
    if zeros >= 2 and data[zeros:zeros + 1] == b"\x01" and len(data) > zeros + 1:
        code = data[zeros + 1]
        if code == 0xBA:
            return "mpeg"  # program stream pack header
        if code in (0xB3, 0xB5):
            return "mpegvideo"  # MPEG-1/2 video sequence header
        if ts in H264_TRANSFER_SYNTAXES:
            return "h264"  # Annex B byte stream
        if ts in HEVC_TRANSFER_SYNTAXES:
            return "hevc"
    return None


def _convert(data: bytes, ts: str, ds: Dataset, expected: int | None, strict: bool) -> bytes:
    import av

    fmt = _input_format(data, ts)
    try:
        inp = av.open(io.BytesIO(data), mode="r", format=fmt)
    except av.FFmpegError as exc:
        raise InvalidDicom(f"the Pixel Data holds no {_codec_family(ts)} stream FFmpeg can read "
                           f"({fmt or 'probed'}): {exc}") from exc
    with inp, tempfile.TemporaryDirectory(prefix="vesalius-video-") as tmp:
        if not inp.streams.video:
            raise InvalidDicom(f"the Pixel Data holds no video stream ({inp.format.name})")
        source = inp.streams.video[0]
        packets = [p for p in inp.demux(source) if p.size]
        if not packets:
            raise InvalidDicom(f"the {_codec_family(ts)} stream holds no video data")
        path = os.path.join(tmp, "video.mp4")
        with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            # Bare streams have no timestamps (a raw demuxer invents them from a guessed rate):
            # those come from the data set; a container's own are kept.
            stamps = None if inp.format.name in _RAW_FORMATS else _container_stamps(packets)
            if source.codec_context.name in _COPY_CODECS:
                _copy(source, packets, stamps, out, ds, expected, strict)
            else:
                _transcode(source, packets, stamps, out, ds, expected, strict)
        with open(path, "rb") as f:
            return f.read()


Stamps = list[tuple[int, int, int]]  # per packet: pts, dts, duration, in TIME_BASE


def _container_stamps(packets: Sequence[Any]) -> Stamps | None:
    """Each packet's (pts, dts, duration) in :data:`TIME_BASE` when the container gave them all.

    The first frame is moved to time 0 (program streams start at 0.5 s or so); a packet's
    duration is the time to the next presented frame (the last one gets the mean).
    """
    if any(p.pts is None or p.dts is None or p.time_base is None for p in packets):
        return None
    raw = [(_ticks(float(p.pts * p.time_base)), _ticks(float(p.dts * p.time_base)))
           for p in packets]
    start = min(pts for pts, _ in raw)
    pairs = [(pts - start, dts - start) for pts, dts in raw]
    ordered = sorted(pts for pts, _ in pairs)
    following = {a: b - a for a, b in zip(ordered, ordered[1:], strict=False)}
    mean = round((ordered[-1] - ordered[0]) / (len(ordered) - 1)) if len(ordered) > 1 else 0
    mean = mean or _ticks(1.0 / DEFAULT_FPS)
    return [(pts, dts, max(1, following.get(pts, mean))) for pts, dts in pairs]


def _decode_in_order(source: av.video.stream.VideoStream, packets: Sequence[Any],
                     expected: int | None, strict: bool,
                     what: str) -> Iterable[av.video.frame.VideoFrame]:
    """Decode ``packets`` (whose pts/dts become their index); yield frames in presentation order.

    Each frame's ``pts`` is the index of the packet that carried it. Checks what ``strict``
    asks for (see :func:`video_stream`).
    """
    import av

    ctx = source.codec_context
    ctx.thread_type = "AUTO"
    n = bad = 0
    first_error: str | None = None

    def check(frames: Iterable[av.video.frame.VideoFrame]) -> Iterable[av.video.frame.VideoFrame]:
        nonlocal n
        for frame in frames:
            if frame.is_corrupt and strict:
                raise InvalidDicom(f"the {what} stream is damaged: frame {n + 1} decodes corrupt")
            n += 1
            yield frame

    for i, packet in enumerate(packets):
        packet.pts = packet.dts = i
        try:
            frames = ctx.decode(packet)
        except av.FFmpegError as exc:
            if strict:
                raise InvalidDicom(f"the {what} stream is damaged: packet {i + 1} of "
                                   f"{len(packets)} does not decode ({exc})") from exc
            bad += 1
            first_error = first_error or str(exc)
            continue
        yield from check(frames)
    try:
        flushed = ctx.decode(None)
    except av.FFmpegError as exc:
        if strict:
            raise InvalidDicom(f"the {what} stream is damaged at its end ({exc})") from exc
        flushed = []
    yield from check(flushed)
    if n == 0:
        detail = f" ({bad} packets failed: {first_error})" if bad else ""
        raise InvalidDicom(f"no frame of the {what} stream decodes{detail}")
    if strict and expected is not None and n < expected:
        raise InvalidDicom(f"the {what} stream is truncated: {n} frames decode, Number of Frames "
                           f"(0028,0008) is {expected}")


def _copy(source: av.video.stream.VideoStream, packets: list[Any], stamps: Stamps | None,
          out: av.container.OutputContainer, ds: Dataset, expected: int | None,
          strict: bool) -> None:
    """Remux H.264 / HEVC packets into ``out`` as they are, with timestamps that are right."""
    codec = source.codec_context.name
    what = "HEVC" if codec == "hevc" else "H.264"
    # Decoding gives the presentation order (B-frames) and proves the stream is whole.
    order = [int(f.pts) for f in _decode_in_order(source, packets, expected, strict, what)
             if f.pts is not None]
    if stamps is None:
        stamps = _dataset_stamps(ds, order, len(packets), strict, what)
    target = out.add_stream_from_template(source)
    target.codec_context.codec_tag = _COPY_CODECS[codec]
    target.time_base = TIME_BASE
    for packet, (pts, dts, duration) in zip(packets, stamps, strict=True):
        packet.pts, packet.dts, packet.duration = pts, dts, duration
        packet.time_base = TIME_BASE
        packet.stream = target
        out.mux(packet)


def _dataset_stamps(ds: Dataset, order: list[int], n_packets: int, strict: bool,
                    what: str) -> Stamps:
    """(pts, dts, duration) per packet of a bare stream, from the data set's timing.

    ``order`` lists, in presentation order, the index of the packet that carried each frame
    (decode order differs with B-frames). Decode timestamps follow decode order, shifted back by
    the largest reordering so that no dts is after its pts (negative dts, as FFmpeg itself
    writes them, become an edit list in the MP4).
    """
    rank = {packet: k for k, packet in enumerate(order)}
    if len(rank) != n_packets or set(rank) != set(range(n_packets)):
        if strict:
            raise InvalidDicom(f"the {what} stream is damaged: {n_packets} packets give "
                               f"{len(rank)} frames")
        rank = {i: i for i in range(n_packets)}  # no better guess: presentation = decode order
    times = frame_times(ds, n_packets)
    step = _frame_duration(times, len(times) - 1)

    def at(k: int) -> int:
        return _ticks(times[k]) if k >= 0 else _ticks(times[0]) + k * step

    delay = max(0, max(i - rank[i] for i in range(n_packets)))
    return [(at(rank[i]), at(i - delay), _frame_duration(times, rank[i]))
            for i in range(n_packets)]


def _transcode(source: av.video.stream.VideoStream, packets: list[Any], stamps: Stamps | None,
               out: av.container.OutputContainer, ds: Dataset, expected: int | None,
               strict: bool) -> None:
    """Decode ``packets`` (MPEG-2 or anything else FFmpeg decodes) and encode H.264 into ``out``.

    libx264, preset ``fast``, CRF 18 (visually lossless for 8-bit 4:2:0), a key frame every
    2 s, yuv420p, even sizes; interlaced pictures are deinterlaced with ``bwdif`` (one frame per
    frame).
    """
    codec = source.codec_context.name
    what = "MPEG-2" if codec in ("mpeg2video", "mpeg1video") else codec
    times = frame_times(ds, max(expected or 0, len(packets)))
    step = _frame_duration(times, len(times) - 1)
    frames = _timed(_decode_in_order(source, packets, expected, strict, what),
                    stamps, times, step)
    target: Any = None
    for frame in _deinterlaced(frames):
        if target is None:
            target = out.add_stream("libx264", rate=Fraction(TIME_BASE.denominator, step))
            target.width, target.height = frame.width & ~1, frame.height & ~1  # 4:2:0: even
            target.pix_fmt = "yuv420p"
            target.time_base = target.codec_context.time_base = TIME_BASE
            # A key frame every 2 s or so, for seeking (x264's default is every 250 frames).
            gop = max(1, round(2 * TIME_BASE.denominator / step))
            target.options = {"preset": "fast", "crf": "18", "g": str(gop)}
        size = (frame.width, frame.height)
        if size != (target.width, target.height) or frame.format.name != "yuv420p":
            pts = frame.pts
            frame = frame.reformat(width=target.width, height=target.height, format="yuv420p")
            frame.pts, frame.time_base = pts, TIME_BASE
        frame.pict_type = 0  # AV_PICTURE_TYPE_NONE: x264 picks frame types, not MPEG-2's
        for packet in target.encode(frame):
            out.mux(packet)
    if target is not None:
        for packet in target.encode(None):
            out.mux(packet)


def _timed(frames: Iterable[av.video.frame.VideoFrame], stamps: Stamps | None,
           times: Sequence[float], step: int) -> Iterator[av.video.frame.VideoFrame]:
    """``frames`` (presentation order, pts = packet index) with pts in :data:`TIME_BASE`:
    the container's when it had them, else the data set's times."""
    last = -(2**62)
    for rank, frame in enumerate(frames):
        index = int(frame.pts) if frame.pts is not None else rank
        if stamps is not None and 0 <= index < len(stamps):
            pts = stamps[index][0]
        elif rank < len(times):
            pts = _ticks(times[rank])
        else:
            pts = _ticks(times[-1]) + (rank - len(times) + 1) * step
        pts = last = max(pts, last + 1)  # an encoder needs strictly increasing timestamps
        frame.pts, frame.time_base = pts, TIME_BASE
        yield frame


def _deinterlaced(
    frames: Iterable[av.video.frame.VideoFrame],
) -> Iterator[av.video.frame.VideoFrame]:
    """``frames``, through ``bwdif`` (one output frame per input frame) if the first is
    interlaced; progressive material passes untouched."""
    import av
    import av.filter

    graph: av.filter.Graph | None = None
    frames = iter(frames)
    for frame in frames:
        if graph is None:
            if not frame.interlaced_frame:
                yield frame
                yield from frames
                return
            graph = av.filter.Graph()
            buffer = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                                      time_base=TIME_BASE)
            bwdif = graph.add("bwdif", "mode=send_frame:parity=auto:deint=all")
            sink = graph.add("buffersink")
            buffer.link_to(bwdif)
            bwdif.link_to(sink)
            graph.configure()
        graph.push(frame)
        yield from _drain(graph)
    if graph is not None:
        graph.push(None)
        yield from _drain(graph)


def _drain(graph: Any) -> Iterator[av.video.frame.VideoFrame]:
    import av

    while True:
        try:
            frame = graph.vpull()
        except (BlockingIOError, av.EOFError):
            return
        base = frame.time_base
        if frame.pts is not None and base is not None and base != TIME_BASE:
            frame.pts = round(frame.pts * base / TIME_BASE)  # bwdif halves the time base
        frame.time_base = TIME_BASE
        yield frame

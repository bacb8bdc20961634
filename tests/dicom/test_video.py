"""Video instances become MP4 files a browser plays (vesalius.dicom.video; PS3.5 8.2.5-8.2.8).

Every generated clip (tests/videogen.py: 48 frames, 320x240, 24 frames/s, moving content) is
converted with :func:`video_stream` and decoded back with PyAV: the frame count, the size, the
duration, and that each decoded frame is closest to the source frame of the same index (so
B-frame reordering and timestamps are right).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import UID

from tests.videogen import (
    H264_HP41,
    HEVC_MAIN,
    MPEG2_MPML,
    clip_frames,
    encode_clip,
    make_video_instance,
    replace_stream,
)
from vesalius.dicom.video import (
    VIDEO_TRANSFER_SYNTAXES,
    frame_times,
    is_video,
    stream_bytes,
    video_stream,
)
from vesalius.errors import InvalidDicom

N, ROWS, COLS, FPS = 48, 240, 320, 24


@dataclass
class Decoded:
    codec: str
    frames: list[Any]  # RGB arrays, presentation order
    times: list[float]
    width: int
    height: int
    duration: float  # seconds, as the container says


def decode(data: bytes) -> Decoded:
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.video[0]
        frames, times = [], []
        for f in c.decode(stream):
            frames.append(f.to_ndarray(format="rgb24").astype(np.float32))
            times.append(float(f.time))
        return Decoded(stream.codec_context.name, frames, times, stream.width, stream.height,
                       float(c.duration or 0) / 1e6)


@pytest.fixture(scope="module")
def clip() -> Any:
    return clip_frames(N, ROWS, COLS, seed=0).astype(np.float32)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("video")


def read(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path)


def assert_same_clip(got: Decoded, clip: Any, *, fps: float = FPS, max_mse: float = 200.0) -> None:
    assert len(got.frames) == N
    assert (got.width, got.height) == (COLS, ROWS)
    assert got.duration == pytest.approx(N / fps, abs=0.1)
    assert got.times[0] == pytest.approx(0.0, abs=1e-3)
    assert got.times == pytest.approx([k / fps for k in range(N)], abs=2e-3)
    # Each frame is nearest its own source frame: right order, not a stutter, not zeros.
    for k, frame in enumerate(got.frames):
        errors = [float(np.mean((frame - clip[j]) ** 2)) for j in (k - 1, k, k + 1) if 0 <= j < N]
        own = float(np.mean((frame - clip[k]) ** 2))
        assert own == min(errors), f"frame {k} out of order: {errors}"
        assert own < max_mse, f"frame {k}: mean squared error {own:.0f}"
    assert float(np.mean(np.abs(got.frames[0] - got.frames[-1]))) > 5.0  # it moves


# --------------------------------------------------------------------------- transfer syntaxes


def test_video_transfer_syntaxes() -> None:
    assert len(VIDEO_TRANSFER_SYNTAXES) == 16
    for ts in ("1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.100.1", "1.2.840.10008.1.2.4.101.1",
               "1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.104.1", "1.2.840.10008.1.2.4.106",
               "1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108"):
        assert is_video(ts)
        assert is_video(UID(ts))
    for ts in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90",
               "1.2.840.10008.1.2.4.107.1", "1.2.840.10008.1.2.4.109", ""):
        assert not is_video(ts)


# --------------------------------------------------------------------------- conversions


@pytest.mark.parametrize("container", [False, True], ids=["annexb", "mp4"])
def test_h264(out_dir: Path, clip: Any, container: bool) -> None:
    path = make_video_instance(out_dir, container=container)
    ds = read(path)
    assert ds.file_meta.TransferSyntaxUID == H264_HP41
    data, media = video_stream(ds)
    assert media == "video/mp4"
    assert data[4:8] == b"ftyp"
    got = decode(data)
    assert got.codec == "h264"
    assert_same_clip(got, clip)
    if container:  # the embedded file, as it is (the odd-length padding byte aside)
        assert stream_bytes(ds).startswith(data) and len(stream_bytes(ds)) - len(data) <= 1
    else:  # remuxed, not re-encoded; moov first (+faststart)
        assert data.find(b"moov") < data.find(b"mdat")
        with av.open(io.BytesIO(data)) as c:
            sizes = sorted(p.size for p in c.demux(video=0) if p.size)
        with av.open(io.BytesIO(stream_bytes(ds)), format="h264") as c:
            raw = sorted(p.size for p in c.demux(video=0) if p.size)
        assert len(sizes) == len(raw) == N
        assert sum(sizes) == pytest.approx(sum(raw), rel=0.02)  # start codes -> lengths, SPS/PPS


@pytest.mark.parametrize("container", [False, True], ids=["annexb", "mp4"])
def test_hevc(out_dir: Path, clip: Any, container: bool) -> None:
    ds = read(make_video_instance(out_dir, container=container, codec="hevc"))
    assert ds.file_meta.TransferSyntaxUID == HEVC_MAIN
    data, media = video_stream(ds)
    assert media == "video/mp4" and data[4:8] == b"ftyp"
    assert b"hvc1" in data[:4096] or b"hvc1" in data  # the sample entry browsers accept
    got = decode(data)
    assert got.codec == "hevc"
    assert_same_clip(got, clip)


@pytest.mark.parametrize("container", [False, True], ids=["elementary", "program-stream"])
def test_mpeg2_is_transcoded_to_h264(out_dir: Path, clip: Any, container: bool) -> None:
    ds = read(make_video_instance(out_dir, container=container, codec="mpeg2video"))
    assert ds.file_meta.TransferSyntaxUID == MPEG2_MPML
    data, media = video_stream(ds)
    assert media == "video/mp4" and data[4:8] == b"ftyp"
    assert data.find(b"moov") < data.find(b"mdat")
    got = decode(data)
    assert got.codec == "h264"
    assert_same_clip(got, clip)


def test_interlaced_mpeg2_is_deinterlaced(out_dir: Path, clip: Any) -> None:
    base = make_video_instance(out_dir, container=False, codec="mpeg2video")
    stream = encode_clip(clip_frames(N, ROWS, COLS, seed=0), codec="mpeg2video", container=False,
                         interlaced=True)
    data, _ = video_stream(read(replace_stream(base, stream, out=out_dir / "interlaced.dcm")))
    got = decode(data)
    assert got.codec == "h264"
    assert_same_clip(got, clip, max_mse=600.0)  # bwdif softens the speckle's vertical detail


@pytest.mark.parametrize("codec", ["h264", "hevc", "mpeg2video"])
def test_transport_stream_keeps_its_timestamps(out_dir: Path, clip: Any, codec: Any) -> None:
    base = make_video_instance(out_dir, container=False, codec=codec)
    stream = encode_clip(clip_frames(N, ROWS, COLS, seed=0), codec=codec, container=True,
                         fmt="mpegts")
    assert stream[0] == 0x47
    ds = read(replace_stream(base, stream, fragments=4, out=out_dir / f"ts-{codec}.dcm"))
    ds.FrameTime = "100"  # the container's 24 frames/s win over the data set's 10
    data, _ = video_stream(ds)
    got = decode(data)
    assert got.codec == ("hevc" if codec == "hevc" else "h264")
    assert_same_clip(got, clip)


# --------------------------------------------------------------------------- timing


def test_bare_stream_timing_comes_from_the_data_set(out_dir: Path, clip: Any) -> None:
    ds = read(make_video_instance(out_dir, container=False))
    ds.FrameTime = "100"
    got = decode(video_stream(ds)[0])
    assert_same_clip(got, clip, fps=10)

    del ds.FrameTime
    ds.CineRate = 12
    assert_same_clip(decode(video_stream(ds)[0]), clip, fps=12)

    del ds.CineRate
    del ds.RecommendedDisplayFrameRate
    assert_same_clip(decode(video_stream(ds)[0]), clip, fps=30)  # the default


def test_frame_time_vector(out_dir: Path) -> None:
    ds = read(make_video_instance(out_dir, container=False))
    steps = [0.0] + [40.0 if k % 2 else 80.0 for k in range(1, N)]
    ds.FrameTimeVector = steps
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTimeVector")
    expected = list(np.cumsum(steps) / 1000.0)
    assert frame_times(ds, N) == pytest.approx(expected)
    got = decode(video_stream(ds)[0])
    assert len(got.frames) == N
    assert got.times == pytest.approx(expected, abs=2e-3)


def test_frame_times_fallbacks() -> None:
    ds = pydicom.Dataset()
    assert frame_times(ds, 3) == pytest.approx([0, 1 / 30, 2 / 30])
    ds.RecommendedDisplayFrameRate = 5
    assert frame_times(ds, 2) == pytest.approx([0, 0.2])
    ds.FrameTimeVector = [0, 50, 50]  # used when nothing says a constant rate
    assert frame_times(ds, 3) == pytest.approx([0, 0.05, 0.1])
    ds.CineRate = 25
    assert frame_times(ds, 2) == pytest.approx([0, 0.04])
    ds.FrameTime = "33.3667"  # 29.97 frames/s: Frame Time is more precise than Cine Rate
    assert frame_times(ds, 2)[1] == pytest.approx(0.0333667)
    ds.FrameTime = "0"  # not plausible: ignored
    assert frame_times(ds, 2) == pytest.approx([0, 0.04])


# --------------------------------------------------------------------------- the stream


def test_stream_bytes_skips_the_offset_table_and_joins_fragments(out_dir: Path) -> None:
    path = make_video_instance(out_dir, container=False, fragments=5)
    ds = read(path)
    stream = stream_bytes(ds)
    assert stream.startswith(b"\x00\x00\x00\x01")
    one = read(replace_stream(path, stream, fragments=1, out=out_dir / "one.dcm"))
    assert stream_bytes(one).rstrip(b"\0") == stream.rstrip(b"\0")
    # A (non-empty) Basic Offset Table is not part of the stream.
    ds.PixelData = encapsulate([stream], fragments_per_frame=2, has_bot=True)
    assert stream_bytes(ds).rstrip(b"\0") == stream.rstrip(b"\0")


# --------------------------------------------------------------------------- refusals


def test_truncated_annexb_is_refused(out_dir: Path) -> None:
    path = make_video_instance(out_dir, container=False)
    stream = stream_bytes(read(path))
    cut = read(replace_stream(path, stream[: len(stream) // 2 + 1], out=out_dir / "cut.dcm"))
    with pytest.raises(InvalidDicom, match="truncated|damaged"):
        video_stream(cut)
    # Lenient: what decodes is served.
    data, media = video_stream(cut, strict=False)
    got = decode(data)
    assert media == "video/mp4" and 0 < len(got.frames) < N


def test_truncated_mp4_is_refused(out_dir: Path) -> None:
    path = make_video_instance(out_dir, container=True)
    stream = stream_bytes(read(path))
    for cut in (len(stream) // 2, len(stream) - 100):
        bad = read(replace_stream(path, stream[:cut], out=out_dir / "cut.mp4.dcm"))
        with pytest.raises(InvalidDicom, match="MP4 file in the Pixel Data is truncated"):
            video_stream(bad)


def test_truncated_mpeg2_is_refused(out_dir: Path) -> None:
    path = make_video_instance(out_dir, container=False, codec="mpeg2video")
    stream = stream_bytes(read(path))
    cut = read(replace_stream(path, stream[: len(stream) // 3], out=out_dir / "cut2.dcm"))
    with pytest.raises(InvalidDicom, match="truncated|damaged"):
        video_stream(cut)


@pytest.mark.parametrize("junk", [
    b"\x00\x00\x00\x01" + bytes(np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8)),
    bytes(np.random.default_rng(2).integers(0, 256, 20000, dtype=np.uint8)),
    b"\x00\x00\x00\x01\x67",
    b"\x00\x00\x00\x18ftypisom" + bytes(16),
], ids=["annexb-noise", "noise", "sps-stub", "ftyp-only"])
def test_garbage_is_refused(out_dir: Path, junk: bytes) -> None:
    path = make_video_instance(out_dir, container=False)
    bad = read(replace_stream(path, junk, out=out_dir / "junk.dcm"))
    with pytest.raises(InvalidDicom):
        video_stream(bad)
    with pytest.raises(InvalidDicom):
        video_stream(bad, strict=False)


def test_non_video_data_sets_are_refused(out_dir: Path) -> None:
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    with pytest.raises(InvalidDicom, match="not a video transfer syntax"):
        video_stream(ct)
    jpeg = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    with pytest.raises(InvalidDicom, match="not a video transfer syntax"):
        video_stream(jpeg)

    ds = read(make_video_instance(out_dir, container=False))
    native = pydicom.Dataset()
    native.file_meta = ds.file_meta
    native.PixelData = b"\x01\x02" * 100
    with pytest.raises(InvalidDicom, match="must be encapsulated"):
        video_stream(native)
    del native.PixelData
    with pytest.raises(InvalidDicom, match="no Pixel Data"):
        video_stream(native)
    del ds.file_meta
    with pytest.raises(InvalidDicom, match="Transfer Syntax UID"):
        video_stream(ds)

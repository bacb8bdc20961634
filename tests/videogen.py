"""Seeded DICOM video instances (PS3.5 8.2.5-8.2.8), encoded with PyAV's FFmpeg.

:func:`make_video_instance` writes a Video Endoscopic Image (PS3.3 A.32.5) whose Pixel Data is
one encapsulated video stream: H.264 High Profile (transfer syntax 1.2.840.10008.1.2.4.102),
HEVC Main (.107) or MPEG-2 Main Profile (.100), either bare (an Annex B byte stream / MPEG-2
video elementary stream) or in a container (an MP4 file for H.264 and HEVC, as dcm4che's
``mp42dcm`` embeds one; an MPEG-2 program stream for MPEG-2).

The clip looks like endoscopy under ultrasound-like speckle: a reddish textured wall drifting
slowly, and a bright round structure (an instrument tip) crossing the field, so consecutive
frames differ and the encoder uses P- and B-frames. The same arguments give the same bytes.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import zlib
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.tag import Tag
from pydicom.uid import UID

from tests.dicomgen import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, seeded_uid

VIDEO_ENDOSCOPIC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.1.1"
MPEG2_MPML = "1.2.840.10008.1.2.4.100"
H264_HP41 = "1.2.840.10008.1.2.4.102"
HEVC_MAIN = "1.2.840.10008.1.2.4.107"

Codec = Literal["h264", "hevc", "mpeg2video"]

#: codec -> (transfer syntax, FFmpeg encoder, Lossy Image Compression Method (PS3.3 C.7.6.1.1.5))
_CODECS: dict[str, tuple[str, str, str]] = {
    "h264": (H264_HP41, "libx264", "ISO_14496_10"),
    "hevc": (HEVC_MAIN, "libx265", "ISO_23008_2"),
    "mpeg2video": (MPEG2_MPML, "mpeg2video", "ISO_13818_2"),
}


def clip_frames(n_frames: int, rows: int, cols: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    """(n_frames, rows, cols, 3) RGB frames: speckled tissue drifting, a bright tip crossing."""
    rng = np.random.default_rng(zlib.crc32(f"video-{seed}".encode()))
    pad = n_frames + 8
    speckle = rng.rayleigh(0.6, size=(rows + pad, cols + pad)).astype(np.float32)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    folds = 0.75 + 0.25 * np.sin(xx / cols * 9.0 + np.sin(yy / rows * 5.0) * 2.0)
    vignette = np.clip(1.2 - np.hypot(xx / cols - 0.5, yy / rows - 0.5) * 1.6, 0.15, 1.0)
    out = np.empty((n_frames, rows, cols, 3), dtype=np.uint8)
    radius = min(rows, cols) * 0.12
    for f in range(n_frames):
        drift = f // 2  # the wall moves half a pixel per frame
        tissue = speckle[drift:drift + rows, f:f + cols] * folds * vignette
        t = f / max(n_frames - 1, 1)
        cx = cols * (0.15 + 0.7 * t)
        cy = rows * (0.5 + 0.25 * math.sin(2 * math.pi * t))
        tip = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))
        red = np.clip(tissue * 170 + tip * 255, 0, 255)
        green = np.clip(tissue * 80 + tip * 240, 0, 255)
        blue = np.clip(tissue * 70 + tip * 230, 0, 255)
        out[f] = np.stack([red, green, blue], axis=-1).astype(np.uint8)
    return out


def encode_clip(frames: npt.NDArray[np.uint8], *, codec: Codec = "h264", container: bool,
                fps: int = 24, fmt: str | None = None, interlaced: bool = False) -> bytes:
    """Encode RGB ``frames`` (yuv420p); bare stream or container as :func:`make_video_instance`.

    ``fmt`` names another FFmpeg muxer (``"mpegts"``: an MPEG-2 transport stream);
    ``interlaced`` codes MPEG-2 pictures as interlaced (top field first, field DCT / ME).
    """
    import av

    _, encoder, _ = _CODECS[codec]
    rows, cols = frames.shape[1:3]
    if fmt is None and codec == "mpeg2video":
        fmt = "vob" if container else "mpeg2video"
    elif fmt is None:
        fmt = "mp4" if container else codec
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        stream: Any = out.add_stream(encoder, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = cols, rows, "yuv420p"
        if codec == "h264":
            stream.options = {"preset": "fast", "profile": "high", "level": "4.1", "crf": "20",
                              "bf": "3", "g": str(2 * fps)}
        elif codec == "hevc":
            stream.options = {"preset": "fast", "crf": "24",
                              "x265-params": f"log-level=error:bframes=3:keyint={2 * fps}"}
            if container:
                stream.codec_tag = "hvc1"
        else:
            stream.bit_rate = 4_000_000
            stream.codec_context.max_b_frames = 2
            stream.codec_context.gop_size = 12
            if interlaced:
                stream.options = {"flags": "+ildct+ilme", "top": "1"}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def replace_stream(path: Path, stream: bytes, *, fragments: int = 1,
                   out: Path | None = None) -> Path:
    """Write a copy of the video instance ``path`` whose Pixel Data holds ``stream`` instead."""
    from pydicom import dcmread

    ds = dcmread(path)
    ds.PixelData = encapsulate([stream], fragments_per_frame=fragments, has_bot=False)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    target = out or path.with_name(path.stem + ".replaced.dcm")
    ds.save_as(target, enforce_file_format=True)
    return target


def make_video_instance(
    out_dir: str | os.PathLike[str],
    *,
    container: bool,
    codec: Codec = "h264",
    n_frames: int = 48,
    rows: int = 240,
    cols: int = 320,
    fps: int = 24,
    seed: int = 0,
    fragments: int = 3,
    patient_id: str = "VIDEO-1",
    patient_name: str = "Video^Vince",
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> Path:
    """Write one Video Endoscopic Image Storage instance and return its path.

    ``container=True`` embeds an MP4 file (H.264 / HEVC; moov after mdat, as cameras write it)
    or an MPEG-2 program stream; ``container=False`` the bare elementary stream. The stream is
    split over ``fragments`` fragments after an empty Basic Offset Table (PS3.5 A.4).

    The attributes PS3.5 8.2.5-8.2.8 fix for video transfer syntaxes: Samples per Pixel 3,
    Photometric Interpretation YBR_PARTIAL_420, Bits Allocated / Stored 8, High Bit 7, Pixel
    Representation 0, Planar Configuration 0, Rows / Columns of the stream, Number of Frames,
    Frame Time and Frame Increment Pointer -> Frame Time (Cine module, PS3.3 C.7.6.5), Cine Rate.
    """
    if codec not in _CODECS:
        raise ValueError(f"codec must be one of {sorted(_CODECS)}, not {codec!r}")
    if rows % 2 or cols % 2:
        raise ValueError("rows and cols must be even (4:2:0 chroma)")
    ts, _, method = _CODECS[codec]
    stream = encode_clip(clip_frames(n_frames, rows, cols, seed), codec=codec, container=container,
                         fps=fps)
    study_uid = study_uid or seeded_uid("video-study", seed)
    series_uid = series_uid or seeded_uid("video-series", seed, codec)
    sop_uid = seeded_uid("video-sop", seed, codec, container, n_frames, rows, cols, fps, fragments)

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = UID(VIDEO_ENDOSCOPIC_IMAGE_STORAGE)
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = "20240305"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = "093000"
    ds.AccessionNumber = f"VID{seed:05d}"
    ds.Modality = "ES"
    ds.Manufacturer = "Vesalius Test Data"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "COLONOSCOPY"
    ds.SeriesDescription = f"VIDEO {codec.upper()}"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.AcquisitionContextSequence = []
    # Image Pixel module, with the values PS3.5 8.2.5-8.2.8 require of a video stream.
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    ds.PlanarConfiguration = 0
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    # Multi-frame and Cine modules.
    ds.NumberOfFrames = n_frames
    ds.FrameIncrementPointer = Tag("FrameTime")
    ds.FrameTime = f"{1000.0 / fps:.4f}"
    ds.CineRate = fps
    ds.RecommendedDisplayFrameRate = fps
    ds.StartTrim = 1
    ds.StopTrim = n_frames
    ds.ActualFrameDuration = round(1000 / fps)
    # VL Image module.
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = method
    ds.BurnedInAnnotation = "NO"
    ds.PixelData = encapsulate([stream], fragments_per_frame=fragments, has_bot=False)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(ts)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{sop_uid}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def mp4_file(frames: npt.NDArray[np.uint8], fps: int = 24) -> bytes:
    """A plain H.264 MP4 file with ``+faststart`` (a reference for the browser's own decoder)."""
    import av

    rows, cols = frames.shape[1:3]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "plain.mp4")
        with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream: Any = out.add_stream("libx264", rate=Fraction(fps))
            stream.width, stream.height, stream.pix_fmt = cols, rows, "yuv420p"
            stream.options = {"preset": "fast", "profile": "high"}
            for array in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        return Path(path).read_bytes()

"""Rendered images of DICOM frames: JPEG / PNG for DICOMweb and WADO-URI.

PS3.18 8.3.5 (Rendering Query Parameters: ``window``, ``viewport``, ``quality``) and 8.7.4
(Rendered Media Types) say what a user agent may ask for; the rendering itself follows the
grayscale and colour pipelines of PS3.4 N.2:

- decode one frame (PS3.5 8 / A.4; pydicom with pylibjpeg / python-gdcm), Image Pixel module
  PS3.3 C.7.6.3: bits stored, pixel representation, planar configuration, photometric
  interpretation;
- grayscale: Modality LUT (PS3.3 C.11.1: Rescale Slope / Intercept or Modality LUT Sequence)
  -> VOI LUT (PS3.3 C.11.2: the ``window`` parameter, else Window Center / Width with VOI LUT
  Function LINEAR, LINEAR_EXACT or SIGMOID per C.11.2.1.2 / C.11.2.1.3, else VOI LUT Sequence,
  else the frame's own range) -> MONOCHROME1 inverted -> 8 bits; in enhanced multi-frame
  objects the Pixel Value Transformation and Frame VOI LUT functional groups (PS3.3
  C.7.6.16.2.9 / .10) are used when the top-level attributes are absent;
- colour: RGB as is, YBR_FULL / YBR_FULL_422 converted to RGB (PS3.3 C.7.6.3.1.2) unless the
  decoder already did, PALETTE COLOR through its lookup tables (PS3.3 C.7.9);
- then the source region and the viewport (PS3.18 8.3.5.1.3: scaled to fit, aspect kept).

Everything runs on one frame in 8-bit or float32; stored values of up to 16 bits go through
a lookup table built once per call (65,536 entries at most) instead of per-pixel arithmetic.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut, convert_color_space
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian

from vesalius.errors import InvalidDicom, NotFound, QueryError

__all__ = ["MEDIA_TYPES", "THUMBNAIL_SIZE", "RenderParams", "parse_params", "render_frame"]

#: Rendered media types this module produces (PS3.18 8.7.4, Table 8.7.4-1).
MEDIA_TYPES: Final = ("image/jpeg", "image/png")
#: VOI LUT functions (PS3.3 C.11.2.1.3), lower case, for the ``window`` parameter.
WINDOW_FUNCTIONS: Final = ("linear", "linear_exact", "sigmoid")
#: Largest viewport side accepted, in pixels.
MAX_VIEWPORT: Final = 4096
#: Default thumbnail viewport side (Orthanc and dcm4chee use 128 x 128 too).
THUMBNAIL_SIZE: Final = 128

_PIXEL_KEYWORDS: Final = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PNG_LEVEL: Final = 1  # zlib level: 4x faster than Pillow's default 6, ~15% larger files

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
Window = tuple[float, float, str]


@dataclass(frozen=True)
class RenderParams:
    """What to render (PS3.18 8.3.5.1); validated on construction, errors are QueryError.

    ``window`` is (center, width, function) with function one of :data:`WINDOW_FUNCTIONS`;
    ``viewport`` (vw, vh) is the box the image is scaled to fit, aspect ratio kept;
    ``region`` (sx, sy, sw, sh) is the source region cropped first, ``sw`` / ``sh`` None
    meaning "to the edge" and negative meaning flipped; ``upscale`` False never enlarges
    (thumbnails); ``quality`` is JPEG quality 1..100 (ignored for PNG).
    """

    window: Window | None = None
    viewport: tuple[int, int] | None = None
    quality: int = 90
    media_type: str = "image/jpeg"
    region: tuple[int, int, int | None, int | None] | None = None
    upscale: bool = True

    def __post_init__(self) -> None:
        if self.window is not None:
            _c, width, function = self.window
            if function not in WINDOW_FUNCTIONS:
                raise QueryError(f"window function {function!r} is not one of {WINDOW_FUNCTIONS}")
            if not width > 0:
                raise QueryError(f"window width must be > 0, got {width}")
        if self.viewport is not None and not all(0 < v <= MAX_VIEWPORT for v in self.viewport):
            raise QueryError(f"viewport {self.viewport} must be 1..{MAX_VIEWPORT} pixels per side")
        if not 1 <= self.quality <= 100:
            raise QueryError(f"quality must be 1..100, got {self.quality}")
        if self.media_type not in MEDIA_TYPES:
            raise QueryError(f"cannot render {self.media_type!r}; supported: {MEDIA_TYPES}")


def _number(name: str, text: str, kind: Callable[[str], float | int]) -> Any:
    try:
        value = kind(text.strip())
    except ValueError:
        raise QueryError(f"{name}: {text.strip()!r} is not a valid number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise QueryError(f"{name}: {text.strip()!r} is not a finite number")
    return value


def parse_params(query: Mapping[str, str], *, thumbnail: bool = False) -> RenderParams:
    """Parse PS3.18 8.3.5.1 query parameters into :class:`RenderParams`.

    ``window=center,width,function`` (function ``linear``, ``linear-exact`` / ``linear_exact``
    or ``sigmoid``, case-insensitive, default linear); ``viewport=vw,vh[,sx,sy,sw,sh]`` (vw or
    vh may be empty; sx..sh may be empty); ``quality=1..100``. Other keys (accept, annotation,
    charset, iccprofile...) are left to the caller. A thumbnail (PS3.18 thumbnail resources) defaults to a
    :data:`THUMBNAIL_SIZE` square viewport and is never enlarged. The media type stays
    ``image/jpeg``: the HTTP layer negotiates it and uses :func:`dataclasses.replace`.

    Raises:
        QueryError: a value is malformed or out of range; the message names the parameter.
    """
    window: Window | None = None
    if (raw := query.get("window")) is not None:
        parts = raw.split(",")
        if len(parts) not in (2, 3):
            raise QueryError(f"window must be center,width[,function], got {raw!r}")
        function = parts[2].strip().lower().replace("-", "_") if len(parts) == 3 else "linear"
        window = (
            _number("window center", parts[0], float),
            _number("window width", parts[1], float),
            function or "linear",
        )
    viewport: tuple[int, int] | None = (THUMBNAIL_SIZE, THUMBNAIL_SIZE) if thumbnail else None
    region: tuple[int, int, int | None, int | None] | None = None
    if (raw := query.get("viewport")) is not None:
        parts = raw.split(",")
        if len(parts) not in (2, 4, 6) or not (parts[0].strip() or parts[1].strip()):
            raise QueryError(f"viewport must be vw,vh[,sx,sy,sw,sh], got {raw!r}")
        vw, vh = (_number("viewport", p, int) if p.strip() else MAX_VIEWPORT for p in parts[:2])
        viewport = (vw, vh)
        if len(parts) > 2:
            s = [_number("viewport region", p, int) if p.strip() else None for p in parts[2:]]
            s += [None] * (6 - len(parts))
            if (s[0] or 0) < 0 or (s[1] or 0) < 0 or s[2] == 0 or s[3] == 0:
                raise QueryError(f"viewport region {raw!r}: sx, sy must be >= 0, sw, sh != 0")
            region = (s[0] or 0, s[1] or 0, s[2], s[3])
    quality = 90
    if (raw := query.get("quality")) is not None:
        quality = _number("quality", raw, int)
    return RenderParams(
        window=window, viewport=viewport, quality=quality, region=region, upscale=not thumbnail
    )


# -- decoding -------------------------------------------------------------------------------


def _transfer_syntax(ds: Dataset, keyword: str) -> UID:
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        return UID(meta.TransferSyntaxUID)
    if ds[keyword].is_undefined_length:
        raise InvalidDicom("encapsulated Pixel Data but no Transfer Syntax UID (0002,0010)")
    return ExplicitVRBigEndian if ds.original_encoding[1] is False else ExplicitVRLittleEndian


def _decode(ds: Dataset, frame: int) -> tuple[npt.NDArray[Any], str, bool]:
    """One frame (1-based) as an array, its photometric interpretation, little endian?"""
    keyword = next((k for k in _PIXEL_KEYWORDS if k in ds), None)
    if keyword is None:
        raise InvalidDicom("the object has no Pixel Data (7FE0,0010): only images can be rendered")
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        raise InvalidDicom(f"Number of Frames {ds.NumberOfFrames!r} is not a number") from None
    if not 1 <= frame <= frames:
        raise NotFound(f"frame {frame} does not exist: the instance has {frames} (numbered from 1)")
    tsyntax = _transfer_syntax(ds, keyword)
    try:
        view = ds.get("PhotometricInterpretation") not in ("YBR_FULL", "YBR_FULL_422")
        opts = as_pixel_options(ds, view_only=view)  # no copy of native data
        arr, props = get_decoder(tsyntax).as_array(ds, index=frame - 1, **opts)
    except Exception as exc:  # pydicom, numpy and the codec plugins raise anything
        raise InvalidDicom(f"cannot decode frame {frame} ({tsyntax.name}): {exc}") from exc
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    photometric = str(props.get("photometric_interpretation") or "MONOCHROME2").strip().upper()
    return arr, photometric, tsyntax != ExplicitVRBigEndian


# -- grayscale: Modality LUT -> VOI LUT -> 8 bits (PS3.4 N.2.1) -----------------------------


def _first(value: Any) -> float | None:
    """First value of a possibly multi-valued DS / IS element, None if absent or empty."""
    if value is None or value == "":
        return None
    if not isinstance(value, int | float | str):
        value = value[0] if len(value) else None
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _lut(item: Dataset, little: bool, signed: bool) -> tuple[int, npt.NDArray[Any], int]:
    """LUT Descriptor and Data (PS3.3 C.11.1.1): (first mapped value, entries, bits)."""
    count, first, bits = (int(v) for v in item.LUTDescriptor)
    count = count or 65536
    if signed and first > 32767:  # US or SS: the first value follows the pixel sign
        first -= 65536
    raw = item.LUTData
    if isinstance(raw, bytes | bytearray):
        dtype = np.uint8 if len(raw) == count else np.dtype("<u2" if little else ">u2")
        data = np.frombuffer(raw, dtype=dtype)[:count]
    else:
        data = np.asarray([raw] if isinstance(raw, int) else list(raw), dtype=np.int64)
    if data.size == 0:
        raise InvalidDicom("empty LUT Data (0028,3006)")
    bits = max(bits, int(data.max()).bit_length(), 1)
    return first, data, bits


def _apply_lut(values: F32, first: int, data: npt.NDArray[Any]) -> F32:
    index = np.clip(np.rint(values) - first, 0, data.size - 1).astype(np.intp)
    out: F32 = data[index].astype(np.float32)
    return out


def _window(values: F32, center: float, width: float, function: str) -> U8:
    """VOI LUT Function (PS3.3 C.11.2.1.2.1 LINEAR, C.11.2.1.3.1 SIGMOID, .3.2 LINEAR_EXACT)."""
    if function == "sigmoid":
        with np.errstate(over="ignore"):
            out = np.float32(255.0) / (1 + np.exp(np.float32(-4.0 / width) * (values - center)))
    elif function == "linear" and width <= 1:  # threshold (C.11.2.1.2.1 Note 5)
        out = np.where(values > center - 0.5, np.float32(255), np.float32(0))
    else:
        if function == "linear":
            low, scale = center - 0.5 - (width - 1) / 2, 255.0 / (width - 1)
        else:
            low, scale = center - width / 2, 255.0 / width
        out = values - np.float32(low)
        out *= np.float32(scale)
    np.clip(out, 0, 255, out=out)
    out += np.float32(0.5)
    result: U8 = out.astype(np.uint8)
    return result


def _groups(ds: Dataset, frame: int) -> list[Dataset]:
    """Functional group items that apply to ``frame``: its per-frame item, then shared."""
    out: list[Dataset] = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and len(per_frame) >= frame:
        out.append(per_frame[frame - 1])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        out.append(shared[0])
    return out


def _sources(ds: Dataset, groups: list[Dataset], macro: str) -> list[Dataset]:
    """The top-level data set, then the ``macro`` items of the frame's functional groups."""
    return [ds, *(g.get(macro)[0] for g in groups if g.get(macro))]


def _modality(values: F32, ds: Dataset, groups: list[Dataset], little: bool) -> F32:
    """Modality LUT (PS3.3 C.11.1; C.7.6.16.2.9 Pixel Value Transformation)."""
    if ds.get("ModalityLUTSequence"):
        signed = ds.get("PixelRepresentation") == 1
        first, data, _bits = _lut(ds.ModalityLUTSequence[0], little, signed)
        return _apply_lut(values, first, data)
    for src in _sources(ds, groups, "PixelValueTransformationSequence"):
        slope, intercept = _first(src.get("RescaleSlope")), _first(src.get("RescaleIntercept"))
        if slope is not None or intercept is not None:
            if slope not in (None, 1.0):
                values = values * np.float32(slope)
            if intercept:
                values = values + np.float32(intercept)
            return values
    return values


def _voi(
    values: F32,
    ds: Dataset,
    groups: list[Dataset],
    window: Window | None,
    little: bool,
    bounds: Callable[[], tuple[float, float]],
) -> U8:
    """VOI LUT (PS3.3 C.11.2; C.7.6.16.2.10 Frame VOI LUT): window, LUT, else full range."""
    if window is not None:
        return _window(values, *window)
    voi_items = _sources(ds, groups, "FrameVOILUTSequence")
    for src in voi_items:
        center, width = _first(src.get("WindowCenter")), _first(src.get("WindowWidth"))
        if center is not None and width is not None and width > 0:
            function = str(src.get("VOILUTFunction") or "LINEAR").strip().lower()
            return _window(
                values, center, width, function if function in WINDOW_FUNCTIONS else "linear"
            )
    for src in voi_items:
        if src.get("VOILUTSequence"):
            try:
                signed = float(values.min()) < 0  # SS or US first value (C.11.2.1.1)
                first, data, bits = _lut(src.VOILUTSequence[0], little, signed)
            except (AttributeError, TypeError, ValueError, InvalidDicom):
                break  # a malformed LUT: show the full range rather than fail
            out = _apply_lut(values, first, data)
            out *= np.float32(255.0 / ((1 << bits) - 1))
            return (out + np.float32(0.5)).astype(np.uint8)
    low, high = bounds()
    return _window(values, (low + high) / 2, max(high - low, 1e-6), "linear_exact")


def _grayscale(
    arr: npt.NDArray[Any], ds: Dataset, frame: int, window: Window | None, little: bool
) -> U8:
    groups = _groups(ds, frame)
    if arr.dtype.kind in "iu" and arr.dtype.itemsize <= 2:
        # Evaluate the pipeline once per possible stored value, then index: O(2**bits).
        unsigned = np.dtype(f"u{arr.dtype.itemsize}")
        index = np.ascontiguousarray(arr).view(unsigned)
        stored = np.arange(1 << (8 * arr.dtype.itemsize), dtype=unsigned).view(arr.dtype)
        values = _modality(stored.astype(np.float32), ds, groups, little)

        def bounds() -> tuple[float, float]:
            present = values[(stored >= arr.min()) & (stored <= arr.max())]
            return float(present.min()), float(present.max())

        lut = _voi(values, ds, groups, window, little, bounds)
        gray: U8 = np.take(lut, index)
    else:  # 32-bit integers, float / double float pixel data
        values = np.nan_to_num(_modality(arr.astype(np.float32), ds, groups, little), copy=False)
        gray = _voi(
            values, ds, groups, window, little, lambda: (float(values.min()), float(values.max()))
        )
    return gray


# -- colour ---------------------------------------------------------------------------------


def _colour(arr: npt.NDArray[Any], photometric: str, ds: Dataset) -> U8:
    """RGB, YBR_FULL(_422) (PS3.3 C.7.6.3.1.2) or PALETTE COLOR (C.7.9) to 8-bit RGB."""
    if photometric == "PALETTE COLOR":
        try:
            rgb = apply_color_lut(arr, ds)[..., :3]
        except Exception as exc:
            raise InvalidDicom(f"cannot apply the Palette Color Lookup Tables: {exc}") from exc
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        if rgb.dtype.itemsize > 1 and (bits > 8 or int(rgb.max()) > 255):
            return (rgb >> 8).astype(np.uint8)  # 16-bit entries
        return rgb.astype(np.uint8)
    if arr.ndim != 3:
        raise InvalidDicom(f"{photometric} pixel data with one sample per pixel")
    if photometric in ("YBR_FULL", "YBR_FULL_422"):  # not converted by the decoder
        arr = convert_color_space(arr, "YBR_FULL", "RGB")
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        return arr
    bits = int(ds.get("BitsStored") or 8 * arr.dtype.itemsize)
    arr = np.clip(arr, 0, (1 << bits) - 1)
    return (arr >> max(bits - 8, 0)).astype(np.uint8)


# -- geometry and encoding ------------------------------------------------------------------


def _geometry(image: Image.Image, params: RenderParams) -> Image.Image:
    """Source region, then viewport scaling with the aspect ratio kept (PS3.18 8.3.5.1.3)."""
    if params.region is not None:
        sx, sy, sw, sh = params.region
        sw = image.width - sx if sw is None else sw
        sh = image.height - sy if sh is None else sh
        x0, x1 = sorted((sx, sx + sw))
        y0, y1 = sorted((sy, sy + sh))
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, image.width), min(y1, image.height)
        if x1 <= x0 or y1 <= y0:
            raise QueryError(
                f"viewport region {params.region} is outside the {image.width}x{image.height} image"
            )
        image = image.crop((x0, y0, x1, y1))
        if sw < 0:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if sh < 0:
            image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    if params.viewport is not None:
        vw, vh = params.viewport
        scale = min(vw / image.width, vh / image.height)
        if not params.upscale:
            scale = min(scale, 1.0)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        if size != image.size:
            # Pillow's BILINEAR is antialiased when shrinking (its support grows with the
            # factor); reducing_gap box-reduces first for large factors: ~3x LANCZOS speed.
            image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return image


def render_frame(ds: Dataset, frame: int, params: RenderParams) -> bytes:
    """Render ``frame`` (1-based) of ``ds`` as JPEG or PNG bytes (PS3.18 8.3.5, 8.7.4).

    Grayscale frames go through the Modality LUT, the VOI LUT (``params.window`` first) and
    the MONOCHROME1 inversion (PS3.3 C.11, C.7.6.3.1.2); colour frames are shown as RGB; the
    window is ignored for colour. PNG output is lossless 8-bit, JPEG uses ``params.quality``.

    Raises:
        NotFound: ``frame`` is not between 1 and Number of Frames.
        InvalidDicom: no pixel data, or pixel data that cannot be decoded.
        QueryError: the viewport source region lies outside the image.
    """
    arr, photometric, little = _decode(ds, frame)
    try:
        if arr.ndim == 3 or photometric == "PALETTE COLOR":
            pixels = _colour(arr, photometric, ds)
        else:
            pixels = _grayscale(arr, ds, frame, params.window, little)
            if photometric == "MONOCHROME1":
                np.subtract(255, pixels, out=pixels)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        # malformed LUT descriptors / data, functional groups, palette tables...
        raise InvalidDicom(f"cannot render frame {frame} ({photometric}): {exc}") from exc
    image = _geometry(Image.fromarray(pixels), params)
    buffer = io.BytesIO()
    if params.media_type == "image/png":
        image.save(buffer, format="PNG", compress_level=_PNG_LEVEL)
    else:
        image.save(buffer, format="JPEG", quality=params.quality)
    return buffer.getvalue()

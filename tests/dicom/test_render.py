"""Rendered frames (PS3.18 8.3.5): real pixel values checked against numpy references.

Exact comparisons use PNG output (lossless 8-bit); references follow PS3.3 C.11.1 (rescale),
C.11.2.1.2.1 (LINEAR), C.11.2.1.3 (SIGMOID, LINEAR_EXACT) and pydicom's own decoding and
colour conversion.
"""

from __future__ import annotations

import copy
import functools
import io
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, convert_color_space
from pydicom.pixels.utils import pixel_array
from pydicom.sequence import Sequence
from pydicom.uid import JPEGBaseline8Bit

from tests.dicomgen import pydicom_test_file
from vesalius.dicom.render import (
    THUMBNAIL_SIZE,
    RenderParams,
    parse_params,
    render_frame,
)
from vesalius.errors import InvalidDicom, NotFound, QueryError

PNG = RenderParams(media_type="image/png")
Array = npt.NDArray[Any]


@functools.cache
def _cached(name: str) -> Dataset:
    try:
        path = pydicom_test_file(name)
    except FileNotFoundError:
        pytest.skip(f"{name} is not installed locally")
    return dcmread(path)


def load(name: str) -> Dataset:
    """A fresh copy of a real test file (tests may change it)."""
    return copy.deepcopy(_cached(name))


def png(ds: Dataset, frame: int = 1, **params: Any) -> Array:
    out = render_frame(ds, frame, RenderParams(media_type="image/png", **params))
    assert out[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(out)))


def linear(x: Array, center: float, width: float) -> Array:
    """PS3.3 C.11.2.1.2.1 with ymin 0, ymax 255, float64, rounded half up."""
    x = x.astype(np.float64)
    y = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255
    y = np.where(x <= center - 0.5 - (width - 1) / 2, 0, y)
    y = np.where(x > center - 0.5 + (width - 1) / 2, 255, y)
    return np.floor(y + 0.5).astype(np.uint8)


def assert_close(got: Array, want: Array, *, exact_share: float = 0.999) -> None:
    """At most one grey level off (float32 vs float64 rounding), almost always exact."""
    assert got.shape == want.shape
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert int(diff.max()) <= 1
    assert float((diff == 0).mean()) >= exact_share


def hu(ds: Dataset) -> Array:
    return ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


# -- grayscale pipeline ---------------------------------------------------------------------


def test_ct_window_param_matches_linear_formula() -> None:
    ds = load("CT_small.dcm")
    got = png(ds, window=(40.0, 400.0, "linear"))
    want = linear(hu(ds), 40, 400)
    assert want.std() > 20  # a real image, not a flat one
    assert_close(got, want, exact_share=1.0)


def test_dataset_window_and_voi_lut_function() -> None:
    ds = load("693_UNCR.dcm")  # CT 512x512, WindowCenter 40 / WindowWidth 100
    assert_close(png(ds), linear(hu(ds), 40, 100))
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = [50, 400], [350, 1500], "LINEAR_EXACT"
    x = hu(ds)
    want = np.floor(np.clip(((x - 50) / 350 + 0.5) * 255, 0, 255) + 0.5)
    assert_close(png(ds), want.astype(np.uint8))  # first of several values
    ds.VOILUTFunction = "SIGMOID"
    want = np.floor(255 / (1 + np.exp(-4 * (x - 50) / 350)) + 0.5)
    assert_close(png(ds), want.astype(np.uint8))
    # the query parameter wins over the data set
    assert_close(png(ds, window=(-600.0, 1500.0, "linear")), linear(x, -600, 1500))


def test_no_window_uses_the_frame_range() -> None:
    ds = load("CT_small.dcm")
    x = hu(ds)
    got = png(ds)
    assert got.min() == 0 and got.max() == 255
    want = np.floor((x - x.min()) / (x.max() - x.min()) * 255 + 0.5).astype(np.uint8)
    assert_close(got, want)


def test_voi_lut_sequence() -> None:
    ds = load("CT_small.dcm")
    item = Dataset()
    item.LUTDescriptor = [4096, -1024, 12]  # first mapped value -1024 HU
    curve = np.sqrt(np.linspace(0, 1, 4096)) * 4095  # a non-linear curve
    item["LUTDescriptor"].VR = "SS"
    item.LUTData = [int(v) for v in curve]
    item["LUTData"].VR = "US"
    ds.VOILUTSequence = Sequence([item])
    x = np.clip(hu(ds) + 1024, 0, 4095).astype(np.intp)
    want = np.floor(np.asarray(item.LUTData)[x] * 255 / 4095 + 0.5).astype(np.uint8)
    assert_close(png(ds), want)


def test_modality_lut_sequence() -> None:
    ds = load("MR_small.dcm")
    raw = ds.pixel_array
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = [int(v) for v in (np.arange(4096) ** 1.5 / 4096**0.5)]  # non-linear
    item.ModalityLUTType = "OD"
    ds.ModalityLUTSequence = Sequence([item])
    del ds.WindowCenter, ds.WindowWidth
    x = np.asarray(item.LUTData)[np.clip(raw, 0, 4095)].astype(np.float64)
    want = np.floor((x - x.min()) / (x.max() - x.min()) * 255 + 0.5).astype(np.uint8)
    assert_close(png(ds), want)


def test_monochrome1_is_inverted() -> None:
    ds = load("CT_small.dcm")
    normal = png(ds, window=(40.0, 400.0, "linear"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    assert np.array_equal(png(ds, window=(40.0, 400.0, "linear")), 255 - normal)


def test_real_monochrome1_radiograph() -> None:
    ds = load("RG1_UNCR.dcm")  # CR, MONOCHROME1, 15 bits, window 15000 / 30000
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    got = png(ds)
    assert_close(got, 255 - linear(ds.pixel_array, 15000, 30000))
    assert got.shape == (ds.Rows, ds.Columns)


def test_enhanced_ct_functional_groups() -> None:
    ds = load("eCT_Supplemental.dcm")  # shared: rescale -1024, window 49 / 102
    assert "RescaleIntercept" not in ds and "WindowCenter" not in ds
    stored = pixel_array(ds, index=1)
    assert_close(png(ds, 2), linear(stored - 1024.0, 49, 102))
    # a per-frame Frame VOI LUT overrides the shared one for that frame only
    voi = Dataset()
    voi.WindowCenter, voi.WindowWidth = 400, 2000
    ds.PerFrameFunctionalGroupsSequence[1].FrameVOILUTSequence = Sequence([voi])
    assert_close(png(ds, 2), linear(stored - 1024.0, 400, 2000))
    assert_close(png(ds, 1), linear(pixel_array(ds, index=0) - 1024.0, 49, 102))


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
    ],
)
def test_lossless_variants_render_like_the_native_original(name: str) -> None:
    want = png(load("MR_small.dcm"))
    assert_close(want, linear(load("MR_small.dcm").pixel_array, 600, 1600), exact_share=1.0)
    assert np.array_equal(png(load(name)), want)


def test_compressed_ct_frame_and_no_file_meta() -> None:
    native = load("693_UNCR.dcm")
    assert np.array_equal(png(load("693_J2KR.dcm")), png(native))
    del native.file_meta  # in-memory data set: native little endian assumed
    assert np.array_equal(png(native), png(load("693_UNCR.dcm")))


def test_32_bit_dose_grid_uses_float_path() -> None:
    ds = load("rtdose.dcm")  # 15 frames 10x10, uint32
    x = pixel_array(ds, index=4).astype(np.float64)
    want = np.floor((x - x.min()) / (x.max() - x.min()) * 255 + 0.5).astype(np.uint8)
    assert_close(png(ds, 5), want, exact_share=0.98)


# -- colour ---------------------------------------------------------------------------------


def test_ybr_multiframe_jpeg_is_rgb_without_double_conversion() -> None:
    ds = load("examples_ybr_color.dcm")  # YBR_FULL_422 JPEG baseline, 30 frames
    got = png(ds, 12)
    ybr = pixel_array(ds, index=11, raw=True)
    want = convert_color_space(ybr, "YBR_FULL", "RGB")
    assert got.shape == (ds.Rows, ds.Columns, 3)
    assert float(np.abs(got.astype(int) - want.astype(int)).mean()) < 1.0
    assert not np.array_equal(got, png(ds, 1))  # another frame, another picture


def test_native_ybr_full_is_converted() -> None:
    ds = load("examples_rgb_color.dcm")
    rgb = ds.pixel_array
    ds.PixelData = convert_color_space(rgb, "RGB", "YBR_FULL").tobytes()
    ds.PhotometricInterpretation = "YBR_FULL"
    got = png(ds)
    assert int(np.abs(got.astype(int) - rgb.astype(int)).max()) <= 3


def test_jpeg_rgb_matches_pydicom() -> None:
    ds = load("SC_rgb_jpeg_dcmtk.dcm")  # YBR_FULL in the header, JPEG baseline
    got = png(ds)
    assert np.array_equal(got, ds.pixel_array)
    assert got[5, 50].tolist() == pytest.approx([255, 0, 0], abs=3)  # top stripe is red


def test_planar_configuration_one() -> None:
    ds = load("examples_rgb_color.dcm")
    want = png(ds)
    ds.PixelData = np.ascontiguousarray(ds.pixel_array.transpose(2, 0, 1)).tobytes()
    ds.PlanarConfiguration = 1
    assert np.array_equal(png(ds), want)


def test_palette_color() -> None:
    ds = load("examples_palette.dcm")
    got = png(ds)
    rgb = apply_color_lut(ds.pixel_array, ds)
    want = (rgb >> 8).astype(np.uint8) if rgb.max() > 255 else rgb.astype(np.uint8)
    assert got.shape == (ds.Rows, ds.Columns, 3)
    assert np.array_equal(got, want)
    assert np.any(got[..., 0] != got[..., 2])  # colour, not grey


def test_window_is_ignored_for_colour() -> None:
    ds = load("examples_rgb_color.dcm")
    assert np.array_equal(png(ds, window=(10.0, 20.0, "linear")), png(ds))


# -- errors ---------------------------------------------------------------------------------


def test_frame_out_of_range() -> None:
    ds = load("examples_ybr_color.dcm")
    for frame in (0, 31, -1):
        with pytest.raises(NotFound, match="30"):
            render_frame(ds, frame, PNG)
    with pytest.raises(NotFound):
        render_frame(load("CT_small.dcm"), 2, PNG)


def test_no_pixel_data() -> None:
    with pytest.raises(InvalidDicom, match="Pixel Data"):
        render_frame(load("rtplan.dcm"), 1, PNG)
    ds = load("CT_small.dcm")
    del ds.PixelData
    with pytest.raises(InvalidDicom, match="Pixel Data"):
        render_frame(ds, 1, PNG)


def test_undecodable_pixel_data() -> None:
    ds = load("CT_small.dcm")
    ds.PixelData = ds.PixelData[:1000]  # truncated
    with pytest.raises(InvalidDicom, match="cannot decode frame 1"):
        render_frame(ds, 1, PNG)
    jpeg = load("SC_rgb_jpeg_dcmtk.dcm")
    jpeg.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    jpeg.PixelData = jpeg.PixelData[:200] + b"\x00" * 200 + jpeg.PixelData[400:]  # corrupt
    try:
        render_frame(jpeg, 1, PNG)  # a forgiving codec may still produce an image
    except InvalidDicom as exc:
        assert "cannot decode" in str(exc)


def test_malformed_luts() -> None:
    ds = load("MR_small.dcm")
    item = Dataset()
    item.LUTData = [1, 2, 3]  # no LUT Descriptor
    ds.ModalityLUTSequence = Sequence([item])
    with pytest.raises(InvalidDicom, match="cannot render frame 1"):
        render_frame(ds, 1, PNG)
    ds = load("CT_small.dcm")
    ds.VOILUTSequence = Sequence([item])  # a broken VOI LUT: the frame's range is shown
    assert np.array_equal(png(ds), png(load("CT_small.dcm")))


# -- geometry, quality, media types ---------------------------------------------------------


def test_viewport_keeps_aspect_ratio() -> None:
    ds = load("JPGExtended.dcm")  # 256 wide, 1024 high
    assert png(ds, viewport=(512, 512)).shape == (512, 128)
    assert png(ds, viewport=(64, 4096)).shape == (256, 64)
    ct = load("CT_small.dcm")  # rendered images may be enlarged to fit
    assert png(ct, viewport=(300, 200)).shape == (200, 200)


def test_thumbnail_defaults() -> None:
    params = parse_params({}, thumbnail=True)
    assert params.viewport == (THUMBNAIL_SIZE, THUMBNAIL_SIZE) and not params.upscale
    out = Image.open(io.BytesIO(render_frame(load("693_UNCR.dcm"), 1, params)))
    assert out.format == "JPEG" and out.size == (128, 128)
    tall = Image.open(io.BytesIO(render_frame(load("JPGExtended.dcm"), 1, params)))
    assert tall.size == (32, 128)
    small = Image.open(io.BytesIO(render_frame(load("MR_small.dcm"), 1, params)))
    assert small.size == (64, 64)  # never enlarged


def test_viewport_source_region_and_flip() -> None:
    ds = load("CT_small.dcm")
    full = png(ds, window=(40.0, 400.0, "linear"))
    params = replace(
        parse_params({"viewport": "64,64,10,20,64,64", "window": "40,400"}), media_type="image/png"
    )
    out = np.asarray(Image.open(io.BytesIO(render_frame(ds, 1, params))))
    assert np.array_equal(out, full[20:84, 10:74])
    flipped = png(ds, window=(40.0, 400.0, "linear"), region=(64, 0, -64, None))
    assert np.array_equal(flipped, full[:, :64][:, ::-1])
    with pytest.raises(QueryError, match="outside"):
        png(ds, region=(500, 500, 10, 10))


def test_jpeg_quality_changes_size() -> None:
    ds = load("693_UNCR.dcm")
    low = render_frame(ds, 1, RenderParams(quality=10))
    high = render_frame(ds, 1, RenderParams(quality=95))
    assert low[:2] == b"\xff\xd8" and high[:2] == b"\xff\xd8"
    assert len(low) * 2 < len(high)
    decoded = np.asarray(Image.open(io.BytesIO(high)))
    assert float(np.abs(decoded.astype(int) - png(ds).astype(int)).mean()) < 2.0


# -- parse_params ---------------------------------------------------------------------------


def test_parse_params_values() -> None:
    assert parse_params({}) == RenderParams()
    p = parse_params({"window": "40,400,linear-exact", "viewport": "512,256", "quality": "75"})
    assert p.window == (40.0, 400.0, "linear_exact")
    assert p.viewport == (512, 256) and p.quality == 75 and p.region is None
    assert parse_params({"window": "-600,1500"}).window == (-600.0, 1500.0, "linear")
    assert parse_params({"window": "1,2,SIGMOID"}).window == (1.0, 2.0, "sigmoid")
    assert parse_params({"viewport": ",256"}).viewport == (4096, 256)
    assert parse_params({"viewport": "100,100,5,6,,"}).region == (5, 6, None, None)
    assert parse_params({"viewport": "100,100,5,6,-20,30"}).region == (5, 6, -20, 30)
    assert parse_params({"viewport": "64,64"}, thumbnail=True).viewport == (64, 64)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"window": "abc,400"}, "window center"),
        ({"window": "40"}, "center,width"),
        ({"window": "40,0"}, "width must be > 0"),
        ({"window": "40,-5,linear"}, "width must be > 0"),
        ({"window": "40,400,gamma"}, "window function"),
        ({"window": "nan,400"}, "finite"),
        ({"quality": "0"}, "quality must be 1..100"),
        ({"quality": "101"}, "quality must be 1..100"),
        ({"quality": "high"}, "quality"),
        ({"viewport": "5000,100"}, "viewport"),
        ({"viewport": "0,100"}, "viewport"),
        ({"viewport": "100"}, "vw,vh"),
        ({"viewport": "100,x"}, "viewport"),
        ({"viewport": ","}, "vw,vh"),
        ({"viewport": "10,10,1,2,0,5"}, "region"),
        ({"viewport": "10,10,-1,2,5,5"}, "region"),
    ],
)
def test_parse_params_errors(query: dict[str, str], message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_params(query)


def test_render_params_validate_in_constructor() -> None:
    with pytest.raises(QueryError, match="image/gif"):
        RenderParams(media_type="image/gif")
    with pytest.raises(QueryError):
        RenderParams(quality=0)

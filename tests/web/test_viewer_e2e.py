"""OHIF 3.13 end to end: headless Chromium against the whole app over real data.

One uvicorn (127.0.0.1, free port) serves ``create_app`` (DICOMweb + the OHIF build) over an
archive holding a 30-slice 128x128 CT series; one browser context is shared by the module, so
every request any page makes is recorded, in the browser and on the server. The tests:

(a) the study list shows the stored study (the patient's name);
(b) ``/viewer?StudyInstanceUIDs=...`` draws the first slice: the viewport is not blank;
(c) ``&hangingProtocolId=mpr`` gives the MPR layout: three viewports, none blank;
(d) a Length measurement drawn with the mouse and saved through the measurement panel
    ("Create SR" -> "Save") is STOW-RSed, then found by QIDO as an SR series whose document
    holds the length in mm, on one of our CT instances;
(e) nothing was requested from any host but ours, and no /dicom-web request got a 4xx/5xx.

Needs Debian's Chromium and the OHIF build (``make viewer``): without them the module skips,
except with ``CI=true``, where that fails. Run with ``-s`` to see the slowest DICOMweb answers.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image

from tests.conftest import make_settings
from tests.dicomgen import make_ct_series
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, AsAdmin, Recorder, live_server
from vesalius.archive import Archive, open_archive
from vesalius.web.app import create_app
from vesalius.web.viewer import default_ohif_dir

TIMEOUT_MS = 30_000
PATIENT_NAME = "Viewer^Vera"
SHOWN_NAME = "Viewer, Vera"  # as OHIF's study list writes it
N_SLICES = 30
ACCESSION = "ACC000021"  # make_ct_series' default for seed 21
LENGTH_UNITS = "mm"


def _problem() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} missing (apt-get install chromium, or make sysdeps)"
    if default_ohif_dir() is None:
        return "OHIF build missing (make viewer)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is missing"
    return None


@pytest.fixture(scope="module", autouse=True)
def _needs_browser_and_viewer() -> None:
    problem = _problem()
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI needs the viewer end-to-end test: {problem}")
        pytest.skip(problem)


# --------------------------------------------------------------------------- server + data


@dataclass
class Site:
    base: str
    archive: Archive
    recorder: Recorder
    study_uid: str
    series_uid: str
    sop_uids: list[str]
    pixel_spacing: tuple[float, float]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("e2e")
    files = make_ct_series(root / "ct", n_slices=N_SLICES, rows=128, cols=128, seed=21, slice_thickness=5.0,
                           patient_name=PATIENT_NAME, patient_id="E2E-VIEWER")
    archive = open_archive(make_settings(root))
    try:
        for f in files:
            assert archive.store_bytes(f.read_bytes(), source_ae="E2E").ok
        first = pydicom.dcmread(files[0], stop_before_pixels=True)
        recorder = Recorder(AsAdmin(create_app(archive), archive))
        with live_server(recorder) as base:
            yield Site(base, archive, recorder, str(first.StudyInstanceUID), str(first.SeriesInstanceUID),
                       [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files],
                       (float(first.PixelSpacing[0]), float(first.PixelSpacing[1])))
    finally:
        archive.close()


# --------------------------------------------------------------------------- browser


@dataclass
class Traffic:
    """Everything the browser asked for in this module, and how long each answer took."""

    requests: list[str] = field(default_factory=list)
    responses: list[tuple[int, str, str]] = field(default_factory=list)  # status, method, url
    failed: list[str] = field(default_factory=list)
    timings: list[tuple[float, str]] = field(default_factory=list)  # ms, url
    page_errors: list[str] = field(default_factory=list)

    def on_finished(self, request: Any) -> None:
        t = request.timing
        if t.get("responseEnd", -1) >= 0:
            self.timings.append((t["responseEnd"], request.url))


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture(scope="module")
def context(traffic: Traffic) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1400, "height": 900})
            ctx.set_default_timeout(TIMEOUT_MS)
            ctx.on("request", lambda r: traffic.requests.append(r.url))  # pages and workers alike
            ctx.on("response", lambda r: traffic.responses.append((r.status, r.request.method, r.url)))
            ctx.on("requestfailed", lambda r: traffic.failed.append(f"{r.url} {r.failure}"))
            ctx.on("requestfinished", traffic.on_finished)
            yield ctx
        finally:
            browser.close()


@pytest.fixture
def page(context: Any, traffic: Traffic) -> Iterator[Any]:
    pg = context.new_page()
    pg.on("pageerror", lambda e: traffic.page_errors.append(str(e)))
    try:
        yield pg
    finally:
        pg.close()


def painted(png: bytes) -> tuple[float, float]:
    """(std-dev, mean) of the grey levels of the middle half of a screenshot: the overlays
    (dates, W/L, orientation letters) sit at the edges, so a blank viewport scores ~0 here."""
    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)
    h, w = grey.shape
    middle = grey[h // 4: 3 * h // 4, w // 4: 3 * w // 4]
    return float(middle.std()), float(middle.mean())


def wait_painted(locator: Any, timeout_s: float = 30.0, std: float = 10.0) -> tuple[float, float]:
    """Poll a viewport element's screenshot until it shows an image; return its score."""
    deadline = time.monotonic() + timeout_s
    score = (0.0, 0.0)
    while time.monotonic() < deadline:
        score = painted(locator.screenshot())
        if score[0] > std and score[1] > 2:
            return score
        time.sleep(0.25)
    raise AssertionError(f"viewport still blank after {timeout_s} s (std, mean) = {score}")


def open_viewer(page: Any, site: Site, extra: str = "") -> None:
    response = page.goto(f"{site.base}/viewer?StudyInstanceUIDs={site.study_uid}{extra}")
    assert response is not None and response.status == 200
    page.locator('[data-cy="viewport-pane"] canvas').first.wait_for()


# --------------------------------------------------------------------------- (a) - (d)


def test_a_study_list_shows_the_stored_study(site: Site, page: Any) -> None:
    response = page.goto(site.base + "/")
    assert response is not None and response.status == 200
    page.get_by_text(SHOWN_NAME).first.wait_for()
    assert page.get_by_text("CT THORAX").first.is_visible()
    assert page.get_by_text(ACCESSION).first.is_visible()


def test_b_viewer_draws_the_first_image(site: Site, page: Any) -> None:
    open_viewer(page, site)
    pane = page.locator('[data-cy="viewport-pane"]')
    assert pane.count() == 1
    std, mean = wait_painted(pane.first)
    assert std > 10 and mean > 2
    page.get_by_text(f"(1/{N_SLICES})").first.wait_for()  # instance 1 of 30 is on screen
    # The frames came from our WADO-RS frames resource.
    frames = [s for s in site.recorder.seen if s.path.startswith("/dicom-web/") and "/frames/" in s.path]
    assert frames and all(s.status == 200 for s in frames)


def test_c_mpr_layout_shows_three_views(site: Site, page: Any) -> None:
    open_viewer(page, site, "&hangingProtocolId=mpr")
    panes = page.locator('[data-cy="viewport-pane"]')
    deadline = time.monotonic() + 30
    while panes.count() != 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert panes.count() == 3
    scores = [wait_painted(panes.nth(i)) for i in range(3)]
    assert all(s[0] > 10 for s in scores), scores


def _items(ds: Any) -> Iterator[Any]:
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _items(item)


def test_d_length_measurement_saved_as_sr(site: Site, page: Any) -> None:
    open_viewer(page, site)
    pane = page.locator('[data-cy="viewport-pane"]').first
    wait_painted(pane)
    page.locator('[data-cy="MeasurementTools-split-button-primary"]').click()  # Length
    box = pane.bounding_box()
    assert box is not None
    x0, y0 = box["x"] + box["width"] / 2 - 150, box["y"] + box["height"] / 2 - 50
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(x0 + 30 * i, y0 + 10 * i)
    page.mouse.up()
    # Longitudinal mode asks whether to track measurements of this series.
    page.get_by_role("button", name="Yes", exact=True).click()
    page.locator('[data-cy="trackedMeasurements-btn"]').click()
    page.get_by_text("Measurements (1)").first.wait_for()
    page.get_by_role("button", name="Create SR").click()
    page.get_by_placeholder("Report name").fill("E2E length report")
    with page.expect_response(lambda r: r.request.method == "POST" and "/dicom-web/studies" in r.url) as stow:
        page.get_by_role("button", name="Save", exact=True).click()
    assert stow.value.status == 200, stow.value.text()[:500]

    with httpx.Client(base_url=site.base + "/dicom-web", timeout=30) as http:
        r = http.get(f"/studies/{site.study_uid}/series", params={"Modality": "SR"})
        assert r.status_code == 200
        series = r.json()
        assert len(series) == 1 and series[0]["0008103E"]["Value"] == ["E2E length report"]
        sr_series = series[0]["0020000E"]["Value"][0]
        r = http.get(f"/studies/{site.study_uid}/series/{sr_series}/instances")
        assert r.status_code == 200 and len(r.json()) == 1
        sop = r.json()[0]["00080018"]["Value"][0]
        r = http.get(f"/studies/{site.study_uid}/series/{sr_series}/instances/{sop}",
                     headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
        assert r.status_code == 200
        boundary = r.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"').encode()
        part = r.content.split(b"--" + boundary)[1]
        sr = pydicom.dcmread(io.BytesIO(part.split(b"\r\n\r\n", 1)[1][:-2]))

    assert sr.Modality == "SR" and sr.StudyInstanceUID == site.study_uid
    lengths = [item for item in _items(sr) if item.ValueType == "NUM"
               and item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == LENGTH_UNITS]
    assert len(lengths) == 1, sr
    measured = float(lengths[0].MeasuredValueSequence[0].NumericValue)
    scoords = [item for item in _items(sr) if item.ValueType == "SCOORD"]
    assert scoords and scoords[0].GraphicType == "POLYLINE"
    refs = [str(ref.ReferencedSOPInstanceUID) for item in scoords for ref in item.get("ContentSequence", [])
            if "ReferencedSOPInstanceUID" in ref]
    refs += [str(ref.ReferencedSOPInstanceUID) for item in _items(sr)
             for ref in item.get("ReferencedSOPSequence", [])]
    assert refs and set(refs) <= set(site.sop_uids)
    # The length the SR states is the one its end points (image pixels) span.
    x1, y1, x2, y2 = (float(v) for v in scoords[0].GraphicData[:4])
    row_mm, col_mm = site.pixel_spacing
    assert measured == pytest.approx(np.hypot((x2 - x1) * col_mm, (y2 - y1) * row_mm), rel=0.02)
    assert 50 < measured < 300  # a 300 x 100 screen-pixel drag over a 360 mm field of view


# --------------------------------------------------------------------------- (e)


def test_e_only_our_origin_and_no_dicomweb_errors(site: Site, page: Any, traffic: Traffic) -> None:
    if not any("/dicom-web/" in u for u in traffic.requests):  # run alone: make some traffic first
        open_viewer(page, site)
        wait_painted(page.locator('[data-cy="viewport-pane"]').first)
    page.wait_for_timeout(500)
    origin = urlsplit(site.base)
    foreign = [u for u in traffic.requests if urlsplit(u).scheme not in ("data", "blob")
               and (urlsplit(u).scheme, urlsplit(u).netloc) != (origin.scheme, origin.netloc)]
    assert foreign == []
    errors = [(status, method, url) for status, method, url in traffic.responses
              if status >= 400 and urlsplit(url).path.startswith(("/dicom-web", "/wado"))]
    assert errors == []
    server_errors = [(s.status, s.method, s.path) for s in site.recorder.seen if s.status >= 400]
    assert server_errors == []
    assert [f for f in traffic.failed if "/dicom-web" in f] == []
    assert traffic.page_errors == []
    _report_slowest(site, traffic)


def _report_slowest(site: Site, traffic: Traffic) -> None:
    """Print the slowest DICOMweb answers (server side) and browser-side times per kind (-s)."""
    kinds: dict[str, list[float]] = {}
    for s in site.recorder.seen:
        if not s.path.startswith("/dicom-web"):
            continue
        if "/frames/" in s.path:
            kind = "frames"
        elif s.path.endswith("/metadata"):
            kind = "metadata"
        elif s.method == "POST":
            kind = "stow"
        elif s.path.endswith(("/thumbnail", "/rendered")):
            kind = "rendered"
        else:
            kind = "qido" if s.path.endswith(("/studies", "/series", "/instances")) else "other"
        kinds.setdefault(kind, []).append(s.seconds * 1000)
    print("\nDICOMweb answers (server side, ms): kind n median max")
    for kind, values in sorted(kinds.items()):
        print(f"  {kind:9s} {len(values):4d} {np.median(values):7.1f} {max(values):7.1f}")
    slow = sorted((s for s in site.recorder.seen if s.path.startswith("/dicom-web")), key=lambda s: -s.seconds)
    for s in slow[:5]:
        tail = s.path.split("/instances/")[-1][-40:] if "/instances/" in s.path else s.path[-60:]
        print(f"  slowest: {s.seconds * 1000:7.1f} ms {s.method} ...{tail} {s.query[:70]}")
    dw = [(ms, u) for ms, u in traffic.timings if "/dicom-web/" in u]
    if dw:
        worst = max(dw)
        print(f"browser side: {len(dw)} DICOMweb requests, median {np.median([m for m, _ in dw]):.1f} ms, "
              f"max {worst[0]:.1f} ms ({urlsplit(worst[1]).path[:110]})")

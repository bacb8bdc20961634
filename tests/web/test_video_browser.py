"""Video instances play in a real browser's ``<video>`` from WADO-RS ``/rendered``.

One uvicorn (127.0.0.1, free port) serves ``create_app`` over an archive holding three video
instances made by tests/videogen.py (48 frames, 320x240, 24 frames/s, moving content):

- ``annexb``: H.264 High Profile as a bare Annex B byte stream (remuxed into MP4 by the server),
- ``mp4``: H.264 in an MP4 file with its ``moov`` after ``mdat`` (served as it is: the browser
  needs HTTP Range requests to find the ``moov``),
- ``mpeg2``: an MPEG-2 video elementary stream (transcoded to H.264 by the server),

plus two test-only routes: ``/_video-test/plain.mp4`` (a plain H.264 MP4 file, to learn whether
this Chromium decodes H.264 at all: Debian's does, builds without proprietary codecs don't) and
``/_video-test/`` (an empty page of the same origin).

Over plain HTTP (no browser): ``/rendered`` answers ``video/mp4`` bytes that PyAV decodes to the
right frames, and honours Range requests. In headless Chromium: each video reaches readyState
>= 2 (HAVE_CURRENT_DATA) with the right videoWidth / videoHeight / duration, draws non-blank
pixels, and plays (currentTime advances). Without Chromium or Playwright the browser tests
skip, except with ``CI=true``, where that fails; a Chromium that cannot decode H.264 skips the
playback checks with that reason (the HTTP checks still run).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import av
import httpx
import pydicom
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount, Route

from tests.conftest import make_settings
from tests.videogen import clip_frames, make_video_instance, mp4_file
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, AsAdmin, live_server
from vesalius.archive import open_archive
from vesalius.web.app import create_app

VIDEO_ARGS = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]
TIMEOUT_MS = 30_000
N, ROWS, COLS, FPS = 48, 240, 320, 24
DURATION = N / FPS
H264_HIGH = 'video/mp4; codecs="avc1.640029"'  # High Profile, Level 4.1 (TS ...4.102)
KINDS = ["annexb", "mp4", "mpeg2"]


@dataclass
class Site:
    base: str
    urls: dict[str, str]  # kind -> /rendered URL path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("video-web")
    study = "1.2.826.0.1.3680043.8.498.77.1"
    files = {
        "annexb": make_video_instance(root / "in", container=False, study_uid=study, seed=1),
        "mp4": make_video_instance(root / "in", container=True, study_uid=study, seed=2),
        "mpeg2": make_video_instance(root / "in", container=False, codec="mpeg2video",
                                     study_uid=study, seed=3),
    }
    plain = root / "plain.mp4"
    plain.write_bytes(mp4_file(clip_frames(N, ROWS, COLS, seed=4), fps=FPS))
    archive = open_archive(make_settings(root))
    try:
        urls = {}
        for kind, path in files.items():
            assert archive.store_bytes(path.read_bytes(), source_ae="VIDEO").ok, kind
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            urls[kind] = (f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                          f"/instances/{ds.SOPInstanceUID}/rendered")

        async def plain_mp4(request: Request) -> Response:
            return FileResponse(plain, media_type="video/mp4")  # answers Range requests

        async def page(request: Request) -> Response:
            return HTMLResponse("<!doctype html><html><body></body></html>")

        app = Starlette(routes=[
            Route("/_video-test/plain.mp4", plain_mp4),
            Route("/_video-test/", page),
            Mount("/", app=AsAdmin(create_app(archive, viewer=False), archive)),
        ])
        with live_server(app) as base:
            yield Site(base, urls)
    finally:
        archive.close()


# --------------------------------------------------------------------------- HTTP, no browser


def _decoded(data: bytes) -> tuple[int, int, int, float]:
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.video[0]
        n = sum(1 for _ in c.decode(stream))
        return n, stream.width, stream.height, float(c.duration or 0) / 1e6


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("accept", [None, "video/mp4", "*/*"])
def test_rendered_is_an_mp4_file(site: Site, kind: str, accept: str | None) -> None:
    headers = {"Accept": accept} if accept else {}
    r = httpx.get(site.base + site.urls[kind], headers=headers, timeout=60)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"].split(";")[0] == "video/mp4"
    assert r.content[4:8] == b"ftyp"
    n, width, height, duration = _decoded(r.content)
    assert (n, width, height) == (N, COLS, ROWS)
    assert duration == pytest.approx(DURATION, abs=0.1)


@pytest.mark.parametrize("kind", KINDS)
def test_rendered_answers_range_requests(site: Site, kind: str) -> None:
    url = site.base + site.urls[kind]
    whole = httpx.get(url, timeout=60).content
    r = httpx.get(url, headers={"Range": "bytes=100-1099"}, timeout=60)
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes 100-1099/{len(whole)}"
    assert r.content == whole[100:1100]
    tail = httpx.get(url, headers={"Range": "bytes=-500"}, timeout=60)
    assert tail.status_code == 206 and tail.content == whole[-500:]


def _pixel_data_uri(site: Site, kind: str) -> str:
    """The BulkDataURI the metadata gives for Pixel Data (what OHIF plays with singlepart video)."""
    r = httpx.get(site.base + site.urls[kind].removesuffix("/rendered") + "/metadata", timeout=60)
    assert r.status_code == 200, r.text[:300]
    uri = str(r.json()[0]["7FE00010"]["BulkDataURI"])
    return uri if uri.startswith("http") else site.base + uri


@pytest.mark.parametrize("kind", ["annexb", "mpeg2"])
def test_pixel_data_bulkdata_uri_is_an_mp4_file(site: Site, kind: str) -> None:
    r = httpx.get(_pixel_data_uri(site, kind), headers={"Accept": "video/mp4"}, timeout=60)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"].split(";")[0] == "video/mp4"
    assert _decoded(r.content)[:3] == (N, COLS, ROWS)


def test_accept_query_parameter(site: Site) -> None:
    r = httpx.get(site.base + site.urls["annexb"] + "?accept=video/mp4", timeout=60)
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == "video/mp4"
    assert r.content[4:8] == b"ftyp"


# --------------------------------------------------------------------------- Chromium


def _problem() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} missing (apt-get install chromium, or make sysdeps)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is missing"
    return None


@pytest.fixture(scope="module")
def page(site: Site) -> Iterator[Any]:
    problem = _problem()
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI needs the video browser test: {problem}")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=VIDEO_ARGS)
        try:
            pg = browser.new_page()
            pg.set_default_timeout(TIMEOUT_MS)
            pg.goto(site.base + "/_video-test/")
            yield pg
        finally:
            browser.close()


@pytest.fixture(scope="module")
def h264(page: Any) -> str:
    """What this Chromium says about H.264 High Profile in MP4 ('' when it has no decoder)."""
    return str(page.evaluate("t => document.createElement('video').canPlayType(t)", H264_HIGH))


PLAY = """async (src) => {
  const v = document.createElement('video');
  v.muted = true; v.preload = 'auto'; v.src = src;
  document.body.appendChild(v);
  const t0 = performance.now();
  while (v.readyState < 2 && !v.error && performance.now() - t0 < 20000)
    await new Promise(r => setTimeout(r, 50));
  const out = {readyState: v.readyState, width: v.videoWidth, height: v.videoHeight,
               duration: v.duration, error: v.error ? [v.error.code, v.error.message] : null};
  if (v.readyState < 2) return out;
  const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d'); g.drawImage(v, 0, 0);
  const px = g.getImageData(0, 0, c.width, c.height).data;
  let sum = 0; for (let i = 0; i < px.length; i += 4) sum += px[i] + px[i + 1] + px[i + 2];
  out.meanLevel = sum / (px.length / 4) / 3;
  const start = v.currentTime;
  try { await v.play(); } catch (e) { out.playError = String(e); }
  await new Promise(r => setTimeout(r, 900));
  out.advanced = v.currentTime - start;
  out.framesShown = v.getVideoPlaybackQuality().totalVideoFrames;
  out.error = v.error ? [v.error.code, v.error.message] : null;
  v.pause(); v.remove();
  return out;
}"""


def _assert_plays(result: dict[str, Any]) -> None:
    assert result["error"] is None, result
    assert result["readyState"] >= 2, result
    assert (result["width"], result["height"]) == (COLS, ROWS), result
    assert result["duration"] == pytest.approx(DURATION, abs=0.1), result
    assert result["meanLevel"] > 10, result  # a picture, not a black frame
    assert "playError" not in result, result
    assert result["advanced"] > 0.2, result
    assert result["framesShown"] > 1, result


def test_chromium_decodes_h264(page: Any, h264: str, site: Site) -> None:
    """The baseline: a plain H.264 MP4 file from a file handler."""
    if not h264:
        pytest.skip("this Chromium cannot play H.264 (built without proprietary codecs): "
                    "canPlayType('video/mp4; codecs=\"avc1.640029\"') is ''")
    assert h264 == "probably"
    _assert_plays(page.evaluate(PLAY, site.base + "/_video-test/plain.mp4"))


@pytest.mark.parametrize("kind", KINDS)
def test_chromium_plays_rendered_video(page: Any, h264: str, site: Site, kind: str) -> None:
    if not h264:
        pytest.skip("this Chromium cannot play H.264; the HTTP tests check the served MP4")
    _assert_plays(page.evaluate(PLAY, site.base + site.urls[kind]))


def test_chromium_plays_pixel_data_bulkdata_uri(page: Any, h264: str, site: Site) -> None:
    if not h264:
        pytest.skip("this Chromium cannot play H.264; the HTTP tests check the served MP4")
    _assert_plays(page.evaluate(PLAY, _pixel_data_uri(site, "annexb")))

"""OHIF boots in a real browser from our server, and talks to nothing but our origin.

Needs Debian's Chromium (``/usr/bin/chromium``) and the OHIF build (``make viewer``); without
them the tests skip, except in CI (``CI=true``), where that is a failure. A real uvicorn serves
the viewer routes plus a stub QIDO-RS answering one study, so the study list has a row to show.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS
from vesalius.web.viewer import default_ohif_dir, viewer_routes

TIMEOUT_MS = 30_000
STUDY_UID = "1.2.826.0.1.3680043.8.498.1"

STUDY: dict[str, Any] = {
    "0020000D": {"vr": "UI", "Value": [STUDY_UID]},
    "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
    "00100020": {"vr": "LO", "Value": ["PID42"]},
    "00080020": {"vr": "DA", "Value": ["20240131"]},
    "00080030": {"vr": "TM", "Value": ["101500"]},
    "00080050": {"vr": "SH", "Value": ["ACC7"]},
    "00080061": {"vr": "CS", "Value": ["CT"]},
    "00081030": {"vr": "LO", "Value": ["Chest CT"]},
    "00201206": {"vr": "IS", "Value": [1]},
    "00201208": {"vr": "IS", "Value": [3]},
}


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


@pytest.fixture(scope="module")
def ohif_dir() -> Path:
    problem = _problem()
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI needs the browser test: {problem}")
        pytest.skip(problem)
    found = default_ohif_dir()
    assert found is not None
    return found


def make_app(ohif_dir: Path) -> Starlette:
    """The viewer routes behind a stub QIDO-RS that knows one study and nothing below it."""

    async def studies(request: Request) -> JSONResponse:
        uid = request.query_params.get("StudyInstanceUID")
        found = [] if uid not in (None, STUDY_UID) else [STUDY]
        return JSONResponse(found, media_type="application/dicom+json")

    async def nothing(request: Request) -> JSONResponse:
        return JSONResponse([], media_type="application/dicom+json")

    return Starlette(
        routes=[
            Route("/dicom-web/studies", studies),
            Route("/dicom-web/{rest:path}", nothing),
            *viewer_routes(ohif_dir),
        ]
    )


@pytest.fixture(scope="module")
def base_url(ohif_dir: Path) -> Iterator[str]:
    """A real uvicorn on 127.0.0.1 and a free port, in a thread; stopped at the end."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(make_app(ohif_dir), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def browser(ohif_dir: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Visit:
    """What one page load asked for and what went wrong in it."""

    page: Any
    urls: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def foreign(self, base_url: str) -> list[str]:
        """Requests to anything but our origin (data: and blob: URLs stay in the browser)."""
        origin = urlsplit(base_url)
        return [
            u
            for u in self.urls
            if urlsplit(u).scheme not in ("data", "blob")
            and (urlsplit(u).scheme, urlsplit(u).netloc) != (origin.scheme, origin.netloc)
        ]

    def qido(self, path: str) -> list[dict[str, list[str]]]:
        """Query parameters of each request made to ``path``."""
        return [parse_qs(urlsplit(u).query) for u in self.urls if urlsplit(u).path == path]


@pytest.fixture
def visit(browser: Any) -> Iterator[Visit]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    v = Visit(page)
    context.on("request", lambda r: v.urls.append(r.url))  # pages and workers alike
    page.on("pageerror", lambda e: v.errors.append(str(e)))
    try:
        yield v
    finally:
        context.close()


def test_study_list_boots_and_lists_our_study(base_url: str, visit: Visit) -> None:
    page = visit.page
    response = page.goto(base_url + "/", timeout=TIMEOUT_MS)
    assert response is not None and response.status == 200
    page.get_by_text("Study List").first.wait_for(timeout=TIMEOUT_MS)
    page.get_by_text("Doe, Jane").first.wait_for(timeout=TIMEOUT_MS)
    assert page.get_by_text("Chest CT").first.is_visible()
    page.wait_for_load_state("networkidle", timeout=TIMEOUT_MS)

    assert base_url + "/app-config.js" in visit.urls
    queries = visit.qido("/dicom-web/studies")
    assert queries, visit.urls
    assert "includefield" in queries[0]
    assert visit.foreign(base_url) == []
    assert visit.errors == []


def test_viewer_route_opens_the_study(base_url: str, visit: Visit) -> None:
    page = visit.page
    response = page.goto(f"{base_url}/viewer?StudyInstanceUIDs={STUDY_UID}", timeout=TIMEOUT_MS)
    assert response is not None and response.status == 200
    page.get_by_text("Chest CT").first.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_load_state("networkidle", timeout=TIMEOUT_MS)

    assert visit.qido(f"/dicom-web/studies/{STUDY_UID}/series")
    assert any(q.get("StudyInstanceUID") == [STUDY_UID] for q in visit.qido("/dicom-web/studies"))
    assert visit.foreign(base_url) == []
    assert visit.errors == []

"""The OHIF viewer routes, on a fake build: generated config, SPA fallback, caching, traversal."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from vesalius.web import viewer
from vesalius.web.viewer import app_config_js, default_ohif_dir, viewer_routes

HASHED_JS = "app.bundle.0f6159c501addfe9.js"
HASHED_WASM = "0ddf166f7a343eda.wasm"
INDEX = "<!doctype html><html><body><div id=root></div></body></html>"


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    """A miniature OHIF build, with a secret beside it that must stay unreachable."""
    root = tmp_path / "ohif"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(INDEX)
    (root / HASHED_JS).write_text("console.log('app');")
    (root / HASHED_WASM).write_bytes(b"\0asm\1\0\0\0")
    (root / "app.bundle.css").write_text("body{}")
    (root / "assets" / "favicon.ico").write_bytes(b"\0\0\1\0")
    (root / ".vesalius-ohif-stamp").write_text("@ohif/app@3.13.2\n")
    (tmp_path / "secret.txt").write_text("top secret")
    (root / "escape.txt").symlink_to(tmp_path / "secret.txt")
    return root


def make_app(ohif_dir: Path | None) -> Starlette:
    """Like the real app: API routes first, the viewer last, 404s as JSON."""

    async def healthz(request: object) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def not_found(request: object, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": "not found"}, status_code=404)

    return Starlette(
        routes=[Route("/healthz", healthz), *viewer_routes(ohif_dir)],
        exception_handlers={404: not_found},
    )


@pytest.fixture
def client(dist: Path) -> TestClient:
    return TestClient(make_app(dist))


def parse_config(text: str) -> dict[str, object]:
    prefix = "window.config = "
    start = text.index(prefix) + len(prefix)
    body = text[start:].strip()
    assert body.endswith(";")
    config = json.loads(body[:-1])
    assert isinstance(config, dict)
    return config


def test_app_config_points_ohif_at_our_dicomweb(client: TestClient) -> None:
    r = client.get("/app-config.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["cache-control"] == "no-cache"
    config = parse_config(r.text)
    assert config["routerBasename"] == "/"
    assert config["showStudyList"] is True
    assert config["defaultDataSourceName"] == "dicomweb"
    assert config["investigationalUseDialog"] == {"option": "never"}
    assert "oidc" not in config
    (source,) = config["dataSources"]  # type: ignore[misc]
    assert source["namespace"] == "@ohif/extension-default.dataSourcesModule.dicomweb"
    assert source["sourceName"] == "dicomweb"
    c = source["configuration"]
    assert (c["qidoRoot"], c["wadoRoot"], c["wadoUriRoot"]) == ("/dicom-web", "/dicom-web", "/wado")
    assert c["staticWado"] is False
    assert c["imageRendering"] == c["thumbnailRendering"] == "wadors"
    assert c["qidoSupportsIncludeField"] is True
    assert c["bulkDataURI"] == {"enabled": True}
    assert c["dicomUploadEnabled"] is True
    assert "http" not in r.text  # nothing points off-origin


def test_app_config_roots_are_configurable() -> None:
    text = app_config_js("/pacs/dicom-web", "/pacs/wado")
    c = parse_config(text)["dataSources"][0]["configuration"]  # type: ignore[index]
    assert c["qidoRoot"] == "/pacs/dicom-web" and c["wadoUriRoot"] == "/pacs/wado"


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_app_config_is_javascript_that_sets_window_config() -> None:
    script = "var window = {};\n" + app_config_js() + (
        "\nprocess.stdout.write(window.config.dataSources[0].configuration.qidoRoot);"
    )
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True)
    assert out.stdout == "/dicom-web"


def test_root_serves_index_html_uncached(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.text == INDEX
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    "url",
    ["/viewer?StudyInstanceUIDs=1.2.3", "/viewer/dicomweb", "/viewer/dicomweb?StudyInstanceUIDs=1.2.3",
     "/segmentation?StudyInstanceUIDs=1.2.840.10008.1", "/local"],
)
def test_spa_routes_fall_back_to_index_html(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 200
    assert r.text == INDEX
    assert r.headers["cache-control"] == "no-cache"


def test_hashed_assets_are_cached_for_a_year(client: TestClient) -> None:
    r = client.get("/" + HASHED_JS)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["x-content-type-options"] == "nosniff"
    w = client.get("/" + HASHED_WASM)
    assert w.headers["content-type"] == "application/wasm"
    assert w.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert w.content == b"\0asm\1\0\0\0"


def test_unhashed_files_are_revalidated(client: TestClient) -> None:
    r = client.get("/app.bundle.css")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/css")
    assert r.headers["cache-control"] == "no-cache"
    etag = r.headers["etag"]
    again = client.get("/app.bundle.css", headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert client.get("/assets/favicon.ico").status_code == 200


def test_head_is_answered(client: TestClient) -> None:
    r = client.head("/" + HASHED_JS)
    assert r.status_code == 200
    assert r.content == b""


def test_missing_assets_are_404_not_html(client: TestClient) -> None:
    for url in ("/app.bundle.ffffffffffffffff.js", "/assets/nope.png", "/missing.wasm"):
        r = client.get(url)
        assert r.status_code == 404, url
        assert r.json() == {"error": "not found"}


@pytest.mark.parametrize("url", ["/dicom-web", "/dicom-web/studies/1.2.3/nothing", "/wado",
                                 "/api/anything", "/healthz/x"])
def test_api_prefixes_never_get_the_app(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 404
    assert r.json() == {"error": "not found"}


def test_earlier_routes_win(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_only_get_and_head(client: TestClient) -> None:
    assert client.post("/viewer").status_code == 405


@pytest.mark.parametrize(
    "raw",
    ["/..%2fsecret.txt", "/..%2f..%2fetc/passwd", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt",
     "/escape.txt", "/%00index.html", "/..\\secret.txt", "/assets/%2e%2e/%2e%2e/secret.txt"],
)
def test_no_path_traversal(client: TestClient, raw: str) -> None:
    # Sent raw: httpx would otherwise normalise the dot segments itself.
    r = client.request("GET", "http://testserver" + raw)
    assert r.status_code == 404, raw
    assert b"top secret" not in r.content
    assert b"root:" not in r.content


def test_dot_files_are_not_served(client: TestClient) -> None:
    r = client.get("/.vesalius-ohif-stamp")
    assert b"@ohif/app" not in r.content
    assert r.text == INDEX  # an SPA route as far as the server knows


def test_not_installed_answers_503_and_the_rest_works(tmp_path: Path) -> None:
    for ohif_dir in (None, tmp_path / "absent"):
        client = TestClient(make_app(ohif_dir))
        r = client.get("/")
        assert r.status_code == 503
        assert r.json() == {"error": "viewer not installed; run make viewer"}
        assert client.get("/viewer?StudyInstanceUIDs=1.2.3").status_code == 503
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/app-config.js").status_code == 200
        assert client.get("/dicom-web/studies").status_code == 404


def test_installing_while_running_is_picked_up(tmp_path: Path) -> None:
    root = tmp_path / "later"
    client = TestClient(make_app(root))
    assert client.get("/").status_code == 503
    root.mkdir()
    (root / "index.html").write_text(INDEX)
    assert client.get("/").text == INDEX


def test_default_ohif_dir(monkeypatch: pytest.MonkeyPatch, dist: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("VESALIUS_OHIF_DIR", str(dist))
    assert default_ohif_dir() == dist
    monkeypatch.setenv("VESALIUS_OHIF_DIR", str(tmp_path / "absent"))
    assert default_ohif_dir() is None
    monkeypatch.delenv("VESALIUS_OHIF_DIR")
    found = default_ohif_dir()
    expected = Path(viewer.__file__).resolve().parents[2] / "var" / "ohif" / viewer.OHIF_VERSION
    assert found in (None, expected)

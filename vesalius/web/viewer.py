"""The OHIF viewer, served at the origin's root.

``scripts/fetch-ohif.sh`` (``make viewer``) unpacks the prebuilt OHIF build (npm ``@ohif/app``)
into ``var/ohif/<version>/``. These routes serve it:

- ``GET /app-config.js``: OHIF's ``window.config``, generated so that its one data source is our
  own DICOMweb service on the same origin (relative roots: no host name baked in, so it works
  behind a reverse proxy), with nothing fetched from elsewhere.
- any other ``GET``: the file of the build with that path, else ``index.html`` (the single-page
  app routes itself: ``/viewer?StudyInstanceUIDs=...``, ``/viewer/dicomweb`` ...). Paths under
  the API prefixes (``/dicom-web``, ``/wado``, ``/api``, ``/healthz``) and missing static assets
  answer 404 instead, so a wrong API URL or a missing chunk is never answered with HTML.

Hashed assets (``app.bundle.<16 hex>.js``, ``<16 hex>.wasm`` ...) are cached for a year; every
other file, ``index.html`` and ``app-config.js`` included, is revalidated on each use (ETag).
Without the build, the viewer's pages answer 503 and say how to install it; the routes must be
mounted after all the others, since ``/{path}`` matches everything.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

import vesalius

OHIF_VERSION = "3.13.2"
"""The OHIF release ``scripts/fetch-ohif.sh`` installs (keep the two in step)."""

NOT_INSTALLED = {"error": "viewer not installed; run make viewer"}

CACHE_IMMUTABLE = "public, max-age=31536000, immutable"
CACHE_REVALIDATE = "no-cache"

# A build hash in a file name: `app.bundle.0f6159c501addfe9.js`, `0ddf166f7a343eda.wasm`.
_HASHED = re.compile(r"(?:^|\.)[0-9a-f]{16,}\.[A-Za-z0-9]+$")

# Extensions of files the build has or its code loads; a missing one is a 404, not index.html.
_ASSET_EXTENSIONS = frozenset(
    {"js", "mjs", "css", "map", "wasm", "json", "jsonc", "html", "txt", "xml", "onnx", "data"}
    | {"bin", "png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "woff", "woff2", "ttf", "otf"}
)

# Set explicitly: the mimetypes table varies by system, and WebAssembly streaming compilation
# insists on application/wasm.
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".jsonc": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8",
}


def default_ohif_dir() -> Path | None:
    """Where ``make viewer`` put the OHIF build, or None when it is not there.

    ``VESALIUS_OHIF_DIR`` overrides the default ``var/ohif/<OHIF_VERSION>`` under the repository
    root (the package is installed editable, so the root is the parent of ``vesalius/``).
    """
    override = os.environ.get("VESALIUS_OHIF_DIR")
    if override:
        path = Path(override)
    else:
        path = Path(vesalius.__file__).resolve().parents[1] / "var" / "ohif" / OHIF_VERSION
    return path if (path / "index.html").is_file() else None


def ohif_config(dicomweb_root: str = "/dicom-web", wado_uri_root: str = "/wado") -> dict[str, Any]:
    """OHIF 3.13's ``window.config``: one DICOMweb data source, ours, on the same origin.

    The roots are paths relative to the origin, which OHIF supports (it resolves bulk data URIs
    against a relative ``wadoRoot`` too). Nothing in it loads from another host: no OIDC, no
    URL-driven customizations or configs, no investigational-use dialog.
    """
    return {
        "routerBasename": "/",
        "extensions": [],
        "modes": [],
        "customizationService": {"ohif.tours": {"$set": []}},
        "showStudyList": True,
        "maxNumberOfWebWorkers": 3,
        "showCPUFallbackMessage": True,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "groupEnabledModesFirst": True,
        "maxNumRequests": {"interaction": 100, "thumbnail": 5, "prefetch": 25},
        "investigationalUseDialog": {"option": "never"},
        "defaultDataSourceName": "dicomweb",
        "dataSources": [
            {
                "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
                "sourceName": "dicomweb",
                "configuration": {
                    "friendlyName": "Vesalius",
                    "name": "vesalius",
                    "qidoRoot": dicomweb_root,
                    "wadoRoot": dicomweb_root,
                    "wadoUriRoot": wado_uri_root,
                    "qidoSupportsIncludeField": True,
                    "supportsReject": False,
                    "imageRendering": "wadors",
                    "thumbnailRendering": "wadors",
                    "enableStudyLazyLoad": True,
                    "supportsFuzzyMatching": True,
                    "supportsWildcard": True,
                    "staticWado": False,
                    "singlepart": "bulkdata,video",
                    "bulkDataURI": {"enabled": True},
                    "omitQuotationForMultipartRequest": True,
                    "dicomUploadEnabled": True,
                },
            }
        ],
    }


def app_config_js(dicomweb_root: str = "/dicom-web", wado_uri_root: str = "/wado") -> str:
    """The text of ``/app-config.js``: ``window.config = <JSON>;`` (JSON is valid JavaScript)."""
    body = json.dumps(ohif_config(dicomweb_root, wado_uri_root), indent=2, ensure_ascii=True)
    return f"/* Generated by Vesalius for OHIF {OHIF_VERSION}. */\nwindow.config = {body};\n"


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    """Whether ``path`` (no leading slash) is one of ``prefixes`` or below one."""
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def _resolve(root: Path, path: str) -> tuple[Path, os.stat_result] | None:
    """The regular file ``path`` names inside ``root`` and its stat, or None.

    Refuses ``..``, dot-files (the install stamp), backslashes and NUL, and anything whose real
    path (symlinks followed) lies outside ``root``.
    """
    if "\x00" in path or "\\" in path:
        return None
    parts = [p for p in path.split("/") if p]
    if not parts or any(p.startswith(".") for p in parts):
        return None
    try:
        real_root = root.resolve(strict=True)
        real = real_root.joinpath(*parts).resolve(strict=True)
        if not real.is_relative_to(real_root):
            return None
        st = real.stat()
    except (OSError, RuntimeError, ValueError):
        return None
    return (real, st) if stat.S_ISREG(st.st_mode) else None


def _not_modified(response: Response, request_headers: Headers) -> bool:
    """RFC 9110 conditional GET on the ETag (or Last-Modified) ``FileResponse`` sets."""
    if_none_match = request_headers.get("if-none-match")
    etag = response.headers.get("etag")
    if if_none_match is not None:
        if if_none_match.strip() == "*":
            return True
        tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return etag is not None and etag in tags
    since = request_headers.get("if-modified-since")
    return since is not None and since == response.headers.get("last-modified")


def _file(request: Request, found: tuple[Path, os.stat_result], cache_control: str) -> Response:
    path, st = found
    media_type = _MEDIA_TYPES.get(path.suffix.lower())
    response: Response = FileResponse(path, stat_result=st, media_type=media_type)
    if _not_modified(response, request.headers):
        kept = {k: v for k, v in response.headers.items() if k in ("etag", "last-modified")}
        response = Response(status_code=304, headers=kept)
    response.headers["cache-control"] = cache_control
    response.headers["x-content-type-options"] = "nosniff"
    return response


def viewer_routes(
    ohif_dir: Path | None,
    *,
    dicomweb_root: str = "/dicom-web",
    wado_uri_root: str = "/wado",
) -> list[BaseRoute]:
    """Routes serving the OHIF build in ``ohif_dir`` at ``/``; mount them after all others.

    ``ohif_dir`` may be None or not (yet) hold a build: the viewer's pages then answer 503 with
    ``{"error": "viewer not installed; run make viewer"}``; the check is made per request, so a
    ``make viewer`` while the server runs is picked up.
    """
    reserved = tuple(
        p.strip("/") for p in (dicomweb_root, wado_uri_root, "/api", "/healthz") if p.strip("/")
    )
    config_text = app_config_js(dicomweb_root, wado_uri_root)

    async def app_config(request: Request) -> Response:
        return Response(
            config_text,
            media_type="text/javascript; charset=utf-8",
            headers={"cache-control": CACHE_REVALIDATE, "x-content-type-options": "nosniff"},
        )

    async def spa(request: Request) -> Response:
        path: str = request.path_params["path"]
        if _under(path, reserved):
            raise HTTPException(status_code=404)
        index = None if ohif_dir is None else await anyio.to_thread.run_sync(
            _resolve, ohif_dir, "index.html"
        )
        if ohif_dir is None or index is None:
            return JSONResponse(NOT_INSTALLED, status_code=503, headers={"retry-after": "60"})
        found = await anyio.to_thread.run_sync(_resolve, ohif_dir, path)
        if found is not None:
            cache = CACHE_IMMUTABLE if _HASHED.search(found[0].name) else CACHE_REVALIDATE
            return _file(request, found, cache)
        last = path.rsplit("/", 1)[-1]
        if ".." in path.split("/") or (
            "." in last and last.rsplit(".", 1)[1].lower() in _ASSET_EXTENSIONS
        ):
            raise HTTPException(status_code=404)
        return _file(request, index, CACHE_REVALIDATE)

    return [
        Route("/app-config.js", app_config, methods=["GET", "HEAD"]),
        Route("/{path:path}", spa, methods=["GET", "HEAD"]),
    ]

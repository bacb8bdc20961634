"""What every DICOMweb route shares: path checks, error answers, URLs (PS3.18 8.2, 8.7).

Archive errors become HTTP statuses here, at the boundary, each with a JSON body that
says what was wrong; nothing below this layer knows about HTTP.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from vesalius.archive import Archive
from vesalius.dicom.uids import is_valid_uid
from vesalius.errors import (
    AccessDenied,
    Conflict,
    InvalidDicom,
    NotFound,
    QueryError,
    StorageError,
    VesaliusError,
)

log = logging.getLogger("vesalius.web")

DICOM_JSON = "application/dicom+json"


class HTTPError(VesaliusError):
    """An HTTP answer other than success, raised by route code."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (NotFound, 404), (QueryError, 400), (InvalidDicom, 400), (AccessDenied, 403),
    (Conflict, 409), (StorageError, 503),
)


def to_response(exc: Exception) -> Response:
    """Turn an exception into the HTTP answer (never a traceback)."""
    if isinstance(exc, HTTPError):
        return error_response(exc.status, exc.message, exc.headers)
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return error_response(status, str(exc))
    log.exception("unexpected error in a DICOMweb request")
    return error_response(500, f"internal error ({type(exc).__name__})")


Handler = Callable[[Request], Awaitable[Response]]


def endpoint(fn: Callable[[Request, Archive], Awaitable[Response]], archive: Archive) -> Handler:
    """Bind ``fn`` to the archive and convert every error into an HTTP answer."""

    @functools.wraps(fn)
    async def handler(request: Request) -> Response:
        try:
            return await fn(request, archive)
        except Exception as exc:
            return to_response(exc)

    return handler


def uid_param(request: Request, name: str) -> str:
    """A UID from the path, checked (PS3.5 9.1) so hostile paths never reach the index."""
    value = str(request.path_params.get(name, ""))
    if not is_valid_uid(value):
        what = {"study": "Study Instance UID", "series": "Series Instance UID",
                "instance": "SOP Instance UID"}.get(name, name)
        raise HTTPError(400, f"{what} {value[:80]!r} in the path is not a valid UID")
    return value


def uids(request: Request) -> tuple[str, str | None, str | None]:
    """The study, series and instance UIDs named in the path (those present)."""
    study = uid_param(request, "study")
    series = uid_param(request, "series") if "series" in request.path_params else None
    sop = uid_param(request, "instance") if "instance" in request.path_params else None
    return study, series, sop


def base_url(request: Request) -> str:
    """The DICOMweb root URL (for RetrieveURL and BulkDataURI): ``public_url`` + the mount
    path when set, else as the client reached us (scheme and Host header)."""
    root = str(request.scope.get("root_path", ""))
    public = str(request.app.state.public_url or "").rstrip("/") if hasattr(request.app.state, "public_url") \
        else ""
    if public:
        return public + root
    return f"{request.url.scheme}://{request.url.netloc}{root!s}"


def instance_url(base: str, study: str, series: str, sop: str) -> str:
    return f"{base}/studies/{study}/series/{series}/instances/{sop}"


def json_bytes(doc: Any) -> bytes:
    import json

    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()

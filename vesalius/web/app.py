"""The ASGI application. ``GET /healthz`` reports liveness and index reachability."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from vesalius import __version__
from vesalius.archive import Archive


def create_app(archive: Archive, extra: dict[str, Any] | None = None) -> Starlette:
    """Build the ASGI app over ``archive``."""

    async def healthz(request: Request) -> JSONResponse:
        try:
            with archive.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            db = "ok"
        except Exception:
            db = "unavailable"
        body = {"status": "ok" if db == "ok" else "degraded", "version": __version__, "index": db}
        body.update(extra or {})
        return JSONResponse(body, status_code=200 if db == "ok" else 503)

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": "not found", "path": request.url.path}, status_code=404)

    return Starlette(routes=[Route("/healthz", healthz)], exception_handlers={404: not_found})

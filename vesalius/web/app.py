"""The ASGI application: DICOMweb under ``/dicom-web``, WADO-URI at ``/wado``, ``/healthz``,
``/login``, and the OHIF viewer at ``/`` when it is installed. Every request but
``/healthz`` and the login page is authenticated (:mod:`vesalius.web.auth`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from vesalius import __version__
from vesalius.archive import Archive
from vesalius.web.auth import Authenticator, AuthMiddleware, login_routes
from vesalius.web.dicomweb import dicomweb_routes


def create_app(archive: Archive, extra: dict[str, Any] | None = None, *, viewer: bool = True) -> Starlette:
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

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        if status == 404:
            detail = "not found"
        return JSONResponse({"error": detail, "status": status, "path": request.url.path[:200]},
                            status_code=status)

    authenticator = Authenticator(archive)
    routes: list[BaseRoute] = [Route("/healthz", healthz)]
    routes += login_routes(authenticator)
    routes += dicomweb_routes(archive)
    if viewer:
        from vesalius.web.viewer import default_ohif_dir, viewer_routes

        routes += viewer_routes(default_ohif_dir())
    # CORS outside authentication, so preflight requests are answered; every other request
    # is authenticated before any route runs.
    middleware = [Middleware(AuthMiddleware, authenticator=authenticator)]
    origins = [o.strip() for o in archive.settings.cors_origins.split(",") if o.strip()]
    if origins:
        middleware.insert(0, Middleware(CORSMiddleware, allow_origins=origins,
                                     allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                                     allow_headers=["*"], expose_headers=["Content-Type", "Warning"]))
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={HTTPException: http_error, 500: http_error})
    app.state.public_url = archive.settings.public_url
    return app

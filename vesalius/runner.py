"""``vesalius serve``: composes the archive, the DICOM listener(s) and the HTTP server.

This is the composition root (the only module that wires interfaces together). SIGTERM or
SIGINT stops accepting, lets in-flight associations finish (up to a grace period), stops
worker processes the same way, then exits.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from vesalius import __version__
from vesalius.config import Settings
from vesalius.errors import VesaliusError

log = logging.getLogger("vesalius.serve")
GRACE_SECONDS = 30.0


class ServeError(VesaliusError):
    """The server cannot start (a port in use, an unreachable index...)."""


def _bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def serve(settings: Settings, announce: Callable[[str], None] = print) -> None:
    """Run until SIGTERM/SIGINT; raise :class:`ServeError` if it cannot start."""
    import uvicorn

    from vesalius.archive import open_archive
    from vesalius.dimse.server import DimseServer
    from vesalius.dimse.worker import start_workers, stop_workers
    from vesalius.web.app import create_app

    try:
        archive = open_archive(settings)
    except VesaliusError:
        raise
    except Exception as exc:
        raise ServeError(f"cannot open the archive: {type(exc).__name__}: {exc}") from None
    try:
        try:
            http_sock = _bind(settings.http_host, settings.http_port)
        except OSError as exc:
            raise ServeError(f"cannot listen on HTTP port {settings.http_port}: {exc.strerror}") from None
        multi = settings.dicom_workers > 1
        dimse = DimseServer(archive, reuse_port=multi)
        try:
            if multi:
                # SO_REUSEPORT would silently share a port another program holds: check first.
                _bind(settings.dicom_host, settings.dicom_port).close()
            dimse.start()
        except OSError as exc:
            http_sock.close()
            raise ServeError(f"cannot listen on DICOM port {settings.dicom_port}: {exc.strerror}") from None
        workers = start_workers(settings, settings.dicom_workers - 1) if multi else []
        app = create_app(archive, {"ae_title": settings.ae_title, "dicom_port": dimse.port})
        server = _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        announce(f"Vesalius {__version__}: DICOM {settings.ae_title}@{settings.dicom_host}:{dimse.port}"
                 f"{f' ({settings.dicom_workers} processes)' if multi else ''}  "
                 f"HTTP http://{settings.http_host}:{http_sock.getsockname()[1]}/ (viewer, /dicom-web, /healthz)  "
                 f"data {settings.data_dir}")
        try:
            server.run(sockets=[http_sock])
        finally:
            announce("stopping: waiting for in-flight associations")
            if workers:
                stop_workers(workers, grace=GRACE_SECONDS + 5)
            dimse.stop(grace=GRACE_SECONDS)
    finally:
        archive.close()


def _uvicorn_server() -> type[Any]:
    import uvicorn

    return uvicorn.Server


class _Server(_uvicorn_server()):  # type: ignore[misc]
    """uvicorn's server, minus re-raising the signal after shutdown (uvicorn >= 0.29 does,
    which would kill the process before the DICOM listener has drained)."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        old = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

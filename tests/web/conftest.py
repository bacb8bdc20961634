"""Shared helpers for the web tests that run a real HTTP server (not the in-process TestClient):
``live_server`` runs an ASGI app under uvicorn in a thread, ``Recorder`` keeps what reached it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

#: Debian's Chromium and the flags every browser test launches it with (SwiftShader WebGL).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

ADMIN_PASSWORD = "test admin password"


def grant_admin(archive: Any, name: str = "admin") -> str:
    """Create an administrator in ``archive`` and return an API token for it."""
    archive.identities.add_user(name, ADMIN_PASSWORD, ["admin"])
    return str(archive.identities.create_token(name, "tests"))


def admin_headers(archive: Any) -> dict[str, str]:
    return {"Authorization": "Bearer " + grant_admin(archive)}


class AsAdmin:
    """ASGI wrapper for functional tests of a live server: requests that carry no credentials
    get an administrator's API token (the real authentication path checks it). Tests of
    authentication itself use the app unwrapped."""

    def __init__(self, app: Any, archive: Any) -> None:
        self.app = app
        self.header = ("Bearer " + grant_admin(archive)).encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not any(k == b"authorization" for k, _ in scope["headers"]):
            scope = dict(scope)
            scope["headers"] = [*scope["headers"], (b"authorization", self.header)]
        await self.app(scope, receive, send)


@contextmanager
def live_server(app: Any, *, startup_s: float = 10.0) -> Iterator[str]:
    """Run ``app`` under a real uvicorn on 127.0.0.1 and a free port, in a daemon thread.

    Yields the base URL (``http://127.0.0.1:PORT``); the server is stopped, and its thread
    joined, on exit.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"uvicorn-{port}")
    thread.start()
    deadline = time.monotonic() + startup_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout=5)
            sock.close()
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@dataclass
class Seen:
    """One request as it reached the server, its answer's status, and how long the answer took."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    status: int = 0  # 0: no answer started (yet)
    seconds: float = 0.0  # from the request's arrival to the end of the answer's body
    _start: float = field(default=0.0, repr=False)


class Recorder:
    """ASGI middleware keeping every HTTP request, the status it was answered with, and its time."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[Seen] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen = Seen(scope["method"], scope["path"], scope["query_string"].decode("latin-1"),
                    {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
                    _start=time.perf_counter())
        with self._lock:
            self.seen.append(seen)

        async def recording_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                seen.status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                seen.seconds = time.perf_counter() - seen._start
            await send(message)

        await self.app(scope, receive, recording_send)

    def since(self, mark: int) -> list[Seen]:
        with self._lock:
            return list(self.seen[mark:])

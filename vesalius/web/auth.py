"""Who is calling: every HTTP request is authenticated here before any route runs.

Credentials, in order: ``Authorization: Bearer`` (an API token ``vsl_...`` or an OpenID
Connect JWT), ``Authorization: Basic`` (user and password, rate-limited), or the browser
session cookie set by ``/login``. Without an administrator account every request except
``/healthz`` is refused (the server starts closed). Cookie sessions may not make
state-changing requests from another origin (CSRF: Origin/Referer must match, and the
cookie is SameSite=Strict). HIPAA 164.312(d) person or entity authentication.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import threading
import time
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from vesalius.archive import Archive
from vesalius.security.identity import AuthError, OidcVerifier, Principal

COOKIE = "vesalius_session"
PUBLIC_PATHS = frozenset({"/healthz", "/login", "/logout"})
#: Files of the viewer build that hold no patient data and may load before signing in.
STATIC_SUFFIXES = (".js", ".css", ".wasm", ".png", ".svg", ".ico", ".woff", ".woff2", ".ttf", ".map",
                   ".txt", ".webmanifest", ".gif", ".jpg")
_CACHE_SECONDS = 30.0
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class _TTLCache:
    """Credentials already checked, for ``_CACHE_SECONDS`` (a revoked token stops working
    within that time), so authentication costs no database query per request."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[float, Principal, str]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[Principal, str] | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None or hit[0] < time.monotonic():
                self._data.pop(key, None)
                return None
            return hit[1], hit[2]

    def put(self, key: str, principal: Principal, extra: str = "") -> None:
        with self._lock:
            if len(self._data) > 10000:
                self._data.clear()
            self._data[key] = (time.monotonic() + _CACHE_SECONDS, principal, extra)

    def drop(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)


def _json(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": message, "status": status}).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _key(kind: str, secret: str) -> str:
    return kind + ":" + hashlib.sha256(secret.encode()).hexdigest()


class Authenticator:
    """Resolves the credentials of a request to a :class:`Principal`."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.ids = archive.identities
        s = archive.settings
        self.oidc = (OidcVerifier(s.oidc_issuer, s.oidc_audience,
                                  jwks_url=s.oidc_jwks if s.oidc_jwks.startswith("http") else "",
                                  jwks_file="" if s.oidc_jwks.startswith("http") else s.oidc_jwks)
                     if s.oidc_issuer else None)
        self.ids.idle = timedelta(minutes=s.session_idle_minutes)
        self.cache = _TTLCache()
        self._admin_seen = False

    def ready(self) -> bool:
        if not self._admin_seen:
            self._admin_seen = self.ids.has_admin()
        return self._admin_seen

    def cached(self, headers: dict[str, str]) -> tuple[Principal, str] | None:
        """The principal of a credential checked within the last ``_CACHE_SECONDS``."""
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            hit = self.cache.get(_key("bearer", auth[7:].strip()))
            return (hit[0], "bearer") if hit else None
        if not auth:
            sid = _cookie(headers.get("cookie", ""), COOKIE)
            if sid:
                hit = self.cache.get(_key("session", sid))
                return (hit[0], "session") if hit else None
        return None

    def resolve(self, headers: dict[str, str], client: str) -> tuple[Principal | None, str]:
        """(principal, how): ``how`` is "session" for cookie sessions (CSRF rules apply)."""
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
            key = _key("bearer", token)
            hit = self.cache.get(key)
            if hit:
                return hit[0], "bearer"
            if token.startswith("vsl_"):
                p = self.ids.principal_for_token(token)
            elif self.oidc is not None:
                p = self.oidc.verify(token)
            else:
                raise AuthError("bearer tokens from an identity provider are not configured")
            self.cache.put(key, p)
            return p, "bearer"
        if auth[:6].lower() == "basic ":
            try:
                user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except Exception:
                raise AuthError("malformed Basic credentials") from None
            key = _key("basic", user + "\0" + password)
            hit = self.cache.get(key)
            if hit:
                return hit[0], "basic"
            p = self.ids.authenticate(user, password, client)
            self.cache.put(key, p)
            return p, "basic"
        sid = _cookie(headers.get("cookie", ""), COOKIE)
        if sid:
            key = _key("session", sid)
            hit = self.cache.get(key)
            if hit:
                return hit[0], "session"
            p, _csrf = self.ids.principal_for_session(sid)
            self.cache.put(key, p)
            return p, "session"
        return None, ""


def _cookie(header: str, name: str) -> str:
    for item in header.split(";"):
        k, _, v = item.strip().partition("=")
        if k == name:
            return v
    return ""


def _claimed_user(headers: dict[str, str]) -> str:
    """The user name a failed request claimed (Basic credentials), for the audit trail."""
    auth = headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            return base64.b64decode(auth[6:].strip()).decode().partition(":")[0][:64]
        except Exception:
            return ""
    return "bearer-token" if auth[:7].lower() == "bearer " else "session"


def _same_origin(headers: dict[str, str]) -> bool:
    host = headers.get("host", "")
    origin = headers.get("origin") or headers.get("referer") or ""
    return bool(origin) and urlsplit(origin).netloc == host


class AuthMiddleware:
    """Pure ASGI middleware (streaming bodies pass through untouched)."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.auth = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in PUBLIC_PATHS or (path.endswith(STATIC_SUFFIXES) and not path.startswith(("/dicom-web", "/wado",
                                                                                           "/api"))):
            await self.app(scope, receive, send)
            return
        if not self.auth._admin_seen and not await run_in_threadpool(self.auth.ready):
            await _json(503, "no administrator account yet; create one with: "
                             "vesalius user add NAME --role admin")(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = (scope.get("client") or ("", 0))[0]
        try:
            cached = self.auth.cached(headers)  # no thread hop when the credential was seen
            principal, how = cached if cached else await run_in_threadpool(self.auth.resolve, headers, client)
        except AuthError as exc:
            principal, how = None, ""
            reason = str(exc)
            self.auth.archive.auditor.login(_claimed_user(headers), client, False, detail=reason)
        else:
            reason = "sign in: send a Bearer token, Basic credentials or a session cookie"
        if principal is None:
            if scope["method"] == "GET" and "text/html" in headers.get("accept", ""):
                target = path + ("?" + scope["query_string"].decode("latin-1") if scope["query_string"] else "")
                await RedirectResponse("/login?next=" + quote(target, safe=""), 303)(scope, receive, send)
                return
            await _json(401, reason, {"WWW-Authenticate": 'Bearer realm="vesalius"'})(scope, receive, send)
            return
        if how == "session" and scope["method"] not in _SAFE_METHODS and not _same_origin(headers):
            await _json(403, "cross-origin request with a session cookie refused (CSRF)")(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


_LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Vesalius: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;background:#0b1020;color:#e8ecf4;display:flex;
justify-content:center;align-items:center;height:100vh;margin:0}}form{{background:#151c33;padding:2rem;
border-radius:8px;min-width:18rem}}label,input,button{{display:block;width:100%;margin:.4rem 0;box-sizing:border-box}}
input{{padding:.5rem}}button{{padding:.6rem;background:#3a6df0;color:#fff;border:0;border-radius:4px}}
.err{{color:#ff8080}}</style></head><body><form method="post" action="/login">
<h1>Vesalius</h1>{error}<label>User <input name="username" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<input type="hidden" name="next" value="{next}"><button type="submit">Sign in</button></form></body></html>"""


def _safe_next(value: str) -> str:
    """Only local paths: never redirect a signed-in user to another site."""
    if not value.startswith("/") or value.startswith("//") or "\\\\" in value:
        return "/"
    return value


def login_routes(authenticator: Authenticator) -> list[Route]:
    """``GET/POST /login`` (session cookie for the browser and OHIF) and ``POST /logout``."""
    ids = authenticator.ids

    async def login(request: Request) -> Response:
        nxt = _safe_next(request.query_params.get("next", "/"))
        if request.method == "GET":
            return HTMLResponse(_LOGIN_PAGE.format(error="", next=html.escape(nxt)))
        body = (await request.body())[:8192].decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(body).items()}
        nxt = _safe_next(form.get("next", nxt))
        client = request.client.host if request.client else ""
        try:
            principal = await run_in_threadpool(ids.authenticate, form.get("username", ""),
                                                 form.get("password", ""), client)
            sid, _csrf = await run_in_threadpool(ids.open_session, principal)
        except AuthError as exc:
            authenticator.archive.auditor.login(form.get("username", "")[:64], client, False, detail=str(exc))
            page = _LOGIN_PAGE.format(error=f'<p class="err">{html.escape(str(exc))}</p>', next=html.escape(nxt))
            return HTMLResponse(page, status_code=401)
        authenticator.archive.auditor.login(principal.name, client, True)
        response = RedirectResponse(nxt, 303)
        response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
        return response

    async def logout(request: Request) -> Response:
        sid = request.cookies.get(COOKIE, "")
        if sid:
            authenticator.cache.drop(_key("session", sid))
            try:
                who, _csrf = await run_in_threadpool(ids.principal_for_session, sid)
                authenticator.archive.auditor.login(who.name, request.client.host if request.client else "",
                                                    True, logout=True)
            except AuthError:
                pass
            await run_in_threadpool(ids.close_session, sid)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE, path="/")
        return response

    return [Route("/login", login, methods=["GET", "POST"]), Route("/logout", logout, methods=["POST", "GET"])]


def principal_of(request: Request) -> Principal:
    """The caller established by :class:`AuthMiddleware` (routes never run without one)."""
    p: Any = request.scope.get("state", {}).get("principal")
    if not isinstance(p, Principal):
        raise AuthError("not signed in")
    return p

"""Identities: local accounts, API tokens, browser sessions and OpenID Connect tokens.

Who is asking, established once per request or association, as a :class:`Principal` that
the policy point (:mod:`vesalius.security.policy`) decides on. HIPAA 164.312(a)(2)(i)
unique user identification, (a)(2)(iii) automatic log-off (idle session expiry), (d) person
or entity authentication. Passwords are hashed with argon2id; tokens and session ids are
stored only as SHA-256 hashes, so a copy of the database does not hand out credentials.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine

from vesalius.errors import AccessDenied, ConfigError, NotFound, VesaliusError
from vesalius.index.db import locking_engine
from vesalius.security.tables import api_tokens, sessions, study_shares, users

ROLES = ("admin", "radiologist", "technologist", "referring", "auditor", "researcher")
MIN_PASSWORD = 10


class AuthError(AccessDenied):
    """Authentication failed; the message never says whether the user exists."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user (or a DICOM peer) with roles and scopes."""

    name: str
    roles: frozenset[str]
    person_name: str = ""  # the user's DICOM person name, for "studies I referred"
    institutions: tuple[str, ...] = ()  # scope: InstitutionName values ("" none = all)
    departments: tuple[str, ...] = ()  # scope: InstitutionalDepartmentName values
    issuers: tuple[str, ...] = ()  # scope: IssuerOfPatientID values
    via: str = "password"  # password | token | session | oidc | dicom
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def has(self, role: str) -> bool:
        return role in self.roles


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(ts: datetime | None) -> datetime | None:
    if ts is not None and ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)  # SQLite hands timestamps back without a zone
    return ts


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _split(value: str) -> tuple[str, ...]:
    return tuple(v for v in value.split("\\") if v)


def check_roles(roles: list[str] | tuple[str, ...]) -> str:
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise ConfigError(f"roles must be among {', '.join(ROLES)}; got {', '.join(roles) or 'none'}")
    return ",".join(dict.fromkeys(roles))


class LoginLimiter:
    """At most ``per_minute`` login attempts per source address (brute force, HIPAA 164.308(a)(5))."""

    def __init__(self, per_minute: int = 10) -> None:
        self.per_minute = per_minute
        self._seen: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def check(self, source: str) -> None:
        now = time.monotonic()
        with self._lock:
            q = self._seen[source]
            while q and now - q[0] > 60:
                q.popleft()
            if len(q) >= self.per_minute:
                raise AuthError("too many login attempts; wait a minute")
            q.append(now)


class IdentityStore:
    """Users, API tokens, sessions and study shares in the index database."""

    def __init__(self, engine: Engine, *, max_failures: int = 5, lock_minutes: float = 15,
                 session_idle_minutes: float = 15, hasher: PasswordHasher | None = None) -> None:
        self.engine = engine
        self.wengine = locking_engine(engine)
        self.max_failures = max_failures
        self.lock_for = timedelta(minutes=lock_minutes)
        self.idle = timedelta(minutes=session_idle_minutes)
        self.hasher = hasher or PasswordHasher()
        self.limiter = LoginLimiter()
        self._dummy_hash = ""

    @property
    def _dummy(self) -> str:
        """A hash to verify against when the user does not exist, so timing does not tell
        which names exist (made on first use)."""
        if not self._dummy_hash:
            self._dummy_hash = self.hasher.hash(secrets.token_hex(16))
        return self._dummy_hash

    def close(self) -> None:
        if self.wengine is not self.engine:
            self.wengine.dispose()

    # ------------------------------------------------------------------ users
    def add_user(self, name: str, password: str | None, roles: list[str] | tuple[str, ...], *,
                 person_name: str = "", institutions: tuple[str, ...] = (), departments: tuple[str, ...] = (),
                 issuers: tuple[str, ...] = ()) -> None:
        """Create a user; ``password`` None makes an account that signs in only through OIDC."""
        if not name or len(name) > 64 or not all(c.isalnum() or c in "._-@" for c in name):
            raise ConfigError("user names are 1-64 letters, digits or . _ - @")
        role_text = check_roles(roles)
        digest = self._hash(password) if password is not None else ""
        with self.wengine.begin() as conn:
            if conn.execute(select(users.c.pk).where(users.c.name == name)).first() is not None:
                raise ConfigError(f"user {name!r} already exists")
            conn.execute(insert(users).values(
                name=name, password_hash=digest, roles=role_text, person_name=person_name,
                institutions="\\".join(institutions), departments="\\".join(departments),
                issuers="\\".join(issuers), disabled=False, failed_logins=0, created_at=_now()))

    def _hash(self, password: str) -> str:
        if len(password) < MIN_PASSWORD:
            raise ConfigError(f"passwords have at least {MIN_PASSWORD} characters")
        return self.hasher.hash(password)

    def set_password(self, name: str, password: str) -> None:
        digest = self._hash(password)
        with self.wengine.begin() as conn:
            n = conn.execute(update(users).where(users.c.name == name).values(
                password_hash=digest, failed_logins=0, locked_until=None)).rowcount
            if n:
                self._end_sessions(conn, name)
        if not n:
            raise NotFound(f"no user {name!r}")

    def set_disabled(self, name: str, disabled: bool = True) -> None:
        with self.wengine.begin() as conn:
            n = conn.execute(update(users).where(users.c.name == name).values(disabled=disabled)).rowcount
            if n and disabled:
                self._end_sessions(conn, name)
        if not n:
            raise NotFound(f"no user {name!r}")

    @staticmethod
    def _end_sessions(conn: Any, name: str) -> None:
        pk = select(users.c.pk).where(users.c.name == name).scalar_subquery()
        conn.execute(delete(sessions).where(sessions.c.user_pk == pk))
        conn.execute(delete(api_tokens).where(api_tokens.c.user_pk == pk))

    def list_users(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(users.c.name, users.c.roles, users.c.disabled, users.c.person_name,
                                       users.c.locked_until).order_by(users.c.name)).all()
        return [{"name": r.name, "roles": r.roles.split(","), "disabled": r.disabled,
                 "person_name": r.person_name, "locked": bool(_aware(r.locked_until)
                                                              and _aware(r.locked_until) > _now())}  # type: ignore[operator]
                for r in rows]

    def has_admin(self) -> bool:
        """True once an enabled admin exists (until then the server refuses every request)."""
        with self.engine.connect() as conn:
            for r in conn.execute(select(users.c.roles).where(users.c.disabled.is_(False))):
                if "admin" in r.roles.split(","):
                    return True
        return False

    def principal(self, name: str, via: str = "password") -> Principal:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        if row is None or row.disabled:
            raise AuthError("unknown or disabled user")
        return self._principal(row, via)

    @staticmethod
    def _principal(row: Any, via: str) -> Principal:
        return Principal(row.name, frozenset(r for r in row.roles.split(",") if r), row.person_name,
                         _split(row.institutions), _split(row.departments), _split(row.issuers), via)

    # ------------------------------------------------------------------ passwords
    def authenticate(self, name: str, password: str, source: str = "") -> Principal:
        """Check a password; count failures and lock the account after ``max_failures``."""
        self.limiter.check(source or "?")
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        if row is None or not row.password_hash:
            self._verify(self._dummy, password)
            raise AuthError("wrong user name or password")
        locked = _aware(row.locked_until)
        if locked is not None and locked > _now():
            raise AuthError("the account is locked after repeated failures; try again later")
        if not self._verify(row.password_hash, password) or row.disabled:
            failures = row.failed_logins + 1
            values: dict[str, Any] = {"failed_logins": failures}
            if failures >= self.max_failures:
                values = {"failed_logins": 0, "locked_until": _now() + self.lock_for}
            with self.wengine.begin() as conn:
                conn.execute(update(users).where(users.c.pk == row.pk).values(**values))
            raise AuthError("wrong user name or password")
        with self.wengine.begin() as conn:
            conn.execute(update(users).where(users.c.pk == row.pk).values(failed_logins=0, locked_until=None))
            if self.hasher.check_needs_rehash(row.password_hash):
                conn.execute(update(users).where(users.c.pk == row.pk).values(
                    password_hash=self.hasher.hash(password)))
        return self._principal(row, "password")

    def _verify(self, digest: str, password: str) -> bool:
        try:
            return bool(self.hasher.verify(digest, password))
        except (VerificationError, InvalidHashError):
            return False

    # ------------------------------------------------------------------ API tokens
    def create_token(self, name: str, label: str = "", days: float | None = None) -> str:
        """A new API token for ``name`` (shown once; only its hash is kept)."""
        token = "vsl_" + secrets.token_urlsafe(32)
        with self.wengine.begin() as conn:
            pk = conn.execute(select(users.c.pk).where(users.c.name == name)).scalar()
            if pk is None:
                raise NotFound(f"no user {name!r}")
            conn.execute(insert(api_tokens).values(
                token_hash=_sha(token), user_pk=pk, label=label[:128], created_at=_now(),
                expires_at=_now() + timedelta(days=days) if days else None))
        return token

    def principal_for_token(self, token: str) -> Principal:
        with self.engine.connect() as conn:
            row = conn.execute(select(users, api_tokens.c.expires_at)
                               .join(api_tokens, api_tokens.c.user_pk == users.c.pk)
                               .where(api_tokens.c.token_hash == _sha(token))).first()
        if row is None or row.disabled:
            raise AuthError("invalid token")
        expires = _aware(row.expires_at)
        if expires is not None and expires < _now():
            raise AuthError("the token has expired")
        return self._principal(row, "token")

    # ------------------------------------------------------------------ sessions
    def open_session(self, principal: Principal) -> tuple[str, str]:
        """A browser session: (cookie value, CSRF token). Only hashes are stored."""
        sid = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        with self.wengine.begin() as conn:
            pk = conn.execute(select(users.c.pk).where(users.c.name == principal.name)).scalar()
            if pk is None:
                raise AuthError("unknown user")
            conn.execute(insert(sessions).values(session_hash=_sha(sid), user_pk=pk, csrf=csrf,
                                                 created_at=_now(), last_seen=_now()))
        return sid, csrf

    def principal_for_session(self, sid: str) -> tuple[Principal, str]:
        """The session's principal and CSRF token; expired after ``session_idle_minutes`` idle."""
        now = _now()
        with self.engine.connect() as conn:
            row = conn.execute(select(users, sessions.c.pk.label("spk"), sessions.c.csrf,
                                      sessions.c.last_seen)
                               .join(sessions, sessions.c.user_pk == users.c.pk)
                               .where(sessions.c.session_hash == _sha(sid))).first()
        if row is None or row.disabled:
            raise AuthError("no session; sign in")
        last = _aware(row.last_seen)
        if last is None or now - last > self.idle:
            with self.wengine.begin() as conn:
                conn.execute(delete(sessions).where(sessions.c.pk == row.spk))
            raise AuthError("the session expired after inactivity; sign in again")
        if now - last > timedelta(seconds=30):  # touch at most every 30 s
            with self.wengine.begin() as conn:
                conn.execute(update(sessions).where(sessions.c.pk == row.spk).values(last_seen=now))
        return self._principal(row, "session"), str(row.csrf)

    def close_session(self, sid: str) -> None:
        with self.wengine.begin() as conn:
            conn.execute(delete(sessions).where(sessions.c.session_hash == _sha(sid)))

    # ------------------------------------------------------------------ shares
    def share_study(self, study_uid: str, name: str) -> None:
        with self.wengine.begin() as conn:
            pk = conn.execute(select(users.c.pk).where(users.c.name == name)).scalar()
            if pk is None:
                raise NotFound(f"no user {name!r}")
            exists = conn.execute(select(study_shares.c.pk).where(
                study_shares.c.study_uid == study_uid, study_shares.c.user_pk == pk)).first()
            if exists is None:
                conn.execute(insert(study_shares).values(study_uid=study_uid, user_pk=pk, created_at=_now()))

    def shared_studies(self, name: str) -> set[str]:
        with self.engine.connect() as conn:
            return {r.study_uid for r in conn.execute(
                select(study_shares.c.study_uid).join(users, users.c.pk == study_shares.c.user_pk)
                .where(users.c.name == name))}


class OidcVerifier:
    """Bearer tokens from an OpenID Connect issuer (RFC 7519 JWT, keys from a JWKS).

    Only asymmetric algorithms are accepted (never ``none``, never HMAC with a public key);
    issuer, audience, expiry and not-before are checked. Roles come from a claim.
    """

    ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")

    def __init__(self, issuer: str, audience: str, *, jwks_url: str = "", jwks_file: str = "",
                 role_claim: str = "roles", name_claim: str = "preferred_username", leeway: int = 30) -> None:
        import jwt

        if not (jwks_url or jwks_file):
            raise ConfigError("OIDC needs a JWKS URL or file")
        self.issuer = issuer
        self.audience = audience
        self.role_claim = role_claim
        self.name_claim = name_claim
        self.leeway = leeway
        self._jwks_file = jwks_file
        self._client = jwt.PyJWKClient(jwks_url) if jwks_url else None

    def _key(self, token: str) -> Any:
        import json

        import jwt

        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        header = jwt.get_unverified_header(token)
        with open(self._jwks_file, encoding="utf-8") as f:
            keys = jwt.PyJWKSet.from_dict(json.load(f)).keys
        kid = header.get("kid")
        for k in keys:
            if kid is None or k.key_id == kid:
                return k.key
        raise AuthError("no key in the JWKS matches the token")

    def verify(self, token: str) -> Principal:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in self.ALGORITHMS:
                raise AuthError(f"token algorithm {header.get('alg')!r} is not accepted")
            claims = jwt.decode(token, self._key(token), algorithms=list(self.ALGORITHMS),
                                audience=self.audience, issuer=self.issuer, leeway=self.leeway,
                                options={"require": ["exp", "iss", "aud", "sub"]})
        except AuthError:
            raise
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired") from None
        except (jwt.PyJWTError, VesaliusError, OSError, ValueError) as exc:
            raise AuthError(f"invalid token ({type(exc).__name__})") from None
        roles = claims.get(self.role_claim, [])
        if isinstance(roles, str):
            roles = roles.split()
        known = frozenset(r for r in roles if r in ROLES)
        name = str(claims.get(self.name_claim) or claims["sub"])
        return Principal(name, known, str(claims.get("dicom_person_name", "")),
                         tuple(claims.get("institutions", ()) or ()), tuple(claims.get("departments", ()) or ()),
                         tuple(claims.get("issuers", ()) or ()), "oidc")

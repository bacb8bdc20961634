"""Identities and the policy point: passwords, lockout, tokens, sessions, OIDC JWTs, roles."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import create_engine, update
from sqlalchemy.engine import Engine

from vesalius.errors import ConfigError
from vesalius.index.models import metadata
from vesalius.security.identity import AuthError, IdentityStore, OidcVerifier, Principal
from vesalius.security.policy import Action, decide, must_deidentify, scope_conditions
from vesalius.security.tables import sessions

FAST = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = create_engine(f"sqlite:///{tmp_path / 'id.sqlite'}")
    metadata.create_all(e)
    yield e
    e.dispose()


@pytest.fixture
def ids(engine: Engine) -> IdentityStore:
    s = IdentityStore(engine, max_failures=3, lock_minutes=1, session_idle_minutes=15, hasher=FAST)
    s.add_user("alice", "correct horse battery", ["radiologist"], person_name="SMITH^ALICE")
    return s


def test_password_login_and_hashes_not_plain(ids: IdentityStore, engine: Engine) -> None:
    p = ids.authenticate("alice", "correct horse battery", "10.0.0.1")
    assert p.name == "alice" and p.roles == {"radiologist"} and p.via == "password"
    with engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT password_hash FROM users").scalar()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    with pytest.raises(AuthError) as e1:
        ids.authenticate("alice", "wrong password!", "10.0.0.1")
    with pytest.raises(AuthError) as e2:
        ids.authenticate("nobody", "wrong password!", "10.0.0.1")
    assert str(e1.value) == str(e2.value)  # never says which names exist


def test_lockout_after_repeated_failures(ids: IdentityStore) -> None:
    for _ in range(3):
        with pytest.raises(AuthError):
            ids.authenticate("alice", "guess guess guess", "10.0.0.2")
    with pytest.raises(AuthError, match="locked"):
        ids.authenticate("alice", "correct horse battery", "10.0.0.2")


def test_rate_limit_per_source(ids: IdentityStore) -> None:
    ids.limiter.per_minute = 5
    for _ in range(5):
        with pytest.raises(AuthError):
            ids.authenticate("nobody", "x" * 12, "10.9.9.9")
    with pytest.raises(AuthError, match="too many"):
        ids.authenticate("alice", "correct horse battery", "10.9.9.9")
    assert ids.authenticate("alice", "correct horse battery", "10.0.0.3").name == "alice"


def test_user_management_rules(ids: IdentityStore) -> None:
    assert not ids.has_admin()
    with pytest.raises(ConfigError):
        ids.add_user("bob", "short", ["admin"])
    with pytest.raises(ConfigError):
        ids.add_user("bob", "long enough pass", ["superuser"])
    with pytest.raises(ConfigError):
        ids.add_user("../etc", "long enough pass", ["admin"])
    ids.add_user("root", "long enough pass", ["admin"])
    assert ids.has_admin()
    ids.set_disabled("root")
    assert not ids.has_admin()
    with pytest.raises(AuthError):
        ids.authenticate("root", "long enough pass", "10.0.0.4")


def test_api_tokens(ids: IdentityStore, engine: Engine) -> None:
    token = ids.create_token("alice", "pacs-bridge")
    assert ids.principal_for_token(token).name == "alice"
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT token_hash FROM api_tokens").scalar() != token
    with pytest.raises(AuthError):
        ids.principal_for_token(token + "x")
    short = ids.create_token("alice", "short", days=-1)
    with pytest.raises(AuthError, match="expired"):
        ids.principal_for_token(short)
    ids.set_password("alice", "another long password")  # ends sessions and tokens
    with pytest.raises(AuthError):
        ids.principal_for_token(token)


def test_sessions_expire_when_idle(ids: IdentityStore, engine: Engine) -> None:
    p = ids.authenticate("alice", "correct horse battery", "10.0.0.5")
    sid, csrf = ids.open_session(p)
    got, got_csrf = ids.principal_for_session(sid)
    assert got.name == "alice" and got_csrf == csrf and got.via == "session"
    with engine.begin() as conn:
        conn.execute(update(sessions).values(last_seen=datetime.now(UTC) - timedelta(minutes=16)))
    with pytest.raises(AuthError, match="inactivity"):
        ids.principal_for_session(sid)
    with pytest.raises(AuthError):
        ids.principal_for_session(sid)  # and it is gone


# --------------------------------------------------------------------------- OIDC


@pytest.fixture
def issuer(tmp_path: Path) -> tuple[rsa.RSAPrivateKey, OidcVerifier]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return key, OidcVerifier("https://idp.example.org", "vesalius", jwks_file=str(path))


def _token(key: object, **over: object) -> str:
    now = int(time.time())
    claims = {"iss": "https://idp.example.org", "aud": "vesalius", "sub": "u1", "preferred_username": "carol",
              "roles": ["referring"], "iat": now, "exp": now + 300, "dicom_person_name": "JONES^CAROL"}
    claims.update(over)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})  # type: ignore[arg-type]


def test_oidc_valid_token(issuer: tuple[rsa.RSAPrivateKey, OidcVerifier]) -> None:
    key, v = issuer
    p = v.verify(_token(key))
    assert p.name == "carol" and p.roles == {"referring"} and p.via == "oidc"
    assert p.person_name == "JONES^CAROL"


def test_oidc_refuses_forged_tokens(issuer: tuple[rsa.RSAPrivateKey, OidcVerifier]) -> None:
    key, v = issuer
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    bad = [
        _token(other),  # wrong key
        _token(key, exp=now - 120),  # expired
        _token(key, aud="someone-else"),
        _token(key, iss="https://evil.example.com"),
        jwt.encode({"iss": "https://idp.example.org", "aud": "vesalius", "sub": "u1", "exp": now + 300},
                   None, algorithm="none"),  # alg none
        jwt.encode({"iss": "https://idp.example.org", "aud": "vesalius", "sub": "u1", "exp": now + 300},
                   "a-shared-secret-that-is-long-enough-32", algorithm="HS256"),  # HMAC
        _token(key)[:-5] + "AAAAA",  # tampered signature
        "not.a.jwt",
    ]
    for token in bad:
        with pytest.raises(AuthError):
            v.verify(token)


# --------------------------------------------------------------------------- policy

STUDY_A = {"StudyInstanceUID": "1.2.3", "ReferringPhysicianName": "JONES^CAROL^^DR",
           "InstitutionName": "NORTH", "InstitutionalDepartmentName": "RAD", "IssuerOfPatientID": "H1"}
STUDY_B = {"StudyInstanceUID": "1.2.4", "ReferringPhysicianName": "HOUSE^GREGORY",
           "InstitutionName": "SOUTH", "InstitutionalDepartmentName": "RAD", "IssuerOfPatientID": "H2"}


def P(*roles: str, **kw: object) -> Principal:
    return Principal("u", frozenset(roles), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("role, actions", [
    ("admin", set(Action)),
    ("radiologist", {Action.ECHO, Action.QUERY, Action.RETRIEVE, Action.STORE, Action.EXPORT}),
    ("technologist", {Action.ECHO, Action.QUERY, Action.RETRIEVE, Action.STORE}),
    ("referring", {Action.ECHO, Action.QUERY, Action.RETRIEVE}),
    ("auditor", {Action.AUDIT}),
    ("researcher", {Action.ECHO, Action.QUERY, Action.RETRIEVE, Action.EXPORT}),
])
def test_role_matrix(role: str, actions: set[Action]) -> None:
    p = P(role, person_name="JONES^CAROL")
    for action in Action:
        assert decide(p, action) == (action in actions), (role, action)


def test_referring_sees_own_and_shared_studies_only() -> None:
    p = P("referring", person_name="Jones^Carol")
    assert decide(p, Action.RETRIEVE, STUDY_A)
    assert not decide(p, Action.RETRIEVE, STUDY_B)
    assert decide(p, Action.RETRIEVE, STUDY_B, shared=lambda: {"1.2.4"})


def test_scopes_limit_every_role_but_admin() -> None:
    north = P("radiologist", institutions=("NORTH",))
    assert decide(north, Action.QUERY, STUDY_A) and not decide(north, Action.QUERY, STUDY_B)
    assert not decide(north, Action.STORE, STUDY_B)
    conds = scope_conditions(north)
    assert [(c.keyword, c.values) for c in conds] == [("InstitutionName", ("NORTH",))]
    assert scope_conditions(P("admin", institutions=("NORTH",))) == []
    assert decide(P("admin"), Action.DELETE, STUDY_B)


def test_researcher_gets_deidentified_data() -> None:
    assert must_deidentify(P("researcher"))
    assert not must_deidentify(P("researcher", "radiologist"))
    assert not must_deidentify(P("radiologist"))

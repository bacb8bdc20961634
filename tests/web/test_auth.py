"""Authentication and access control over HTTP: a closed start, credentials of every kind,
the login page and its cookie, CSRF, and the role x DICOMweb access matrix."""

from __future__ import annotations

import base64
import io
import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import jwt
import pydicom
import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import make_settings
from tests.factory import instance, uid
from tests.web.test_dicomweb import multipart_body
from vesalius.archive import Archive, open_archive

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from vesalius.web.app import create_app

DW = "/dicom-web"
FAST = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
PASSWORD = "a long enough password"


def north(study: str, n: int = 0, **kw: object) -> bytes:
    return instance(study, "SE1", n, InstitutionName="NORTH", **kw)  # type: ignore[arg-type]


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    a = open_archive(make_settings(tmp_path))
    a.identities.hasher = FAST
    yield a
    a.close()


@pytest.fixture
def app_client(archive: Archive) -> TestClient:
    return TestClient(create_app(archive, viewer=True), follow_redirects=False)


def token_for(archive: Archive, name: str, *roles: str, **kw: object) -> dict[str, str]:
    archive.identities.add_user(name, PASSWORD, list(roles), **kw)  # type: ignore[arg-type]
    return {"Authorization": "Bearer " + archive.identities.create_token(name)}


@pytest.fixture
def loaded(archive: Archive) -> Archive:
    """Two studies: A (NORTH, referred by Dr Jones), B (SOUTH, referred by Dr House)."""
    assert archive.store_bytes(north("A", ReferringPhysicianName="JONES^CAROL")).ok
    assert archive.store_bytes(instance("B", "SE1", 0, InstitutionName="SOUTH",
                                        ReferringPhysicianName="HOUSE^GREGORY", patient_id="PB")).ok
    return archive


ROUTES = [
    "/dicom-web/studies", "/dicom-web/series", "/dicom-web/instances",
    f"/dicom-web/studies/{uid('A')}", f"/dicom-web/studies/{uid('A')}/metadata",
    f"/dicom-web/studies/{uid('A')}/series", f"/dicom-web/studies/{uid('A')}/thumbnail",
    f"/dicom-web/studies/{uid('A')}/series/{uid('A', 'SE1')}/instances/{uid('A', 'SE1', 0)}/frames/1",
    f"/dicom-web/studies/{uid('A')}/series/{uid('A', 'SE1')}/instances/{uid('A', 'SE1', 0)}/rendered",
    f"/wado?requestType=WADO&studyUID={uid('A')}&seriesUID={uid('A', 'SE1')}&objectUID={uid('A', 'SE1', 0)}",
    "/", "/viewer?StudyInstanceUIDs=" + uid("A"), "/local",
]


def test_closed_until_an_admin_exists(loaded: Archive, app_client: TestClient) -> None:
    assert app_client.get("/healthz").status_code == 200
    for route in ROUTES:
        r = app_client.get(route)
        assert r.status_code == 503, route
        assert "vesalius user add" in r.json()["error"]
    # even with a valid token of a non-admin user
    headers = token_for(loaded, "tech", "technologist")
    assert app_client.get(ROUTES[0], headers=headers).status_code == 503


def test_anonymous_requests_get_no_patient_data(loaded: Archive, app_client: TestClient) -> None:
    token_for(loaded, "root", "admin")
    for route in ROUTES:
        r = app_client.get(route, headers={"Accept": "application/json"})
        assert r.status_code == 401, route
        assert b"DOE" not in r.content and uid("A").encode() not in r.content
        assert r.headers["www-authenticate"].startswith("Bearer")
        r = app_client.get(route, headers={"Accept": "text/html"})
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), route
    body, ctype = multipart_body([north("C")])
    assert app_client.post(f"{DW}/studies", content=body, headers={"Content-Type": ctype}).status_code == 401
    assert app_client.delete(f"{DW}/studies/{uid('A')}").status_code == 401
    assert loaded.stats()["studies"] == 2


def test_bearer_basic_and_bad_credentials(loaded: Archive, app_client: TestClient) -> None:
    headers = token_for(loaded, "root", "admin")
    assert len(app_client.get(f"{DW}/studies", headers=headers).json()) == 2
    basic = "Basic " + base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    assert app_client.get(f"{DW}/studies", headers={"Authorization": basic}).status_code == 200
    for bad in ("Bearer vsl_forged", "Bearer not-a-jwt", "Basic " + base64.b64encode(b"root:wrong").decode(),
                "Basic !!!", "Digest abc"):
        r = app_client.get(f"{DW}/studies", headers={"Authorization": bad})
        assert r.status_code == 401, bad


def test_login_session_csrf_and_logout(loaded: Archive, app_client: TestClient) -> None:
    token_for(loaded, "root", "admin")
    r = app_client.get("/login")
    assert r.status_code == 200 and "<form" in r.text
    r = app_client.post("/login", data={"username": "root", "password": "wrong password", "next": "/"})
    assert r.status_code == 401 and "vesalius_session" not in r.cookies
    r = app_client.post("/login", data={"username": "root", "password": PASSWORD, "next": "//evil.example.com/x"})
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert app_client.get(f"{DW}/studies").status_code == 200  # the client keeps the cookie
    body, ctype = multipart_body([north("C")])
    r = app_client.post(f"{DW}/studies", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]  # no Origin: refused
    r = app_client.post(f"{DW}/studies", content=body,
                        headers={"Content-Type": ctype, "Origin": "https://evil.example.com"})
    assert r.status_code == 403
    r = app_client.post(f"{DW}/studies", content=body,
                        headers={"Content-Type": ctype, "Origin": "http://testserver"})
    assert r.status_code == 200
    assert app_client.post("/logout").status_code == 303
    app_client.cookies.clear()
    assert app_client.get(f"{DW}/studies").status_code == 401


# --------------------------------------------------------------------------- the access matrix

ALLOWED = {
    # role: (QIDO, WADO, STOW, DELETE)
    "admin": (True, True, True, True),
    "radiologist": (True, True, True, False),
    "technologist": (True, True, True, False),
    "referring": (True, True, False, False),
    "auditor": (False, False, False, False),
    "researcher": (False, False, False, False),
}


@pytest.mark.parametrize("role", list(ALLOWED))
def test_role_matrix(loaded: Archive, app_client: TestClient, role: str) -> None:
    token_for(loaded, "root", "admin")
    headers = token_for(loaded, "u1", role, person_name="JONES^CAROL")
    q, w, s, d = ALLOWED[role]
    r = app_client.get(f"{DW}/studies", headers=headers)
    assert (r.status_code == 200) == q, r.text
    inst = f"{DW}/studies/{uid('A')}/series/{uid('A', 'SE1')}/instances/{uid('A', 'SE1', 0)}"
    r = app_client.get(inst, headers=headers)
    assert (r.status_code == 200) == w, r.text
    body, ctype = multipart_body([north("C")])
    r = app_client.post(f"{DW}/studies", content=body, headers={**headers, "Content-Type": ctype})
    assert (r.status_code == 200) == s, r.text
    r = app_client.delete(inst, headers=headers)
    assert (r.status_code == 200) == d, r.text
    if not q:
        assert r.status_code == 403 or r.status_code == 200


def test_referring_sees_only_own_and_shared(loaded: Archive, app_client: TestClient) -> None:
    token_for(loaded, "root", "admin")
    headers = token_for(loaded, "carol", "referring", person_name="Jones^Carol")
    studies = [s["0020000D"]["Value"][0] for s in app_client.get(f"{DW}/studies", headers=headers).json()]
    assert studies == [uid("A")]
    assert len(app_client.get(f"{DW}/series", headers=headers).json()) == 1
    r = app_client.get(f"{DW}/studies/{uid('B')}/metadata", headers=headers)
    assert r.status_code == 404  # not disclosed
    loaded.identities.share_study(uid("B"), "carol")
    assert app_client.get(f"{DW}/studies/{uid('B')}/metadata", headers=headers).status_code == 200


def test_institution_scope(loaded: Archive, app_client: TestClient) -> None:
    token_for(loaded, "root", "admin")
    headers = token_for(loaded, "nrad", "radiologist", institutions=("NORTH",))
    studies = [s["0020000D"]["Value"][0] for s in app_client.get(f"{DW}/studies", headers=headers).json()]
    assert studies == [uid("A")]
    assert app_client.get(f"{DW}/studies/{uid('B')}", headers=headers).status_code == 404
    body, ctype = multipart_body([north("C"), instance("D", "SE1", 0, InstitutionName="SOUTH")])
    r = app_client.post(f"{DW}/studies", content=body, headers={**headers, "Content-Type": ctype})
    assert r.status_code == 202
    assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0x0124]
    assert loaded.stats()["studies"] == 3  # A, B and C; D refused


def test_oidc_bearer_tokens(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", alg="RS256", use="sig")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    a = open_archive(make_settings(tmp_path, oidc_issuer="https://idp.test", oidc_jwks=str(jwks)))
    try:
        a.identities.hasher = FAST
        a.identities.add_user("root", PASSWORD, ["admin"])
        assert a.store_bytes(instance("A", "SE1", 0)).ok
        c = TestClient(create_app(a, viewer=False))
        now = int(time.time())
        claims = {"iss": "https://idp.test", "aud": "vesalius", "sub": "s1", "preferred_username": "rad1",
                  "roles": ["radiologist"], "exp": now + 300}
        good = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
        assert c.get(f"{DW}/studies", headers={"Authorization": f"Bearer {good}"}).status_code == 200
        none = jwt.encode(claims, None, algorithm="none")
        expired = jwt.encode({**claims, "exp": now - 300}, key, algorithm="RS256", headers={"kid": "k1"})
        for bad in (none, expired):
            assert c.get(f"{DW}/studies", headers={"Authorization": f"Bearer {bad}"}).status_code == 401
    finally:
        a.close()


def test_stored_instance_bytes_unchanged_by_auth(loaded: Archive, app_client: TestClient) -> None:
    headers = token_for(loaded, "root", "admin")
    r = app_client.get(f"/wado?requestType=WADO&studyUID={uid('A')}&seriesUID={uid('A', 'SE1')}"
                       f"&objectUID={uid('A', 'SE1', 0)}&contentType=application/dicom", headers=headers)
    assert pydicom.dcmread(io.BytesIO(r.content)).InstitutionName == "NORTH"


def test_every_audited_action_leaves_a_record(loaded: Archive, app_client: TestClient) -> None:
    headers = token_for(loaded, "root", "admin")
    ref = token_for(loaded, "carol", "referring", person_name="JONES^CAROL")
    basic_bad = {"Authorization": "Basic " + base64.b64encode(b"root:wrong").decode()}
    assert app_client.get(f"{DW}/studies", headers=basic_bad).status_code == 401
    assert app_client.post("/login", data={"username": "root", "password": PASSWORD}).status_code == 303
    app_client.cookies.clear()
    assert app_client.get(f"{DW}/studies?PatientID=PB", headers=headers).status_code == 200
    inst = f"{DW}/studies/{uid('A')}/series/{uid('A', 'SE1')}/instances/{uid('A', 'SE1', 0)}"
    for _ in range(3):  # aggregated into one Instances Accessed message
        assert app_client.get(inst + "/frames/1", headers=headers).status_code == 200
    body, ctype = multipart_body([north("C")])
    assert app_client.post(f"{DW}/studies", content=body, headers={**headers, "Content-Type": ctype}).status_code == 200
    assert app_client.get(f"{DW}/studies/{uid('B')}/metadata", headers=ref).status_code == 404
    assert app_client.delete(f"{DW}/studies/{uid('B')}", headers=ref).status_code == 403
    assert app_client.delete(f"{DW}/studies/{uid('C')}", headers=headers).status_code == 200
    loaded.auditor.flush()
    log = loaded.auditor.log
    events = [(r.event_id, r.action, r.outcome, r.user_id) for r in log.search(limit=100)]
    assert ("110114", "E", 4, "root") in events  # failed Basic login
    assert ("110114", "E", 0, "root") in events  # login page success
    assert ("110112", "E", 0, "root") in events  # query
    assert ("110103", "R", 0, "root") in events  # read (viewed)
    assert ("110103", "C", 0, "root") in events  # stored
    assert ("110105", "D", 0, "root") in events  # study deleted
    alerts = [e for e in events if e[0] == "110113"]
    assert len(alerts) == 2  # the referring user's refused metadata and delete
    reads = log.search(event_id="110103", study_uid=uid("A"))
    assert len(reads) == 1 and "3 request(s)" in reads[0].xml
    assert log.verify().ok

"""Shared fixtures: an archive on SQLite and on PostgreSQL, a running DICOM listener.

PostgreSQL is expected on 127.0.0.1:5432 (trust auth, database ``test``); each test gets its
own schema. Without PostgreSQL the postgres variants skip, except in CI (``CI=true``)
where a missing PostgreSQL fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vesalius.archive import Archive, open_archive
from vesalius.config import Settings, load_settings
from vesalius.dimse.server import DimseServer

PG_BASE = os.environ.get("VESALIUS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_BASE.replace("postgresql+psycopg", "postgresql"), connect_timeout=3):
            return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"PostgreSQL not reachable at {PG_BASE}: {type(exc).__name__}"


_PG_PROBLEM: str | None | bool = False


def pg_problem() -> str | None:
    global _PG_PROBLEM
    if _PG_PROBLEM is False:
        _PG_PROBLEM = _pg_available()
    return _PG_PROBLEM  # type: ignore[return-value]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    problem = pg_problem()
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI needs PostgreSQL: {problem}")
        pytest.skip(problem)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    raw = PG_BASE.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(raw, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.sqlite'}"
    return str(request.getfixturevalue("pg_url"))


def make_settings(tmp_path: Path, db: str = "", **kw: object) -> Settings:
    return load_settings(None, env={}, data_dir=tmp_path / "data", db=db or None, dicom_host="127.0.0.1",
                         dicom_port=0, **kw)


@pytest.fixture
def archive(tmp_path: Path, db_url: str) -> Iterator[Archive]:
    a = open_archive(make_settings(tmp_path, db_url))
    yield a
    a.close()


@pytest.fixture
def sqlite_archive(tmp_path: Path) -> Iterator[Archive]:
    a = open_archive(make_settings(tmp_path))
    yield a
    a.close()


@pytest.fixture
def server(archive: Archive) -> Iterator[DimseServer]:
    srv = DimseServer(archive, host="127.0.0.1", port=0)
    srv.start()
    yield srv
    srv.stop(grace=5.0)

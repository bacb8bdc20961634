"""Opening the index database: SQLite (embedded default) or PostgreSQL via psycopg 3.

The schema is created and upgraded with Alembic (``vesalius/index/migrations``) on open.
SQLite runs in WAL mode with ``synchronous=FULL`` so a committed index row survives a crash.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine

from vesalius.errors import ConfigError

_MIGRATIONS = Path(__file__).parent / "migrations"
_upgrade_lock = threading.Lock()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-65536")
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()


def write_engine(engine: Engine) -> Engine:
    """The engine to use for write transactions.

    On SQLite: its own small pool whose transactions take the write lock at BEGIN
    (BEGIN IMMEDIATE) and do not wait in SQLite's busy handler (which sleeps in steps of up
    to 100 ms); the writer retries at once instead (see ``IndexWriter``), which keeps
    several processes writing one file fast.
    """
    if engine.dialect.name != "sqlite":
        return engine
    writer = create_engine(engine.url, connect_args={"check_same_thread": False, "timeout": 0},
                           pool_size=8, max_overflow=32)
    event.listen(writer, "connect", _sqlite_pragmas)
    event.listen(writer, "connect", lambda dbapi_conn, _rec: setattr(dbapi_conn, "isolation_level", None))
    event.listen(writer, "connect", _no_busy_wait)
    event.listen(writer, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return writer


def locking_engine(engine: Engine) -> Engine:
    """An engine for occasional writes (users, sessions, remotes) that take SQLite's write
    lock at BEGIN (BEGIN IMMEDIATE) and wait for it, so a read-then-write transaction never
    fails because another connection committed in between. PostgreSQL: ``engine`` itself."""
    if engine.dialect.name != "sqlite":
        return engine
    locking = create_engine(engine.url, connect_args={"check_same_thread": False, "timeout": 30},
                            pool_size=2, max_overflow=8)
    event.listen(locking, "connect", _sqlite_pragmas)
    event.listen(locking, "connect", lambda dbapi_conn, _rec: setattr(dbapi_conn, "isolation_level", None))
    event.listen(locking, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return locking


def _no_busy_wait(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=0")
    cur.close()


def make_engine(url: str) -> Engine:
    """Create the engine for ``url`` with the settings the archive relies on."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        db_path = url.split("///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=20, max_overflow=60)
        event.listen(engine, "connect", _sqlite_pragmas)
        # Let SQLAlchemy's transaction handling own BEGIN, as the pysqlite docs advise.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
    elif url.startswith("postgresql+psycopg"):
        engine = create_engine(url, pool_size=20, max_overflow=60, pool_pre_ping=True)
    else:
        raise ConfigError(f"unsupported database URL {url.split(':', 1)[0]!r}: use sqlite:/// or postgresql+psycopg://")
    return engine


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent)."""
    from alembic import command

    with _upgrade_lock:
        command.upgrade(_alembic_config(engine), "head")


def open_index(url: str) -> Engine:
    """Open (and create or upgrade) the index at ``url``."""
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":
        # Set pysqlite to autocommit mode so the 'begin' listener above controls transactions.
        @event.listens_for(engine, "connect")
        def _no_pysqlite_tx(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None

    upgrade(engine)
    if engine.dialect.name == "sqlite":
        # Planner statistics (bounded sampling: well under a second at a million instances).
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA analysis_limit=400")
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    return engine


def table_names(engine: Engine) -> list[str]:
    return list(inspect(engine).get_table_names())

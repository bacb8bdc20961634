"""Durability: ``kill -9`` of ``vesalius serve`` in the middle of ingest from four modalities.

What a modality was told is stored (C-STORE Success) must be in the index after a restart,
byte for byte as hashed; start-up recovery must leave no partial writes and no objects that
no index row references (PS3.4 B.2.3: Success means the SCP has taken responsibility).
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from tests import peers
from tests.factory import instance, uid
from tests.test_cli import Served, archive_at, cli, object_files, write
from tests.test_serve import StoreLog, all_lines, start_storescu
from vesalius.index.models import instances

pytestmark = pytest.mark.skipif(not peers.dcmtk_available("storescu", "echoscu"),
                                reason="dcmtk is not installed (apt-get install dcmtk)")

SENDERS = 4
PER_SENDER = 100


class Sender(threading.Thread):
    """One storescu association, its output read line by line as it comes."""

    def __init__(self, files: list[Path], port: int, calling_aet: str,
                 progress: threading.Semaphore) -> None:
        super().__init__(daemon=True)
        self.files = files
        self.log = StoreLog()
        self.progress = progress
        self.proc = start_storescu(files, "VESALIUS", port, calling_aet=calling_aet)

    def run(self) -> None:
        for line in all_lines(self.proc):
            if self.log.feed(line) == "Success":
                self.progress.release()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self.join(timeout=30)


@pytest.mark.parametrize(("backend", "workers"), [("sqlite", 1), ("sqlite", 2), ("postgresql", 2)],
                         ids=["sqlite", "sqlite-2-workers", "postgresql-2-workers"])
def test_kill_9_mid_ingest_loses_nothing_acknowledged(backend: str, workers: int, tmp_path: Path,
                                                      request: pytest.FixtureRequest) -> None:
    """SIGKILL to every serve process (a crashed machine) while four modalities send."""
    db = str(request.getfixturevalue("pg_url")) if backend == "postgresql" else None
    data = tmp_path / "data"
    sop_of: dict[str, str] = {}
    batches: list[list[Path]] = []
    for s in range(SENDERS):
        study = f"CRASH{s}"
        batch = [write(tmp_path / "in" / study / f"{i:03d}.dcm",
                       instance(study, "SE1", i, rows=64, seed=s)) for i in range(PER_SENDER)]
        sop_of.update({str(p): uid(study, "SE1", i) for i, p in enumerate(batch)})
        batches.append(batch)

    srv = Served(data, db=db, workers=workers)
    progress = threading.Semaphore(0)
    senders: list[Sender] = []
    try:
        srv.start()
        assert srv.proc is not None
        started = time.monotonic()
        senders = [Sender(b, srv.dicom_port, f"MODALITY{i}", progress)
                   for i, b in enumerate(batches)]
        for t in senders:
            t.start()
        # ~1 s into ingest, but never before some and never after all were acknowledged
        acknowledged = 0
        while acknowledged < SENDERS * PER_SENDER // 2:
            if not progress.acquire(timeout=30):
                pytest.fail(f"no progress from storescu:\n{srv.log}")
            acknowledged += 1
            if time.monotonic() - started > 1.0:
                break
        srv.kill()  # SIGKILL to the process group: no clean-up of any kind
        for t in senders:
            t.join(timeout=60)
    finally:
        for t in senders:
            t.stop()
        srv.kill()

    succeeded = {sop_of[f] for t in senders for f in t.log.succeeded}
    assert succeeded, "storescu reported no successful store"
    assert len(succeeded) < SENDERS * PER_SENDER, "the kill came after the end of ingest"
    failures = [s for t in senders for s in t.log.statuses.values() if s != "Success"]
    assert not failures, f"stores refused before the crash: {sorted(set(failures))}"

    # restart: start-up recovery runs, then the server answers again
    again = Served(data, db=db)
    try:
        again.start()
        peers.echoscu(again.ae_title, again.dicom_port)
        assert "Traceback" not in again.log
    finally:
        again.kill()

    with archive_at(data, db) as archive, archive.engine.connect() as conn:
        rows = {str(s): str(k) for s, k in conn.execute(select(instances.c.sop_uid,
                                                               instances.c.blob_key))}
    lost = succeeded - set(rows)
    assert not lost, f"{len(lost)} of {len(succeeded)} acknowledged instances are not indexed"
    assert set(rows) <= set(sop_of.values())

    objects = data / "storage" / "objects"
    for sop, key in rows.items():
        path = objects / key[:2] / key
        assert path.is_file(), f"index row {sop} points at a missing object"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == key, f"object of {sop} is altered"
    assert sorted(p.name for p in object_files(data)) == sorted(rows.values()), \
        "unreferenced objects survived start-up recovery"
    assert list((data / "storage" / "tmp").iterdir()) == [], "partial writes survived recovery"
    assert list((data / "storage" / "pending").iterdir()) == []

    verify = cli("verify", "--orphans", "--data-dir", data, *(["--db", db] if db else []))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"checked {len(rows)}: ok {len(rows)}, missing 0, altered 0, orphans 0" in verify.stdout


def test_recovery_removes_partial_and_unreferenced_writes(tmp_path: Path) -> None:
    """What a crash between write and index leaves behind is cleaned at the next start."""
    data = tmp_path / "data"
    kept = instance("REC", "SE1", 1)
    with archive_at(data) as archive:
        assert archive.store_bytes(kept).ok
        # a crash after the object was renamed into place but before the index commit ...
        orphan = instance("REC", "SE1", 2)
        key = hashlib.sha256(orphan).hexdigest()
        archive.store.put(key, orphan)
    # ... and one in the middle of writing the temporary file
    (data / "storage" / "tmp" / f"{'0' * 64}.deadbeef.part").write_bytes(orphan[:100])
    assert (data / "storage" / "objects" / key[:2] / key).is_file()

    srv = Served(data)
    try:
        srv.start()
    finally:
        srv.kill()
    assert "start-up recovery" in srv.log
    assert [p.name for p in object_files(data)] == [hashlib.sha256(kept).hexdigest()]
    assert list((data / "storage" / "tmp").iterdir()) == []
    assert list((data / "storage" / "pending").iterdir()) == []

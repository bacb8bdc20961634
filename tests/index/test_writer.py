"""The index writer under concurrency: SQLite group commit and delete."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import event

from tests.conftest import make_settings
from tests.factory import instance, uid
from vesalius.archive import Archive, open_archive
from vesalius.dicom.keys import Level


def test_group_commit_indexes_every_record_with_fewer_commits(tmp_path: Path) -> None:
    a = open_archive(make_settings(tmp_path))
    commits = []
    event.listen(a.writer.engine, "commit", lambda conn: commits.append(1))
    threads, per_thread = 8, 25
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for n in range(per_thread):
                # two studies shared by all threads, new series per thread: parents are created
                # inside grouped transactions
                data = instance(f"ST{t % 2}", f"SE{t}", n, patient_id=f"P{t % 2}", seed=t)
                assert a.store_bytes(data).ok
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    try:
        assert not errors
        stats = a.stats()
        assert stats["instances"] == threads * per_thread
        assert stats["studies"] == 2 and stats["series"] == threads and stats["patients"] == 2
        q = a.parse_qido(Level.STUDY, [])
        counts = {s["0020000D"]["Value"][0]: s["00201208"]["Value"][0]
                  for s in a.find(q, defaults=True)}
        assert counts == {uid("ST0"): 100, uid("ST1"): 100}
        assert len(commits) < threads * per_thread  # some records shared a commit
    finally:
        a.close()


def test_delete_recomputes_parents(archive: Archive) -> None:
    for n in range(3):
        assert archive.store_bytes(instance("A", "S1", n)).ok
    assert archive.store_bytes(instance("A", "S2", 0, modality="SR")).ok
    assert archive.delete(uid("A"), uid("A", "S2")) == 1
    [study] = list(archive.find(archive.parse_qido(Level.STUDY, []), defaults=True))
    assert study["00201208"]["Value"] == [3]
    assert study["00201206"]["Value"] == [1]
    assert study["00080061"]["Value"] == ["CT"]
    assert archive.delete(uid("A")) == 3
    assert archive.stats()["patients"] == 0


def test_scope_columns_are_filled_on_ingest_and_by_the_migration(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import select

    from vesalius.index.db import _alembic_config
    from vesalius.index.models import studies

    a = open_archive(make_settings(tmp_path))
    try:
        assert a.store_bytes(instance("A", "S1", 0, InstitutionName="NORTH",
                                      InstitutionalDepartmentName="RAD")).ok
        facts = a.study_facts(uid("A"))
        assert facts is not None and facts["InstitutionName"] == "NORTH"
        cfg = _alembic_config(a.engine)
        command.downgrade(cfg, "0003")  # an archive from before the columns existed
        command.upgrade(cfg, "head")  # filled again from the stored header
        with a.engine.connect() as conn:
            row = conn.execute(select(studies.c.institution, studies.c.department)).one()
        assert tuple(row) == ("NORTH", "RAD")
    finally:
        a.close()

"""Maintenance: statistics, integrity verification, start-up recovery, conflict listing."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from vesalius.errors import StorageError
from vesalius.index.models import conflicts, instances, patients, series, studies
from vesalius.storage.base import BlobStore
from vesalius.storage.encrypted import IntegrityError


@dataclass
class VerifyReport:
    """The outcome of re-hashing every stored object."""

    checked: int = 0
    ok: int = 0
    missing: list[str] = field(default_factory=list)  # SOP Instance UIDs
    corrupt: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.missing and not self.corrupt


def stats(engine: Engine) -> dict[str, int]:
    """Counts per level and stored bytes."""
    with engine.connect() as conn:
        return {
            "patients": conn.execute(select(func.count()).select_from(patients)).scalar_one(),
            "studies": conn.execute(select(func.count()).select_from(studies)).scalar_one(),
            "series": conn.execute(select(func.count()).select_from(series)).scalar_one(),
            "instances": conn.execute(select(func.count()).select_from(instances)).scalar_one(),
            "bytes": int(conn.execute(select(func.coalesce(func.sum(instances.c.size), 0))).scalar_one()),
            "conflicts": conn.execute(select(func.count()).select_from(conflicts)).scalar_one(),
        }


def verify(engine: Engine, store: BlobStore, progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Re-hash every indexed object; report missing and mismatching ones."""
    rep = VerifyReport()
    with engine.connect() as conn:
        rows = conn.execute(select(instances.c.sop_uid, instances.c.blob_key).order_by(instances.c.pk)).all()
    for sop_uid, key in rows:
        rep.checked += 1
        try:
            data = store.get(key)
        except IntegrityError:  # encrypted at rest and altered: the GCM tag did not match
            rep.corrupt.append(sop_uid)
        except StorageError:
            rep.missing.append(sop_uid)
        else:
            if hashlib.sha256(data).hexdigest() == key:
                rep.ok += 1
            else:
                rep.corrupt.append(sop_uid)
        if progress:
            progress(1)
    return rep


def recover(engine: Engine, store: BlobStore) -> dict[str, int]:
    """Start-up recovery after a crash.

    Removes partial writes and stored objects that no index row references (written but
    never acknowledged), and reports index rows whose object is missing (which the write
    order makes impossible unless storage was damaged outside the archive).
    """
    partial = store.recover()
    orphans = 0
    for k in store.pending():
        with engine.connect() as conn:
            used = conn.execute(select(instances.c.pk).where(instances.c.blob_key == k).limit(1)).first()
        if used is None:
            store.delete(k)
            orphans += 1
        store.settle(k)
    return {"partial_writes": partial, "orphans_removed": orphans}


def find_orphans(engine: Engine, store: BlobStore, remove: bool = False) -> list[str]:
    """Full scan: stored objects no index row references (and remove them if asked)."""
    with engine.connect() as conn:
        keys = {k for (k,) in conn.execute(select(instances.c.blob_key))}
    found = [k for k in store.keys() if k not in keys]  # noqa: SIM118
    if remove:
        for k in found:
            store.delete(k)
    return found


def list_conflicts(engine: Engine, limit: int = 1000) -> Iterator[dict[str, Any]]:
    with engine.connect() as conn:
        for r in conn.execute(select(conflicts).order_by(conflicts.c.pk.desc()).limit(limit)).mappings():
            yield dict(r)

"""The archive: one context object handed to every interface (DIMSE, HTTP, CLI, workers).

Like Orthanc's ServerContext, it owns the index and the storage and exposes the archive's
operations; interfaces never touch the index or storage directly.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine

from vesalius.archive import maintenance
from vesalius.archive.frames import FrameService
from vesalius.archive.ingest import Ingestor, IngestReport
from vesalius.archive.query import QueryService
from vesalius.archive.retrieve import InstanceRef, RetrieveService
from vesalius.config import Remote, Settings
from vesalius.dicom.keys import Level
from vesalius.dicom.matching import Query, parse_identifier, query_from_pairs
from vesalius.errors import ConfigError, NotFound
from vesalius.index.db import open_index
from vesalius.index.models import instances, remotes
from vesalius.index.query import IndexReader
from vesalius.index.writer import IndexWriter
from vesalius.storage import BlobStore, EncryptedStore, FilesystemStore, MemoryStore, open_key_store

if TYPE_CHECKING:
    from vesalius.security.auditing import Auditor
    from vesalius.security.identity import IdentityStore

log = logging.getLogger("vesalius.archive")


class Archive:
    """Ingest, query, retrieve and maintain the archive."""

    def __init__(self, settings: Settings, engine: Engine, store: BlobStore) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.writer = IndexWriter(engine)
        self.reader = IndexReader(engine)
        self.ingestor = Ingestor(store, self.writer, settings.on_conflict)
        self.queries = QueryService(self.reader, settings.ae_title)
        self.retrieval = RetrieveService(engine, store)
        self.frames = FrameService(store, settings.render_cache_mb << 20)

    # ---------------------------------------------------------------- ingest
    def store_bytes(self, data: bytes, source_ae: str = "", expected_sop_instance: str | None = None,
                    expected_study: str | None = None,
                    authorize: Callable[[Dataset], bool] | None = None) -> IngestReport:
        """Archive one DICOM Part-10 object (see :mod:`vesalius.archive.ingest`)."""
        return self.ingestor.ingest(data, source_ae, expected_sop_instance, expected_study, authorize)

    # ---------------------------------------------------------------- query
    def parse_query(self, identifier: Dataset) -> Query:
        return parse_identifier(identifier, case_insensitive_names=self.settings.case_insensitive_names)

    def parse_qido(self, level: Level, pairs: list[tuple[str, str]], fuzzy: bool = False) -> Query:
        """A QIDO-RS query (PS3.18 8.3.4) matched by the same rules as C-FIND."""
        return query_from_pairs(level, pairs, case_insensitive_names=self.settings.case_insensitive_names,
                                fuzzy=fuzzy)

    def find(self, q: Query, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """DICOM JSON objects matching ``q`` (C-FIND and QIDO-RS)."""
        return self.queries.search(q, **kwargs)

    # ---------------------------------------------------------------- retrieve
    def locate(self, identifier: Dataset) -> list[InstanceRef]:
        return self.retrieval.locate(identifier)

    def read(self, ref: InstanceRef) -> bytes:
        return self.retrieval.read(ref)

    def instances_of(self, study_uid: str, series_uid: str | None = None,
                     sop_uid: str | None = None) -> list[InstanceRef]:
        """The instances of a study, series or one instance; NotFound when there are none."""
        refs = self.retrieval.instances_of(study_uid, series_uid, sop_uid)
        if not refs:
            raise NotFound(_what(study_uid, series_uid, sop_uid) + " is not in the archive")
        return refs

    def metadata(self, study_uid: str, series_uid: str | None = None,
                 sop_uid: str | None = None) -> list[tuple[InstanceRef, str]]:
        """Headers as DICOM JSON text, from the index (PS3.18 10.4 metadata resources)."""
        found = self.retrieval.metadata(study_uid, series_uid, sop_uid)
        if not found:
            raise NotFound(_what(study_uid, series_uid, sop_uid) + " is not in the archive")
        return found

    # ---------------------------------------------------------------- delete
    def delete(self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None) -> int:
        """Remove a study, series or instance: index rows first, then the stored objects.

        Returns the number of instances removed; NotFound when there was nothing to remove.
        """
        keys = self.writer.delete(study_uid, series_uid, sop_uid)
        if not keys:
            raise NotFound(_what(study_uid, series_uid, sop_uid) + " is not in the archive")
        for key in keys:
            self.ingestor.discard_if_unreferenced(key)
        log.info("deleted %d instance(s)", len(keys))
        return len(keys)

    def is_committed(self, sop_class_uid: str, sop_uid: str) -> bool:
        """Storage Commitment (PS3.4 J.3): fsynced and indexed, with the same SOP class."""
        with self.engine.connect() as conn:
            row = conn.execute(select(instances.c.sop_class_uid, instances.c.blob_key)
                               .where(instances.c.sop_uid == sop_uid)).first()
        return row is not None and row.sop_class_uid == sop_class_uid and self.store.exists(row.blob_key)

    # ---------------------------------------------------------------- remotes
    def remotes(self) -> list[Remote]:
        """Configured remotes: the TOML ``[[remote]]`` tables plus those added with the CLI."""
        merged = {r.name: r for r in self.settings.remotes}
        with self.engine.connect() as conn:
            for row in conn.execute(select(remotes).order_by(remotes.c.name)):
                merged.setdefault(row.name, Remote(row.name, row.ae_title, row.host, row.port))
        return sorted(merged.values(), key=lambda r: r.name)

    def remote_by_ae(self, ae_title: str) -> Remote:
        for r in self.remotes():
            if r.ae_title == ae_title.strip():
                return r
        raise NotFound(f"no remote with AE title {ae_title.strip()!r}; add it with 'vesalius remote add'")

    def add_remote(self, remote: Remote) -> None:
        if any(r.name == remote.name for r in self.settings.remotes):
            raise ConfigError(f"remote {remote.name!r} is defined in the config file; edit it there")
        with self.engine.begin() as conn:
            conn.execute(delete(remotes).where(remotes.c.name == remote.name))
            conn.execute(insert(remotes).values(name=remote.name, ae_title=remote.ae_title,
                                                host=remote.host, port=remote.port))

    def remove_remote(self, name: str) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(remotes).where(remotes.c.name == name)).rowcount)

    def study_facts(self, study_uid: str) -> dict[str, str] | None:
        """What access decisions look at (PS3.3 attributes): StudyInstanceUID,
        ReferringPhysicianName, IssuerOfPatientID, InstitutionName and
        InstitutionalDepartmentName (from the first instance); None if the study is unknown."""
        return self.retrieval.study_facts(study_uid)

    # ---------------------------------------------------------------- identities
    @functools.cached_property
    def identities(self) -> IdentityStore:
        """Users, API tokens, sessions and study shares (see :mod:`vesalius.security.identity`)."""
        from vesalius.security.identity import IdentityStore

        return IdentityStore(self.engine)

    @functools.cached_property
    def auditor(self) -> Auditor:
        """The audit trail's writer (see :mod:`vesalius.security.auditing`)."""
        from vesalius.security.audit import AuditLog
        from vesalius.security.auditing import Auditor

        return Auditor(AuditLog(self.engine), self.study_facts, app_name=self.settings.ae_title)

    # ---------------------------------------------------------------- maintenance
    def stats(self) -> dict[str, int]:
        return maintenance.stats(self.engine)

    def recover(self) -> dict[str, int]:
        return maintenance.recover(self.engine, self.store)

    def close(self) -> None:
        if "auditor" in self.__dict__:
            self.auditor.close()
        if "identities" in self.__dict__:
            self.identities.close()
        self.writer.close()
        self.engine.dispose()


def _what(study_uid: str, series_uid: str | None, sop_uid: str | None) -> str:
    if sop_uid:
        return "the instance"
    if series_uid:
        return "the series"
    return "the study"


def open_archive(settings: Settings, *, recover: bool = True) -> Archive:
    """Open the index and storage named by ``settings`` (creating them if needed)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_index(settings.db_url)
    store: BlobStore
    if settings.storage == "memory":
        store = MemoryStore()
    else:
        store = FilesystemStore(settings.data_dir / "storage")
    if settings.encryption_key:  # encryption at rest wraps whichever store
        store = EncryptedStore(store, open_key_store(settings.encryption_key))
    archive = Archive(settings, engine, store)
    if recover:
        result = archive.recover()
        if any(result.values()):
            log.warning("start-up recovery: %s", result)
    return archive


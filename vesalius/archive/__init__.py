"""The archive service: ingest, query, retrieve and maintenance over index and storage."""

from vesalius.archive.service import Archive, open_archive

__all__ = ["Archive", "open_archive"]

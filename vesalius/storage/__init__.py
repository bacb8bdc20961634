"""Blob stores: where the archive keeps each object's bytes, keyed by content hash."""

from vesalius.storage.base import BlobStore, blob_key_for
from vesalius.storage.filesystem import FilesystemStore
from vesalius.storage.memory import MemoryStore

__all__ = ["BlobStore", "FilesystemStore", "MemoryStore", "blob_key_for"]

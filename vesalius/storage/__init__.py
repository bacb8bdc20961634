"""Blob stores: where the archive keeps each object's bytes, keyed by content hash."""

from vesalius.storage.base import BlobStore, blob_key_for
from vesalius.storage.encrypted import EncryptedStore
from vesalius.storage.filesystem import FilesystemStore
from vesalius.storage.keys import (
    EnvKeyStore,
    FileKeyStore,
    KeyStore,
    MemoryKeyStore,
    open_key_store,
)
from vesalius.storage.memory import MemoryStore

__all__ = ["BlobStore", "EncryptedStore", "EnvKeyStore", "FileKeyStore", "FilesystemStore", "KeyStore",
           "MemoryKeyStore", "MemoryStore", "blob_key_for", "open_key_store"]

"""The storage interface (after Orthanc's IStorageArea: create, read, read range, remove).

Keys are lowercase hex SHA-256 digests of the object's bytes: never a UID or a name a peer
sent, so nothing a peer controls reaches a path.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from vesalius.errors import StorageError

_KEY_RE = re.compile(r"^[0-9a-f]{64}$")


def blob_key_for(data: bytes) -> str:
    """The content key of ``data``: its SHA-256 as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def check_key(key: str) -> str:
    """Refuse anything that is not a SHA-256 hex key (no path can be smuggled through)."""
    if not _KEY_RE.match(key):
        raise StorageError("invalid blob key")
    return key


@runtime_checkable
class BlobStore(Protocol):
    """Durable, content-addressed object storage."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` durably (on disk and fsynced) before returning."""

    def get(self, key: str) -> bytes:
        """Return the whole object, or raise StorageError if it is missing."""

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return ``length`` bytes from ``start`` (fewer at the end of the object)."""

    def exists(self, key: str) -> bool:
        """True if the object is stored."""

    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""

    def keys(self) -> Iterator[str]:
        """Every stored key (used by verify and start-up recovery)."""

    def local_path(self, key: str) -> Path | None:
        """A local file path for zero-copy sends, or None when the store is not a filesystem."""

    def settle(self, key: str) -> None:
        """Mark a put as settled: the index now references it, or it was discarded."""

    def pending(self) -> list[str]:
        """Keys put but never settled (a crash came between storage and index)."""

    def recover(self) -> int:
        """Remove partial writes left by a crash; return how many were removed."""

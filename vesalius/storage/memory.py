"""In-memory blob store for tests and ephemeral runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from vesalius.errors import StorageError
from vesalius.storage.base import check_key


class MemoryStore:
    """A dict of bytes behind the BlobStore interface (nothing survives the process)."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self._data[check_key(key)] = bytes(data)

    def get(self, key: str) -> bytes:
        try:
            return self._data[check_key(key)]
        except KeyError:
            raise StorageError(f"object {key} is missing from storage") from None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.get(key)[start:start + length]

    def exists(self, key: str) -> bool:
        return check_key(key) in self._data

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(check_key(key), None)

    def keys(self) -> Iterator[str]:
        yield from list(self._data)

    def local_path(self, key: str) -> Path | None:
        return None

    def settle(self, key: str) -> None:
        return None

    def pending(self) -> list[str]:
        return []

    def recover(self) -> int:
        return 0

"""Filesystem blob store: write to a temporary file, fsync, rename, fsync the directory.

Objects live at ``objects/ab/<sha256>`` (256 directories, created at start); temporary files at ``tmp/`` are removed at start
(they were never acknowledged).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from vesalius.errors import StorageError
from vesalius.storage.base import check_key


class FilesystemStore:
    """Content-addressed objects in a directory tree, durable before ``put`` returns."""

    def __init__(self, root: Path, fsync: bool = True) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.tmp = self.root / "tmp"
        self.pending_dir = self.root / "pending"
        self.fsync = fsync
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        self._known_dirs: set[Path] = set()
        for i in range(256):
            self._ensure_dir(self.objects / f"{i:02x}")

    def _path(self, key: str) -> Path:
        check_key(key)
        return self.objects / key[:2] / key

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def _ensure_dir(self, d: Path) -> None:
        if d in self._known_dirs:
            return
        if not d.is_dir():
            d.mkdir(parents=True, exist_ok=True)
            if self.fsync:
                self._fsync_dir(d.parent)
        self._known_dirs.add(d)

    @staticmethod
    def _fsync_dir(d: Path) -> None:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def put(self, key: str, data: bytes) -> None:
        final = self._path(key)
        # The marker names an object that may be on disk without an index row; it needs no
        # fsync: losing it on power loss leaves at worst an unreferenced object (verify finds it).
        tmp = self.tmp / f"{key}.{uuid.uuid4().hex}.part"
        try:
            (self.pending_dir / key).touch()
            if final.exists():
                return
            self._ensure_dir(final.parent)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
            if self.fsync:
                self._fsync_dir(final.parent)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"could not write object: {exc.strerror}") from None

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise StorageError(f"object {key} is missing from storage") from None
        except OSError as exc:
            raise StorageError(f"could not read object {key}: {exc.strerror}") from None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with self._path(key).open("rb") as f:
                f.seek(start)
                return f.read(length)
        except FileNotFoundError:
            raise StorageError(f"object {key} is missing from storage") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        for a in sorted(self.objects.iterdir()):
            if not a.is_dir():
                continue
            for f in sorted(a.iterdir()):
                if len(f.name) == 64:
                    yield f.name

    def settle(self, key: str) -> None:
        (self.pending_dir / check_key(key)).unlink(missing_ok=True)

    def pending(self) -> list[str]:
        return [p.name for p in self.pending_dir.iterdir() if len(p.name) == 64]

    def recover(self) -> int:
        n = 0
        for f in self.tmp.iterdir():
            f.unlink(missing_ok=True)
            n += 1
        return n

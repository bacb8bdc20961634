"""Master keys for encryption at rest (see :mod:`vesalius.storage.encrypted`).

A :class:`KeyStore` hands out 256-bit master keys by id. Master keys never encrypt objects
themselves: each object has its own random data key, and only that data key is encrypted
("wrapped") by a master key. The header of every stored object names the master key by id,
so keys can rotate: a new key becomes *current* (it wraps the data keys of new objects), the
old ones stay readable until every object has been re-wrapped
(:meth:`EncryptedStore.rotate_all`), and can then be retired.

Sources, chosen by the ``encryption_key`` setting (:func:`open_key_store`):

``file:/path/keys.json``  :class:`FileKeyStore`: a JSON file of keys by id, mode 0600, created
                          on first use; supports rotation. Keep it off the storage volume
                          and out of its backups.
``env:VARNAME``           :class:`EnvKeyStore`: one base64 key in an environment variable
                          (e.g. from a secrets manager or systemd ``LoadCredential``); it
                          cannot rotate.

:class:`MemoryKeyStore` is the in-memory implementation for tests.

**Plugging in a KMS** (AWS KMS, Google Cloud KMS, Azure Key Vault, HashiCorp Vault transit,
a PKCS#11 HSM). There the master key never leaves the KMS, so ``get(key_id) -> bytes`` does
not fit; instead the KMS *wraps and unwraps data keys*. The format is ready for it: the
object header has a wrap-algorithm byte and a length-prefixed wrapped key of up to 1024
bytes (a KMS ciphertext blob is typically 150-200 bytes). A KMS backend is an object with
``current_id() -> str``, ``wrap(key_id, data_key, context) -> bytes`` (KMS Encrypt with
``context`` - the object's key and the key id - as encryption context / additional
authenticated data) and ``unwrap(key_id, wrapped, context) -> bytes`` (KMS Decrypt), and
:class:`~vesalius.storage.encrypted.EncryptedStore` calls it from its two methods
``_wrap`` / ``_unwrap`` under a new wrap-algorithm value instead of wrapping locally with
AES-256-GCM. Rotation is then the KMS's own key rotation followed by ``rewrap``; the
payloads are never re-encrypted. One KMS call per stored and per read object is the cost: a
cache of unwrapped data keys (by object key, bounded, short-lived) keeps reads fast.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from vesalius.errors import ConfigError, StorageError

KEY_BYTES = 32  # AES-256
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
FILE_FORMAT = "vesalius-keys"
FILE_VERSION = 1


def check_key_id(key_id: str) -> str:
    """Key ids are 1-64 characters of ``A-Z a-z 0-9 . _ -`` (they are written into every header)."""
    if not isinstance(key_id, str) or not _KEY_ID_RE.match(key_id):
        raise ConfigError(f"invalid master key id {key_id!r}: use 1-64 characters A-Z a-z 0-9 . _ -")
    return key_id


def _check_key_bytes(key: bytes, where: str) -> bytes:
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{where}: a master key must be {KEY_BYTES} bytes (AES-256), not {len(key)}")
    return key


def _new_key_id() -> str:
    return f"{time.strftime('%Y%m%d', time.gmtime())}-{secrets.token_hex(4)}"


def unknown_key(key_id: str, where: str) -> StorageError:
    return StorageError(f"master key {key_id!r} is not in {where} (was it retired, or is this the wrong key store?)")


@runtime_checkable
class KeyStore(Protocol):
    """Master keys by id; one of them is current."""

    def current(self) -> tuple[str, bytes]:
        """The id and bytes of the key that wraps the data keys of new objects."""

    def get(self, key_id: str) -> bytes:
        """The key with this id; StorageError if it is not held."""

    def rotate(self) -> str:
        """Make a fresh random key current and return its id (old keys stay readable)."""


class MemoryKeyStore:
    """Keys in a dict (tests, ephemeral archives); one fresh key if none is given."""

    def __init__(self, keys: Mapping[str, bytes] | None = None, current: str | None = None) -> None:
        self._keys: dict[str, bytes] = {}
        for kid, key in (keys or {}).items():
            self._keys[check_key_id(kid)] = _check_key_bytes(bytes(key), f"key {kid!r}")
        if not self._keys:
            self._keys[_new_key_id()] = secrets.token_bytes(KEY_BYTES)
        self._current = current if current is not None else next(reversed(self._keys))
        if self._current not in self._keys:
            raise ConfigError(f"current key {self._current!r} is not among the keys given")
        self._lock = threading.Lock()

    def current(self) -> tuple[str, bytes]:
        kid = self._current
        return kid, self._keys[kid]

    def get(self, key_id: str) -> bytes:
        try:
            return self._keys[key_id]
        except KeyError:
            raise unknown_key(key_id, "the memory key store") from None

    def rotate(self) -> str:
        with self._lock:
            kid = _new_key_id()
            while kid in self._keys:
                kid = _new_key_id()
            self._keys[kid] = secrets.token_bytes(KEY_BYTES)
            self._current = kid
            return kid

    def ids(self) -> list[str]:
        return list(self._keys)

    def retire(self, key_id: str) -> None:
        """Forget a key that no object needs any more (never the current one)."""
        with self._lock:
            if key_id == self._current:
                raise ConfigError(f"key {key_id!r} is the current key and cannot be retired")
            self._keys.pop(key_id, None)


class EnvKeyStore:
    """One master key, base64 (32 bytes decoded), in an environment variable.

    Its id is derived from the key (``env-`` + 16 hex digits of a hash), so objects written
    under another key are reported as "master key ... is not in ..." rather than as damage.
    """

    def __init__(self, var: str, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.var = var
        raw = env.get(var, "").strip()
        hint = ("set it to 32 random bytes in base64, e.g. the output of "
                "'openssl rand -base64 32'")
        if not raw:
            raise ConfigError(f"encryption_key names the environment variable {var}, which is not set; {hint}")
        try:  # standard or URL-safe alphabet, padding optional
            key = base64.b64decode(raw.replace("-", "+").replace("_", "/") + "=" * (-len(raw) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"environment variable {var} is not valid base64; {hint}") from None
        self._key = _check_key_bytes(key, f"environment variable {var}")
        self._id = "env-" + hashlib.sha256(b"vesalius master key id\x00" + key).hexdigest()[:16]

    def current(self) -> tuple[str, bytes]:
        return self._id, self._key

    def get(self, key_id: str) -> bytes:
        if key_id != self._id:
            raise unknown_key(key_id, f"the environment variable {self.var} (it holds key {self._id!r})")
        return self._key

    def rotate(self) -> str:
        raise ConfigError(f"the master key comes from the environment variable {self.var} and cannot be "
                          "rotated: use a key file (encryption_key = \"file:/path/keys.json\") to rotate keys")

    def ids(self) -> list[str]:
        return [self._id]


class FileKeyStore:
    """Master keys by id in a JSON file (mode 0600, created on first use).

    ::

        {"format": "vesalius-keys", "version": 1, "current": "20250101-1a2b3c4d",
         "keys": {"20250101-1a2b3c4d": {"key": "<base64, 32 bytes>", "created": "2025-01-01T10:00:00Z"}}}

    The file is replaced atomically (temporary file, fsync, rename) under an exclusive lock
    (``<file>.lock``), so several processes may share it; each reloads it when it changes, so
    a rotation done by ``vesalius keys rotate`` reaches running servers at their next write.
    A file readable by group or others is refused.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser()
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._keys: dict[str, bytes] = {}
        self._current = ""
        self._stamp: tuple[int, int, int] | None = None
        self._mutex = threading.Lock()
        if self.path.exists():
            self._reload(force=True)

    # ------------------------------------------------------------------ reading
    def _stat(self) -> os.stat_result | None:
        try:
            return self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read key file {self.path}: {exc.strerror}") from None

    def _reload(self, force: bool = False) -> bool:
        """Reload when the file changed; False when it does not exist."""
        st = self._stat()
        if st is None:
            return False
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if not force and stamp == self._stamp:
            return True
        if st.st_mode & 0o077:
            raise ConfigError(f"key file {self.path} is accessible to other users (mode {st.st_mode & 0o777:04o}); "
                              f"run: chmod 600 {self.path}")
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read key file {self.path}: {exc.strerror}") from None
        keys, current = self._parse(raw)
        with self._mutex:
            self._keys, self._current, self._stamp = keys, current, stamp
        return True

    def _parse(self, raw: bytes) -> tuple[dict[str, bytes], str]:
        try:
            doc = json.loads(raw)
            if doc.get("format") != FILE_FORMAT or doc.get("version") != FILE_VERSION:
                raise ValueError("not a vesalius key file (format/version)")
            keys = {check_key_id(k): _check_key_bytes(base64.b64decode(v["key"], validate=True), f"key {k!r}")
                    for k, v in doc["keys"].items()}
            current = str(doc["current"])
            if current not in keys:
                raise ValueError(f"current key {current!r} is not in the file")
        except ConfigError as exc:
            raise ConfigError(f"key file {self.path}: {exc}") from None
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise ConfigError(f"key file {self.path} is damaged or not a key file: {exc}") from None
        return keys, current

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot create key file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, keys: dict[str, bytes], current: str) -> None:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        old: dict[str, Any] = {}
        if self.path.exists():
            with contextlib.suppress(ValueError, OSError):
                old = json.loads(self.path.read_bytes()).get("keys", {})
        doc = {"format": FILE_FORMAT, "version": FILE_VERSION, "current": current,
               "keys": {k: {"key": base64.b64encode(v).decode(),
                            "created": old.get(k, {}).get("created", created)}
                        for k, v in keys.items()}}
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.write(fd, json.dumps(doc, indent=2).encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"could not write key file {self.path}: {exc.strerror}") from None
        dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self._reload(force=True)

    def _create_if_missing(self) -> None:
        with self._locked():
            if not self._reload(force=True):
                kid = _new_key_id()
                self._write({kid: secrets.token_bytes(KEY_BYTES)}, kid)

    # ------------------------------------------------------------------ KeyStore
    def current(self) -> tuple[str, bytes]:
        if not self._reload():
            self._create_if_missing()
        with self._mutex:
            return self._current, self._keys[self._current]

    def get(self, key_id: str) -> bytes:
        key = self._keys.get(key_id)
        if key is None:
            self._reload()  # another process may have rotated
            key = self._keys.get(key_id)
        if key is None:
            raise unknown_key(key_id, f"key file {self.path}")
        return key

    def rotate(self) -> str:
        with self._locked():
            if not self._reload(force=True):
                keys: dict[str, bytes] = {}
            else:
                keys = dict(self._keys)
            kid = _new_key_id()
            while kid in keys:
                kid = _new_key_id()
            keys[kid] = secrets.token_bytes(KEY_BYTES)
            self._write(keys, kid)
            return kid

    def ids(self) -> list[str]:
        self._reload()
        return list(self._keys)

    def retire(self, key_id: str) -> None:
        """Remove a key no object needs any more; refuses the current key.

        Only retire a key after a :meth:`EncryptedStore.rotate_all` pass found no object
        under it, and once no backup you may restore holds objects wrapped by it.
        """
        with self._locked():
            if not self._reload(force=True) or key_id not in self._keys:
                return
            if key_id == self._current:
                raise ConfigError(f"key {key_id!r} is the current key and cannot be retired")
            keys = {k: v for k, v in self._keys.items() if k != key_id}
            self._write(keys, self._current)


def open_key_store(spec: str) -> FileKeyStore | EnvKeyStore:
    """The key store named by the ``encryption_key`` setting: ``file:/path`` or ``env:VARNAME``."""
    kind, sep, rest = spec.partition(":")
    rest = rest.strip()
    if sep and kind == "file" and rest:
        return FileKeyStore(Path(rest))
    if sep and kind == "env" and rest:
        return EnvKeyStore(rest)
    raise ConfigError(f"encryption_key {spec!r} must be \"file:/path/keys.json\" or \"env:VARNAME\" "
                      "(or empty for no encryption at rest)")

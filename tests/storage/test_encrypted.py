"""Encryption at rest: EncryptedStore (envelope AES-256-GCM), key stores, and an encrypted archive."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from tests.conftest import make_settings
from tests.dicomgen import make_ct_series
from vesalius.archive import open_archive
from vesalius.archive.maintenance import verify
from vesalius.config import load_settings
from vesalius.errors import ConfigError, StorageError
from vesalius.storage import (
    BlobStore,
    EncryptedStore,
    EnvKeyStore,
    FileKeyStore,
    FilesystemStore,
    KeyStore,
    MemoryKeyStore,
    MemoryStore,
    blob_key_for,
    open_key_store,
)
from vesalius.storage.encrypted import MAGIC, TAG_BYTES, IntegrityError, parse_header

K1, K2 = b"\x01" * 32, b"\x02" * 32
INTEGRITY = "failed its integrity check"


def _payload(n: int = 5000, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(n))


@pytest.fixture(params=["memory", "filesystem"])
def inner(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "memory":
        return MemoryStore()
    return FilesystemStore(tmp_path / "storage", fsync=False)


def _raw(inner: BlobStore, key: str) -> bytes:
    return inner.get(key)


def _overwrite(inner: BlobStore, key: str, blob: bytes) -> None:
    """Change a stored object behind the store's back (as an attacker with disk access would)."""
    path = inner.local_path(key)
    if path is not None:
        path.write_bytes(blob)
    else:
        inner.put(key, blob)


def _flip(blob: bytes, i: int) -> bytes:
    b = bytearray(blob)
    b[i] ^= 0x01
    return bytes(b)


# ------------------------------------------------------------------------- round trip
def test_round_trip(inner: BlobStore) -> None:
    store = EncryptedStore(inner, MemoryKeyStore({"k1": K1}))
    assert isinstance(store, BlobStore)
    data = _payload()
    key = blob_key_for(data)
    store.put(key, data)
    assert store.get(key) == data
    assert store.get_range(key, 100, 50) == data[100:150]
    assert store.get_range(key, len(data) - 10, 100) == data[-10:]
    assert store.exists(key) and list(store.keys()) == [key]
    assert store.local_path(key) is None  # callers must not read ciphertext as DICOM
    raw = _raw(inner, key)
    assert raw.startswith(MAGIC) and data not in raw
    hdr = parse_header(raw, key)
    assert hdr.key_id == "k1"
    assert len(raw) == hdr.length + len(data) + TAG_BYTES
    store.delete(key)
    assert not store.exists(key)
    with pytest.raises(StorageError, match="missing"):
        store.get(key)


def test_each_object_has_its_own_data_key_and_nonce() -> None:
    inner = MemoryStore()
    store = EncryptedStore(inner, MemoryKeyStore({"k1": K1}))
    a, b = b"\x00" * 1000, b"\x00" * 1001
    store.put(blob_key_for(a), a)
    store.put(blob_key_for(b), b)
    ra, rb = _raw(inner, blob_key_for(a)), _raw(inner, blob_key_for(b))
    ha, hb = parse_header(ra, blob_key_for(a)), parse_header(rb, blob_key_for(b))
    assert ha.nonce != hb.nonce and ha.wrapped_key != hb.wrapped_key
    assert ra[ha.length:ha.length + 1000] != rb[hb.length:hb.length + 1000]


def test_empty_object() -> None:
    store = EncryptedStore(MemoryStore(), MemoryKeyStore())
    key = blob_key_for(b"")
    store.put(key, b"")
    assert store.get(key) == b""


def test_invalid_key_is_refused() -> None:
    store = EncryptedStore(MemoryStore(), MemoryKeyStore())
    with pytest.raises(StorageError, match="invalid blob key"):
        store.put("../../etc/passwd", b"x")
    with pytest.raises(StorageError, match="invalid blob key"):
        store.get("ABC")


# ------------------------------------------------------------------------- tampering
def test_tampered_ciphertext_fails(inner: BlobStore) -> None:
    store = EncryptedStore(inner, MemoryKeyStore({"k1": K1}))
    data = _payload()
    key = blob_key_for(data)
    store.put(key, data)
    raw = _raw(inner, key)
    start = parse_header(raw, key).length
    for i in (start, start + len(data) // 2, len(raw) - TAG_BYTES - 1, len(raw) - 1):
        _overwrite(inner, key, _flip(raw, i))
        with pytest.raises(IntegrityError, match=INTEGRITY):
            store.get(key)
        with pytest.raises(StorageError, match=INTEGRITY):
            store.get_range(key, 0, 10)
    _overwrite(inner, key, raw)
    assert store.get(key) == data


def test_every_header_byte_is_protected() -> None:
    inner = MemoryStore()
    store = EncryptedStore(inner, MemoryKeyStore({"k1": K1, "k2": K2}, current="k1"))
    data = _payload(300)
    key = blob_key_for(data)
    store.put(key, data)
    raw = _raw(inner, key)
    for i in range(parse_header(raw, key).length):
        inner.put(key, _flip(raw, i))
        with pytest.raises(StorageError):
            store.get(key)
    inner.put(key, raw)
    assert store.get(key) == data


def test_truncated_or_extended_object_fails() -> None:
    inner = MemoryStore()
    store = EncryptedStore(inner, MemoryKeyStore())
    data = _payload()
    key = blob_key_for(data)
    store.put(key, data)
    raw = _raw(inner, key)
    for bad in (raw[:-1], raw[:-TAG_BYTES], raw[:50], raw[:4], b"", raw + b"\x00"):
        inner.put(key, bad)
        with pytest.raises(StorageError, match=INTEGRITY):
            store.get(key)


def test_swapped_objects_fail(inner: BlobStore) -> None:
    store = EncryptedStore(inner, MemoryKeyStore({"k1": K1}))
    a, b = _payload(seed=1), _payload(seed=2)
    ka, kb = blob_key_for(a), blob_key_for(b)
    store.put(ka, a)
    store.put(kb, b)
    ra, rb = _raw(inner, ka), _raw(inner, kb)
    _overwrite(inner, ka, rb)
    _overwrite(inner, kb, ra)
    for k in (ka, kb):
        with pytest.raises(StorageError, match=INTEGRITY):
            store.get(k)


def test_wrapped_key_moved_between_objects_fails() -> None:
    inner = MemoryStore()
    store = EncryptedStore(inner, MemoryKeyStore({"k1": K1}))
    a, b = _payload(seed=1), _payload(seed=2)
    ka, kb = blob_key_for(a), blob_key_for(b)
    store.put(ka, a)
    store.put(kb, b)
    ra, rb = _raw(inner, ka), _raw(inner, kb)
    ha, hb = parse_header(ra, ka), parse_header(rb, kb)
    # b's header (its wrapped data key and nonce) in front of a's ciphertext, and vice versa
    inner.put(ka, rb[:hb.length] + ra[ha.length:])
    with pytest.raises(StorageError, match=INTEGRITY):
        store.get(ka)


def test_plaintext_object_is_not_returned() -> None:
    inner = MemoryStore()
    data = b"\x00" * 128 + b"DICM" + _payload()
    key = blob_key_for(data)
    inner.put(key, data)  # stored before encryption was turned on (or planted)
    store = EncryptedStore(inner, MemoryKeyStore())
    with pytest.raises(StorageError, match="no encryption header"):
        store.get(key)


# ------------------------------------------------------------------------- keys
def test_wrong_master_key() -> None:
    inner = MemoryStore()
    data = _payload()
    key = blob_key_for(data)
    EncryptedStore(inner, MemoryKeyStore({"k1": K1})).put(key, data)
    with pytest.raises(StorageError, match=INTEGRITY):  # same id, other bytes
        EncryptedStore(inner, MemoryKeyStore({"k1": K2})).get(key)
    with pytest.raises(StorageError, match="master key 'k1' is not in"):  # key not held
        EncryptedStore(inner, MemoryKeyStore({"k2": K2})).get(key)


def test_rotation_rewraps_without_reencrypting(inner: BlobStore) -> None:
    keys = MemoryKeyStore({"old": K1})
    store = EncryptedStore(inner, keys)
    objects = {blob_key_for(d): d for d in (_payload(seed=s) for s in range(5))}
    for k, d in objects.items():
        store.put(k, d)
        store.settle(k)
    before = {k: _raw(inner, k) for k in objects}
    ticks: list[int] = []
    rep = store.rotate_all(ticks.append)
    new_id = keys.current()[0]
    assert new_id != "old" and rep.key_id == new_id and rep.clean
    assert (rep.checked, rep.rewrapped, rep.current, len(ticks)) == (5, 5, 0, 5)
    for k, d in objects.items():
        raw = _raw(inner, k)
        assert store.key_id_of(k) == new_id
        old_hdr, new_hdr = parse_header(before[k], k), parse_header(raw, k)
        assert raw[new_hdr.length:] == before[k][old_hdr.length:]  # payload untouched
        assert new_hdr.nonce == old_hdr.nonce and new_hdr.wrapped_key != old_hdr.wrapped_key
        assert store.get(k) == d
    if isinstance(inner, FilesystemStore):
        assert not list(inner.tmp.iterdir()) and not inner.pending()
    # the old master key is no longer needed ...
    keys.retire("old")
    only_new = EncryptedStore(inner, MemoryKeyStore({new_id: keys.get(new_id)}))
    assert all(only_new.get(k) == d for k, d in objects.items())
    # ... and no longer enough
    only_old = EncryptedStore(inner, MemoryKeyStore({"old": K1}))
    with pytest.raises(StorageError, match="is not in"):
        only_old.get(next(iter(objects)))
    # a second pass finds nothing to do; new objects use the new key
    again = store.rewrap()
    assert (again.rewrapped, again.current) == (0, 5)
    extra = _payload(seed=99)
    store.put(blob_key_for(extra), extra)
    assert store.key_id_of(blob_key_for(extra)) == new_id


def test_rewrap_encrypts_plaintext_objects_and_reports_bad_ones(inner: BlobStore) -> None:
    good, bad = _payload(seed=1), _payload(seed=2)
    inner.put(blob_key_for(good), good)
    inner.put(blob_key_for(bad), _flip(bad, 10))  # plaintext not matching its key
    for k in (blob_key_for(good), blob_key_for(bad)):
        inner.settle(k)
    store = EncryptedStore(inner, MemoryKeyStore())
    rep = store.rewrap()
    assert rep.encrypted == 1 and list(rep.failed) == [blob_key_for(bad)] and not rep.clean
    assert _raw(inner, blob_key_for(good)).startswith(MAGIC)
    assert store.get(blob_key_for(good)) == good


def test_rewrap_refuses_a_store_that_keeps_old_copies() -> None:
    class KeepFirst(MemoryStore):
        def put(self, key: str, data: bytes) -> None:
            if not self.exists(key):
                super().put(key, data)

    keys = MemoryKeyStore({"old": K1})
    store = EncryptedStore(KeepFirst(), keys)
    data = _payload()
    store.put(blob_key_for(data), data)
    rep = store.rotate_all()
    assert not rep.clean and "kept the old copy" in rep.failed[blob_key_for(data)]


def test_memory_key_store() -> None:
    ks = MemoryKeyStore()
    assert isinstance(ks, KeyStore)
    kid, key = ks.current()
    assert len(key) == 32 and ks.get(kid) == key
    new = ks.rotate()
    assert new != kid and ks.current()[0] == new and ks.get(kid) == key
    with pytest.raises(ConfigError, match="current key"):
        ks.retire(new)
    with pytest.raises(ConfigError, match="32 bytes"):
        MemoryKeyStore({"a": b"short"})
    with pytest.raises(ConfigError, match="invalid master key id"):
        MemoryKeyStore({"a b": K1})


def test_env_key_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VES_KEY_A", base64.b64encode(K1).decode())
    monkeypatch.setenv("VES_KEY_B", base64.urlsafe_b64encode(K2).decode().rstrip("="))
    a, b = EnvKeyStore("VES_KEY_A"), EnvKeyStore("VES_KEY_B")
    assert isinstance(a, KeyStore)
    assert a.current()[1] == K1 and b.current()[1] == K2
    assert a.current()[0].startswith("env-") and a.current()[0] == EnvKeyStore("VES_KEY_A").current()[0]
    assert a.current()[0] != b.current()[0]
    with pytest.raises(ConfigError, match="cannot be rotated"):
        a.rotate()
    inner = MemoryStore()
    data = _payload()
    key = blob_key_for(data)
    EncryptedStore(inner, a).put(key, data)
    assert EncryptedStore(inner, EnvKeyStore("VES_KEY_A")).get(key) == data
    with pytest.raises(StorageError, match="VES_KEY_B"):
        EncryptedStore(inner, b).get(key)
    with pytest.raises(StorageError, match="cannot be rotated"):
        EncryptedStore(inner, a).rotate_all()
    for value, message in (("", "not set"), ("not base64!", "not valid base64"),
                           (base64.b64encode(b"x" * 16).decode(), "32 bytes")):
        monkeypatch.setenv("VES_KEY_C", value)
        with pytest.raises(ConfigError, match=message):
            EnvKeyStore("VES_KEY_C")


def test_file_key_store_created_private_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "keys.json"
    ks = FileKeyStore(path)
    assert isinstance(ks, KeyStore)
    assert not path.exists()  # nothing until first use
    kid, key = ks.current()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["format"] == "vesalius-keys" and doc["current"] == kid
    assert base64.b64decode(doc["keys"][kid]["key"]) == key
    assert FileKeyStore(path).current() == (kid, key)  # the same key after a restart
    # a rotation in one process reaches another holding the file open
    other = FileKeyStore(path)
    new = ks.rotate()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert other.current()[0] == new and other.get(kid) == key
    assert sorted(FileKeyStore(path).ids()) == sorted([kid, new])
    with pytest.raises(ConfigError, match="current key"):
        ks.retire(new)
    ks.retire(kid)
    with pytest.raises(StorageError, match="is not in key file"):
        FileKeyStore(path).get(kid)


def test_file_key_store_refuses_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    FileKeyStore(path).current()
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        FileKeyStore(path)


def test_file_key_store_refuses_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"format": "vesalius-keys", "version": 1, "current": "a", "keys": {}}')
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="damaged"):
        FileKeyStore(path)


def test_file_key_store_rotation_with_encrypted_store(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    inner = FilesystemStore(tmp_path / "storage", fsync=False)
    store = EncryptedStore(inner, FileKeyStore(path))
    data = _payload()
    key = blob_key_for(data)
    store.put(key, data)
    old = store.key_id_of(key)
    rep = store.rotate_all()
    assert rep.clean and rep.rewrapped == 1 and old is not None
    FileKeyStore(path).retire(old)
    assert EncryptedStore(inner, FileKeyStore(path)).get(key) == data


def test_open_key_store_and_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VES_KEY_A", base64.b64encode(K1).decode())
    assert isinstance(open_key_store(f"file:{tmp_path / 'k.json'}"), FileKeyStore)
    assert isinstance(open_key_store("env:VES_KEY_A"), EnvKeyStore)
    for bad in ("", "file:", "vault:x", "/path/keys.json"):
        with pytest.raises(ConfigError, match="encryption_key"):
            open_key_store(bad)
    assert load_settings(None, env={}).encryption_key == ""
    s = load_settings(None, env={"VESALIUS_ENCRYPTION_KEY": "env:VES_KEY_A"})
    assert s.encryption_key == "env:VES_KEY_A"
    with pytest.raises(ConfigError, match="encryption_key"):
        load_settings(None, env={}, encryption_key="secret")


# ------------------------------------------------------------------------- the archive
PATIENT_NAME = "CRYPTOSON^ALICE"
PATIENT_ID = "ENC-PID-7731"


@pytest.fixture(scope="module")
def ct_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("ct")
    return make_ct_series(out, n_slices=3, seed=7, patient_name=PATIENT_NAME, patient_id=PATIENT_ID)


@pytest.fixture
def key_file(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "keys" / "keys.json"


def test_encrypted_archive_end_to_end(tmp_path: Path, key_file: Path, ct_files: list[Path]) -> None:
    settings = make_settings(tmp_path, encryption_key=f"file:{key_file}")
    archive = open_archive(settings)
    try:
        assert isinstance(archive.store, EncryptedStore)
        originals = {}
        for f in ct_files:
            data = f.read_bytes()
            rep = archive.store_bytes(data, "CT1")
            assert rep.ok and rep.outcome == "stored", rep.reason
            assert rep.blob_key == blob_key_for(data)  # content address of the plaintext
            originals[rep.sop_instance_uid] = data
        assert archive.store_bytes(ct_files[0].read_bytes()).outcome == "duplicate"
        study = pydicom.dcmread(ct_files[0], stop_before_pixels=True).StudyInstanceUID
        refs = archive.instances_of(study)
        assert len(refs) == 3
        for ref in refs:
            assert archive.read(ref) == originals[ref.sop_uid]  # byte-exact
            assert archive.retrieval.path(ref) is None  # no zero-copy send of ciphertext
            (frame,), ts = archive.frames.frames(ref, [1], native=False)
            assert ts == "1.2.840.10008.1.2.1"
            assert frame == pydicom.dcmread(ct_files[0].parent / f"{ref.sop_uid}.dcm").PixelData
        assert verify(archive.engine, archive.store).clean
        # on disk: ciphertext only
        on_disk = sorted((settings.data_dir / "storage" / "objects").glob("*/*"))
        assert len(on_disk) == 3
        for p in on_disk:
            raw = p.read_bytes()
            assert raw.startswith(MAGIC)
            assert raw[128:132] != b"DICM"
            for secret in (PATIENT_NAME.encode(), b"CRYPTOSON", PATIENT_ID.encode(), study.encode()):
                assert secret not in raw
            assert not any(raw[i:i + 1000] in originals[uid] for uid in originals for i in (200, 5000))
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    finally:
        archive.close()

    # a restart reads them with the same key file; rotation keeps them readable
    archive = open_archive(settings)
    try:
        ref = archive.instances_of(study)[0]
        assert archive.read(ref) == originals[ref.sop_uid]
        assert isinstance(archive.store, EncryptedStore)
        rotation = archive.store.rotate_all()
        assert rotation.clean and rotation.rewrapped == 3
        assert all(archive.read(r) == originals[r.sop_uid] for r in archive.instances_of(study))
        # a tampered object is an error, never altered pixels
        path = sorted((settings.data_dir / "storage" / "objects").glob("*/*"))[0]
        damaged = bytearray(path.read_bytes())
        damaged[len(damaged) // 2] ^= 0xFF
        path.write_bytes(bytes(damaged))
        bad = next(r for r in archive.instances_of(study) if r.blob_key == path.name)
        with pytest.raises(StorageError, match=INTEGRITY):
            archive.read(bad)
        archive.frames = type(archive.frames)(archive.store)  # no cached layouts
        with pytest.raises(StorageError, match=INTEGRITY):
            archive.frames.frames(bad, [1], native=True)
        assert not verify(archive.engine, archive.store).clean
    finally:
        archive.close()


def test_encrypted_archive_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ct_files: list[Path]) -> None:
    monkeypatch.setenv("VES_ARCHIVE_KEY", base64.b64encode(os.urandom(32)).decode())
    archive = open_archive(make_settings(tmp_path, storage="memory", encryption_key="env:VES_ARCHIVE_KEY"))
    try:
        data = ct_files[1].read_bytes()
        rep = archive.store_bytes(data)
        assert rep.ok
        (ref,) = archive.instances_of(rep.study_uid, sop_uid=rep.sop_instance_uid)
        assert archive.read(ref) == data
        assert isinstance(archive.store, EncryptedStore)
        assert PATIENT_NAME.encode() not in archive.store.inner.get(rep.blob_key)
    finally:
        archive.close()

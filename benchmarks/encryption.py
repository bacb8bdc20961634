"""Encryption at rest: what it costs the ingest rate.

    .venv/bin/python benchmarks/encryption.py [--count 300] [--repeat 3] [--strict]

``--count`` generated 512x512 CT instances (``peers.cached_ct``: a thorax phantom with noise,
Explicit VR Little Endian, about 525 kB each) are read into memory once; then, ``--repeat``
times, two archives are opened side by side, each on a fresh empty data dir under
``--work-dir`` (the repository's disk, fsync on, SQLite index), and every instance is stored
into both, the order alternating instance by instance, so drift on a shared machine (fsync
latency, neighbours) hits both alike:

- ``plain``: ``open_archive`` with the default FilesystemStore;
- ``encrypted``: the same with ``encryption_key = "file:<work dir>/keys.json"``
  (:class:`vesalius.storage.EncryptedStore`: AES-256-GCM per object, data key wrapped by the
  master key).

Timed: each ``archive.store_bytes`` call, in process, one thread (validate, SHA-256,
encrypt, write + fsync + rename, index commit); every answer must be ``stored``. Per run:
instances/s per mode (count / sum of its call times) and the median of the per-instance
differences (encrypted - plain), a paired estimate of the added cost. Afterwards every
object is read back (``archive.store.get``: timed and reported, not part of the target) and
compared with what was sent.

Figure: the median over runs of instances/s per mode, and their ratio; target: encryption
costs at most 15% of the ingest rate (ratio >= 0.85). Also reported: the per-object cost of
sealing and opening alone, against SHA-256 of the same bytes. ``--storage memory`` keeps
objects in memory (no object fsync; the SQLite index still commits to disk): the CPU-bound
worst case for encryption's share.

Writes ``bench-out/encryption.json``; exit status 1 on errors, and with ``--strict`` also
on a missed target.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import peers  # noqa: E402
from vesalius.archive import open_archive  # noqa: E402
from vesalius.config import load_settings  # noqa: E402
from vesalius.storage import EncryptedStore, MemoryKeyStore, MemoryStore, blob_key_for  # noqa: E402

MODES = ("plain", "encrypted")
TARGET_RATIO = 0.85


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--count", type=int, default=300, help="instances (default 300)")
    ap.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per mode (default 3)")
    ap.add_argument("--work-dir", type=Path, default=peers.BENCH_OUT / "tmp",
                    help="where the fresh data dirs go (default bench-out/tmp)")
    ap.add_argument("--out", type=Path, default=peers.BENCH_OUT / "encryption.json")
    ap.add_argument("--storage", choices=("filesystem", "memory"), default="filesystem",
                    help="blob store under test (memory: no object fsync, so crypto weighs more)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    return ap.parse_args(argv)


def paired_run(blobs: list[bytes], work_dir: Path, storage: str) -> dict[str, Any]:
    """Both archives open side by side; each instance goes to both, the order alternating.

    Interleaving call by call makes drift on a shared machine (fsync latency, neighbours)
    hit both modes alike; per-instance times give a paired estimate of the added cost.
    """
    root = Path(tempfile.mkdtemp(prefix="enc-", dir=work_dir))
    archives = {}
    try:
        for mode in MODES:
            extra = {"encryption_key": f"file:{root / 'keys' / 'keys.json'}"} if mode == "encrypted" else {}
            settings = load_settings(None, env={}, data_dir=root / mode, storage=storage, **extra)
            archives[mode] = open_archive(settings)
            assert isinstance(archives[mode].store, EncryptedStore) == (mode == "encrypted")
        times: dict[str, list[float]] = {m: [] for m in MODES}
        for i, data in enumerate(blobs):
            for mode in (MODES if i % 2 == 0 else MODES[::-1]):
                t = time.perf_counter()
                rep = archives[mode].store_bytes(data, "BENCH")
                times[mode].append(time.perf_counter() - t)
                if rep.outcome != "stored":
                    raise RuntimeError(f"{mode}: instance not stored: {rep.outcome} {rep.reason}")
        out: dict[str, Any] = {}
        for mode, archive in archives.items():
            start = time.perf_counter()
            for data in blobs:
                if archive.store.get(blob_key_for(data)) != data:
                    raise RuntimeError(f"{mode}: an object did not read back byte-exact")
            read_s = time.perf_counter() - start
            out[mode] = {"ingest_s": sum(times[mode]), "ingest_per_s": len(blobs) / sum(times[mode]),
                         "ingest_p50_ms": 1000 * statistics.median(times[mode]),
                         "read_s": read_s, "read_per_s": len(blobs) / read_s}
        diffs = [e - p for e, p in zip(times["encrypted"], times["plain"], strict=True)]
        out["paired_added_ms_p50"] = 1000 * statistics.median(diffs)
        return out
    finally:
        for archive in archives.values():
            archive.close()
        shutil.rmtree(root, ignore_errors=True)


def crypto_costs(blobs: list[bytes], n: int = 100) -> dict[str, float]:
    """Milliseconds per object for sealing, opening and SHA-256 alone (no I/O)."""
    store = EncryptedStore(MemoryStore(), MemoryKeyStore())
    sample = blobs[:n]
    keys = [blob_key_for(b) for b in sample]
    t = time.perf_counter()
    sealed = [store.seal(k, b) for k, b in zip(keys, sample, strict=True)]
    seal_ms = (time.perf_counter() - t) * 1000 / len(sample)
    t = time.perf_counter()
    for k, s in zip(keys, sealed, strict=True):
        store.open(k, s)
    open_ms = (time.perf_counter() - t) * 1000 / len(sample)
    t = time.perf_counter()
    for b in sample:
        blob_key_for(b)
    sha_ms = (time.perf_counter() - t) * 1000 / len(sample)
    return {"seal_ms": seal_ms, "open_ms": open_ms, "sha256_ms": sha_ms}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.count < 1 or args.repeat < 1:
        print("--count and --repeat must be at least 1", file=sys.stderr)
        return 1
    ct = peers.cached_ct(args.count, args.seed, per_series=max(args.count, 1))
    blobs = [f.read_bytes() for f in ct.files]
    mb = sum(map(len, blobs)) / 1e6
    print(f"{len(blobs)} CT instances, {mb:.0f} MB; {args.repeat} paired runs; {args.storage} store",
          flush=True)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    try:
        for r in range(args.repeat):
            res = paired_run(blobs, args.work_dir, args.storage)
            runs.append(res)
            print(f"  run {r + 1}: ingest plain {res['plain']['ingest_per_s']:6.1f} inst/s, encrypted "
                  f"{res['encrypted']['ingest_per_s']:6.1f} inst/s; paired added cost "
                  f"{res['paired_added_ms_p50']:+.2f} ms/instance (p50 plain "
                  f"{res['plain']['ingest_p50_ms']:.2f} ms)", flush=True)
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    med = {m: {k: statistics.median(x[m][k] for x in runs) for k in ("ingest_per_s", "ingest_p50_ms", "read_per_s")}
           for m in MODES}
    added_ms = statistics.median(x["paired_added_ms_p50"] for x in runs)
    ratio = med["encrypted"]["ingest_per_s"] / med["plain"]["ingest_per_s"]
    read_ratio = med["encrypted"]["read_per_s"] / med["plain"]["read_per_s"]
    costs = crypto_costs(blobs)
    ok = ratio >= TARGET_RATIO
    print()
    print(f"{'mode':10s} {'ingest inst/s':>14s} {'MB/s':>8s} {'read inst/s':>12s}")
    for m in MODES:
        rate = med[m]["ingest_per_s"]
        print(f"{m:10s} {rate:14.1f} {rate * mb / len(blobs):8.1f} {med[m]['read_per_s']:12.1f}")
    print(f"\ningest ratio encrypted/plain: {ratio:.3f} (cost {100 * (1 - ratio):.1f}%; "
          f"target: cost <= {100 * (1 - TARGET_RATIO):.0f}%) -> {'met' if ok else 'MISSED'}")
    print(f"paired estimate: encryption adds {added_ms:+.2f} ms to a {med['plain']['ingest_p50_ms']:.2f} ms "
          f"ingest (p50), {100 * added_ms / med['plain']['ingest_p50_ms']:+.1f}%")
    print(f"read ratio encrypted/plain:   {read_ratio:.3f}")
    print(f"per object: seal {costs['seal_ms']:.3f} ms, open {costs['open_ms']:.3f} ms, "
          f"SHA-256 {costs['sha256_ms']:.3f} ms")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=peers.REPO_ROOT, check=False).stdout.strip()
    result: dict[str, Any] = {"count": len(blobs), "megabytes": mb, "repeat": args.repeat, "commit": commit,
                              "storage": args.storage,
                              "runs": runs, "median": med, "ingest_ratio": ratio, "paired_added_ms_p50": added_ms, "read_ratio": read_ratio,
                              "target_ratio": TARGET_RATIO, "target_met": ok, "crypto_ms_per_object": costs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())

"""C-FIND latency on a large index, and ingest into it against an empty index.

    PYTHONPATH=. python benchmarks/find.py [--count 1000000] [--backends sqlite,postgresql]

For each backend (SQLite file, PostgreSQL schema) the index is filled once by
``benchmarks/populate.py`` (cached in ``bench-out/``), then:

1. **C-FIND.** ``vesalius serve --db URL`` runs on loopback; one pynetdicom client keeps ONE
   association open and sends, interleaved, ``--queries`` Study Root STUDY-level C-FINDs of
   each type with varying values: ``patient_id`` (exact PatientID of a random patient),
   ``name_prefix`` (PatientName ``XYZ*``, the first ``--prefix-len`` letters of a random
   patient's surname) and ``date_range`` (StudyDate over 7-14 days). Latency is from sending
   the request to the final response; p50/p95 per type, with the number of matches, are
   checked against the target (p50 <= 20 ms); the time to the first response is kept too.
   The client is at its best, like dcmtk with ``TCP_NODELAY=1``: Nagle off on its socket,
   and the server's pynetdicom loop tuning (:mod:`vesalius.dimse.tuning`) so its own 1 ms
   polling does not count.
2. **Layers.** The same queries in-process, without the network: the SQL alone, the archive's
   ``find`` (SQL + matching + DICOM JSON) and building the response data sets; plus the query
   plan of one query per type (``EXPLAIN QUERY PLAN`` / ``EXPLAIN (ANALYZE, BUFFERS)``).
3. **Ingest.** ``--ingest-count`` generated 512x512 CT instances (``peers.cached_ct``) are sent
   with dcmtk ``storescu`` (``TCP_NODELAY=1``, one association) to a fresh ``serve`` on the
   large index and on an empty one, alternately, ``--ingest-repeat`` times; the ratio of the
   median rates is checked against the target (>= 0.8). Rows added to the large index are
   deleted afterwards (:func:`benchmarks.populate.reset`).

Writes ``bench-out/find.json`` and prints a table. Exit status 1 on errors (or, with
``--strict``, on a missed target).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `vesalius` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydicom.dataset import Dataset  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from benchmarks import peers, populate  # noqa: E402

QUERY_TYPES = ("patient_id", "name_prefix", "date_range")
TARGET_P50_MS = 20.0
TARGET_INGEST_RATIO = 0.8
INGEST_SEED = 11
CALLING_AET = "BENCHFIND"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root Query/Retrieve Information Model - FIND
PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: What a workstation's study list asks for: every one of them is an index column.
RETURN_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
               "StudyTime", "AccessionNumber", "StudyID", "StudyDescription",
               "ReferringPhysicianName", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
               "NumberOfStudyRelatedInstances", "StudyInstanceUID")


RANGE_DAYS = (7, 14)  # StudyDate range width (days), set by --range-days


def pg_url(schema: str) -> str:
    return f"{PG_BASE}?options=-csearch_path%3D{schema}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--count", type=int, default=1_000_000, help="indexed instances (1000000)")
    ap.add_argument("--seed", type=int, default=0, help="population and query seed (0)")
    ap.add_argument("--backends", default="sqlite,postgresql", help="sqlite,postgresql")
    ap.add_argument("--sqlite-url", default=None,
                    help="default bench-out/populate/index-n<N>-seed<S>.sqlite")
    ap.add_argument("--pg-url", default=None,
                    help=f"default {pg_url('bench1m')} (schema bench_n<N> for other counts)"
                    .replace("%", "%%"))
    ap.add_argument("--queries", type=int, default=200, help="C-FINDs per query type (200)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed C-FINDs per type first (5)")
    ap.add_argument("--range-days", default="7,14",
                    help="StudyDate range width in days, min,max (default 7,14)")
    ap.add_argument("--prefix-len", type=int, default=3, help="letters in name_prefix (3)")
    ap.add_argument("--layers", type=int, default=50,
                    help="queries per type timed in-process by layer (50; 0: skip)")
    ap.add_argument("--ingest-count", type=int, default=300, help="CT instances sent (300)")
    ap.add_argument("--ingest-repeat", type=int, default=3, help="runs per index (3; 0: skip)")
    ap.add_argument("--python", default=sys.executable, help="python that runs vesalius.cli")
    ap.add_argument("--out", type=Path, default=peers.BENCH_OUT / "find.json")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args(argv)
    global RANGE_DAYS
    lo, _, hi = args.range_days.partition(",")
    RANGE_DAYS = (int(lo), int(hi or lo))
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    bad = sorted(set(args.backends) - {"sqlite", "postgresql"})
    if bad:
        ap.error(f"unknown backends {bad}; choose from sqlite, postgresql")
    if args.queries < 1 or args.ingest_count < 1 or args.prefix_len < 1:
        ap.error("--queries, --ingest-count and --prefix-len must be at least 1")
    return args


def backend_url(backend: str, args: argparse.Namespace) -> str:
    if backend == "sqlite":
        return str(args.sqlite_url or populate.default_sqlite_url(args.count, args.seed))
    if args.pg_url:
        return str(args.pg_url)
    return pg_url("bench1m" if args.count == 1_000_000 else f"bench_n{args.count}")


def empty_url(backend: str, url: str, work_dir: Path) -> str:
    """A URL for an empty index next to ``url``: a SQLite file in ``work_dir`` or a schema."""
    if backend == "sqlite":
        return f"sqlite:///{work_dir / 'empty.sqlite'}"
    schema = populate.pg_schema(url) or "bench"
    return pg_url(f"{schema}_empty")


# --------------------------------------------------------------------------------------------
# Queries


@dataclass(frozen=True)
class QuerySpec:
    kind: str
    value: str

    def identifier(self) -> Dataset:
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: name prefixes may be non-ASCII
        ds.QueryRetrieveLevel = "STUDY"
        for kw in RETURN_KEYS:
            setattr(ds, kw, "")
        if self.kind == "patient_id":
            ds.PatientID = self.value
        elif self.kind == "name_prefix":
            ds.PatientName = self.value
        else:
            ds.StudyDate = self.value
        return ds


def pick_queries(engine: Engine, n: int, seed: int, prefix_len: int) -> list[QuerySpec]:
    """``n`` queries of each type, interleaved, with values drawn (seeded) from the index."""
    from vesalius.index.models import patients

    with engine.connect() as conn:
        rows = conn.execute(select(patients.c.patient_id, patients.c.patient_name)
                            .order_by(patients.c.pk)).all()
    rng = random.Random(seed * 1_000_003 + 17)
    out: list[QuerySpec] = []
    for _ in range(n):
        pid = rows[rng.randrange(len(rows))][0]
        surname = rows[rng.randrange(len(rows))][1].split("^", 1)[0]
        prefix = surname[:prefix_len].upper()
        start = populate.FIRST_DAY + timedelta(days=rng.randrange(populate.DAYS - 14))
        lo, hi = RANGE_DAYS
        end = start + timedelta(days=rng.randint(lo - 1, hi - 1))  # both ends included
        out += [QuerySpec("patient_id", pid), QuerySpec("name_prefix", prefix + "*"),
                QuerySpec("date_range", f"{start:%Y%m%d}-{end:%Y%m%d}")]
    return out


@dataclass
class Sample:
    kind: str
    value: str
    ms: float
    matches: int
    status: int
    first_ms: float  # request to the first response (pending or final)


def run_cfinds(node: peers.DicomNode, queries: Sequence[QuerySpec], warmup: int) -> list[Sample]:
    """Send every query over ONE association; the latency of each, request to final response."""
    import logging

    from pynetdicom import AE

    from vesalius.dimse import tuning

    tuning.apply()  # the same loop tuning as the server: no 1 ms polling on the client side
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    ae = AE(ae_title=CALLING_AET)
    ae.add_requested_context(FIND)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    assoc = ae.associate(node.host, node.port, ae_title=node.aet)
    if not assoc.is_established:
        raise peers.PeerError(f"association with {node.aet}@{node.host}:{node.port} refused")
    # Like dcmtk with TCP_NODELAY=1: the request's command and data set go out at once instead
    # of the second waiting ~40 ms for the server's delayed ACK (Nagle).
    client_sock = assoc.dul.socket.socket if assoc.dul.socket else None
    if client_sock is not None:
        client_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples: list[Sample] = []
    try:
        warm = [q for q in queries[: 3 * warmup]]
        for i, q in enumerate([*warm, *queries]):
            ds = q.identifier()
            matches = 0
            final = -1
            first = 0.0
            t0 = time.perf_counter()
            for status, _ident in assoc.send_c_find(ds, FIND, msg_id=(i % 65535) + 1):
                if not first:
                    first = time.perf_counter()
                if not status:
                    raise peers.PeerError("C-FIND: no response (association aborted?)")
                code = int(status.Status)
                if code in (0xFF00, 0xFF01):
                    matches += 1
                else:
                    final = code
            ms = (time.perf_counter() - t0) * 1000.0
            if i >= len(warm):
                samples.append(Sample(q.kind, q.value, ms, matches, final,
                                      (first - t0) * 1000.0))
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()
    return samples


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank on sorted values, linear between ranks)."""
    s = sorted(values)
    if not s:
        return math.nan
    k = (len(s) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize_finds(samples: Sequence[Sample]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for kind in QUERY_TYPES:
        mine = [s for s in samples if s.kind == kind]
        ms = [s.ms for s in mine]
        matches = [s.matches for s in mine]
        p50 = percentile(ms, 50)
        out[kind] = {
            "n": len(mine),
            "p50_ms": round(p50, 2),
            "p95_ms": round(percentile(ms, 95), 2),
            "mean_ms": round(statistics.fmean(ms), 2) if ms else math.nan,
            "min_ms": round(min(ms), 2) if ms else math.nan,
            "max_ms": round(max(ms), 2) if ms else math.nan,
            "first_response_p50_ms": round(percentile([s.first_ms for s in mine], 50), 2),
            "matches_median": statistics.median(matches) if matches else 0,
            "matches_mean": round(statistics.fmean(matches), 1) if matches else 0,
            "matches_max": max(matches) if matches else 0,
            "failed": sum(1 for s in mine if s.status != 0),
            "pass": bool(p50 <= TARGET_P50_MS and all(s.status == 0 for s in mine)),
        }
    # Latency ~ fixed + per_match * matches (least squares over every sample).
    if len(samples) > 2:
        xs = [float(s.matches) for s in samples]
        ys = [s.ms for s in samples]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        if sxx > 0:
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
            out["_fit"] = {"fixed_ms": round(my - slope * mx, 2), "per_match_ms": round(slope, 4)}
    return out


# --------------------------------------------------------------------------------------------
# In-process layers and query plans


def layers_and_plans(url: str, queries: Sequence[QuerySpec], per_type: int,
                     work_dir: Path) -> dict[str, Any]:
    """SQL-only, archive.find and data-set-building times in-process; one plan per type."""
    from vesalius.archive import open_archive
    from vesalius.config import load_settings
    from vesalius.dimse.scp import response_dataset

    settings = load_settings(data_dir=work_dir / "layers", db=url, storage="memory")
    archive = open_archive(settings, recover=False)
    engine = archive.engine
    out: dict[str, Any] = {}
    try:
        for kind in QUERY_TYPES:
            mine = [q for q in queries if q.kind == kind][:per_type]
            sql_ms: list[float] = []
            find_ms: list[float] = []
            build_ms: list[float] = []
            rows: list[int] = []
            for q in mine:
                query = archive.parse_query(q.identifier())
                stmt, _recheck = archive.reader._select(query)
                with engine.connect() as conn:
                    t0 = time.perf_counter()
                    got = conn.execute(stmt).all()
                    sql_ms.append((time.perf_counter() - t0) * 1000.0)
                rows.append(len(got))
                t0 = time.perf_counter()
                docs = list(archive.find(query))
                find_ms.append((time.perf_counter() - t0) * 1000.0)
                t0 = time.perf_counter()
                for doc in docs:
                    response_dataset(doc, query.level)
                build_ms.append((time.perf_counter() - t0) * 1000.0)
            first = mine[0]
            query = archive.parse_query(first.identifier())
            stmt, recheck = archive.reader._select(query)
            sql = str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
            out[kind] = {
                "n": len(mine),
                "sql_p50_ms": round(percentile(sql_ms, 50), 2),
                "find_p50_ms": round(percentile(find_ms, 50), 2),
                "build_datasets_p50_ms": round(percentile(build_ms, 50), 2),
                "sql_rows_median": statistics.median(rows) if rows else 0,
                "recheck_in_python": [c.keyword for c in recheck],
                "plan_query": first.value,
                "sql": sql,
                "plan": explain(engine, sql),
            }
    finally:
        archive.close()
    return out


def explain(engine: Engine, sql: str) -> list[str]:
    """The plan of ``sql`` (compiled with literal values, as the driver expects it)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql).all()
            return [f"{r[0]}|{r[1]}| {r[3]}" for r in rows]
        return [str(r[0]) for r in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql)]


# --------------------------------------------------------------------------------------------
# Ingest: large index vs empty index


def _study_instances(url: str, study_uid: str) -> int:
    from vesalius.index.db import make_engine
    from vesalius.index.models import instances, studies

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            joined = instances.join(studies, instances.c.study_pk == studies.c.pk)
            stmt = select(func.count()).select_from(joined).where(studies.c.study_uid == study_uid)
            return int(conn.execute(stmt).scalar_one())
    finally:
        engine.dispose()


def ingest_runs(backend: str, url: str, manifest: dict[str, Any], args: argparse.Namespace,
                errors: list[str]) -> dict[str, Any]:
    ct = peers.cached_ct(args.ingest_count, INGEST_SEED, per_series=args.ingest_count)
    peers.warm_page_cache(ct.files)
    rates: dict[str, list[float]] = {"full": [], "empty": []}
    tmp_root = peers.BENCH_OUT / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    for rep in range(args.ingest_repeat):
        order = ("full", "empty") if rep % 2 == 0 else ("empty", "full")
        for target in order:
            work = Path(tempfile.mkdtemp(prefix=f"find-{backend}-{target}-", dir=tmp_root))
            db = url if target == "full" else empty_url(backend, url, work)
            try:
                if target == "empty":
                    populate.drop(db)
                    populate.prepare(db).dispose()
                with peers.vesalius(work, python=args.python, db=db,
                                    dicom_host=peers.HOST) as peer:
                    secs = peers.run_storescu(ct.dicom_dir, peer.node.aet, peers.HOST,
                                              peer.node.port, calling_aet="BENCHSTORE")
                    held = _study_instances(db, ct.series[0].study_uid)
                if held != ct.count:
                    raise peers.PeerError(f"{target} index holds {held} of {ct.count} sent")
                rates[target].append(ct.count / secs)
                print(f"  ingest {backend:10s} {target:5s} run {rep + 1}: "
                      f"{ct.count / secs:7.1f} instances/s", flush=True)
            except Exception as exc:
                errors.append(f"{backend} ingest {target} run {rep + 1}: {exc}")
                print(f"  ingest {backend} {target} run {rep + 1} FAILED: {exc}", flush=True)
                with contextlib.suppress(Exception):
                    peers.keep_logs(work, f"find-{backend}-{target}-{rep + 1}")
            finally:
                if target == "full":
                    engine = populate.prepare(url)
                    populate.reset(engine, manifest)
                    engine.dispose()
                else:
                    with contextlib.suppress(Exception):
                        populate.drop(db)
                shutil.rmtree(work, ignore_errors=True)
                os.sync()
    full = statistics.median(rates["full"]) if rates["full"] else math.nan
    empty = statistics.median(rates["empty"]) if rates["empty"] else math.nan
    ratio = full / empty if empty and not math.isnan(empty) else math.nan
    return {
        "instances": ct.count,
        "rates_full": [round(r, 1) for r in rates["full"]],
        "rates_empty": [round(r, 1) for r in rates["empty"]],
        "median_full": round(full, 1),
        "median_empty": round(empty, 1),
        "ratio": round(ratio, 3),
        "pass": bool(ratio >= TARGET_INGEST_RATIO),
    }


# --------------------------------------------------------------------------------------------
# Per backend, report


@contextlib.contextmanager
def _work_dir(backend: str) -> Iterator[Path]:
    root = peers.BENCH_OUT / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"find-{backend}-", dir=root))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_backend(backend: str, args: argparse.Namespace, errors: list[str]) -> dict[str, Any]:
    url = backend_url(backend, args)
    print(f"== {backend}: {url}", flush=True)
    engine, manifest = populate.ensure(url, args.count, args.seed)
    queries = pick_queries(engine, args.queries, args.seed, args.prefix_len)
    engine.dispose()
    result: dict[str, Any] = {"url": url, "index": manifest["counts"]}
    with _work_dir(backend) as work:
        try:
            with peers.vesalius(work, python=args.python, db=url, dicom_host=peers.HOST) as peer:
                t0 = time.perf_counter()
                samples = run_cfinds(peer.node, queries, args.warmup)
                print(f"  {len(samples)} C-FINDs in {time.perf_counter() - t0:.1f} s", flush=True)
            result["find"] = summarize_finds(samples)
            result["samples"] = [[s.kind, s.value, round(s.ms, 3), s.matches, round(s.first_ms, 3)]
                                 for s in samples]
        except Exception as exc:
            errors.append(f"{backend} C-FIND: {exc}")
            traceback.print_exc()
            with contextlib.suppress(Exception):
                peers.keep_logs(work, f"find-{backend}")
        if args.layers > 0:
            try:
                result["layers"] = layers_and_plans(url, queries, args.layers, work)
            except Exception as exc:
                errors.append(f"{backend} layers: {exc}")
                traceback.print_exc()
    if args.ingest_repeat > 0:
        result["ingest"] = ingest_runs(backend, url, manifest, args, errors)
    return result


def print_report(results: dict[str, dict[str, Any]]) -> None:
    print()
    print(f"C-FIND, Study Root, STUDY level, one association (target p50 <= {TARGET_P50_MS:g} ms)")
    print(f"{'backend':10s} {'query':12s} {'p50 ms':>8s} {'p95 ms':>8s} {'matches':>8s} "
          f"{'1st rsp':>8s} {'sql p50':>8s} {'find p50':>9s} {'result':>7s}")
    for backend, res in results.items():
        for kind in QUERY_TYPES:
            f = res.get("find", {}).get(kind)
            if f is None:
                continue
            lay = res.get("layers", {}).get(kind, {})
            print(f"{backend:10s} {kind:12s} {f['p50_ms']:8.2f} {f['p95_ms']:8.2f} "
                  f"{f['matches_median']:8g} {f['first_response_p50_ms']:8.2f} "
                  f"{lay.get('sql_p50_ms', math.nan):8.2f} "
                  f"{lay.get('find_p50_ms', math.nan):9.2f} {'PASS' if f['pass'] else 'FAIL':>7s}")
        fit = res.get("find", {}).get("_fit")
        if fit:
            print(f"{'':10s} latency ~ {fit['fixed_ms']:.2f} ms + {fit['per_match_ms']:.3f} ms "
                  "per match (all samples)")
    print()
    print(f"Ingest of generated CT, storescu one association (target ratio >= "
          f"{TARGET_INGEST_RATIO:g})")
    print(f"{'backend':10s} {'instances':>9s} {'full /s':>9s} {'empty /s':>9s} {'ratio':>7s} "
          f"{'result':>7s}")
    for backend, res in results.items():
        ing = res.get("ingest")
        if not ing:
            continue
        print(f"{backend:10s} {ing['instances']:9d} {ing['median_full']:9.1f} "
              f"{ing['median_empty']:9.1f} {ing['ratio']:7.3f} "
              f"{'PASS' if ing['pass'] else 'FAIL':>7s}")
    for backend, res in results.items():
        for kind, lay in res.get("layers", {}).items():
            if not res.get("find", {}).get(kind, {}).get("pass", True):
                print(f"\n{backend} {kind} ({lay['plan_query']}) missed the target; its plan:")
                for line in lay["plan"]:
                    print("   ", line)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    peers.require_tool("storescu")
    errors: list[str] = []
    results: dict[str, dict[str, Any]] = {}
    started = time.time()
    for backend in args.backends:
        try:
            results[backend] = run_backend(backend, args, errors)
        except Exception as exc:
            errors.append(f"{backend}: {exc}")
            traceback.print_exc()
    print_report(results)
    passed = all(
        f["pass"] for r in results.values() for k, f in r.get("find", {}).items() if k != "_fit"
    ) and all(r["ingest"]["pass"] for r in results.values() if "ingest" in r)
    doc = {
        "host": peers.host_info(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "targets": {"find_p50_ms": TARGET_P50_MS, "ingest_ratio": TARGET_INGEST_RATIO},
        "results": results,
        "pass": passed,
        "errors": errors,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, ensure_ascii=False))
    print(f"\n{'PASS' if passed else 'FAIL'}; wrote {args.out}")
    for e in errors:
        print("error:", e, file=sys.stderr)
    if errors:
        return 1
    return 1 if args.strict and not passed else 0


if __name__ == "__main__":
    sys.exit(main())

"""DICOMweb, side by side: Vesalius and Orthanc (with its DICOMweb plugin) on the same data.

    .venv/bin/python benchmarks/dicomweb.py [--quick] [--out bench-out/dicomweb.json]

Both servers run on loopback with their own fresh storage: Orthanc 1.10 with the DICOMweb
plugin (``"DicomWeb": {"Enable": true, "Root": "/dicom-web/"}``), ``TCP_NODELAY=1``, default
SQLite index and ``SyncStorageArea`` (fsync per file); Vesalius with ``serve --http-port``.
The client is httpx with one persistent connection per client thread, sending
``Accept-Encoding: identity`` (Orthanc would otherwise gzip its JSON answers) and query
strings written as OHIF writes them (``*`` and ``,`` literal: Orthanc 1.10 does not decode
``%2A``). Requests to the two servers alternate, so drift on this noisy machine hits both.

1. **STOW-RS ingest.** ``--instances`` generated 512x512 CT instances (``peers.cached_ct``, a
   thorax phantom with noise) as multipart/related bodies of ``--per-request`` instances,
   built in memory before timing; one client, then ``--parallel`` clients; a fresh server
   on an empty data dir for every run; every instance must be acknowledged and found by
   QIDO afterwards. Figure: instances/s (median of ``--stow-repeat`` runs).
2. **QIDO-RS study search** on ~``--qido-instances`` instances (a seeded archive shaped by
   ``populate.make_plan``, small 64x64 images, dates squeezed into 2020 so a week matches
   ~10 studies), loaded into both by STOW (4 clients): ``PatientID=X``,
   ``PatientName=ABC*``, ``StudyDate=<7 days>`` (the first is 20200101-20200107) and OHIF's
   study list ``limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060``.
   p50/p90 latency (request to last byte) and the median number of matches per server.
   With ``--big-count`` (default 1,000,000; 0 skips) the same query types run against
   Vesalius alone on the index of ``benchmarks/populate.py`` (Orthanc cannot be filled to 1M
   in reasonable time): 1M for us against Orthanc at 10k, not like for like.
3. **WADO-RS retrieve** of the ``--instances`` CT series: ``GET /studies/{st}/series/{se}``
   with ``Accept: multipart/related; type="application/dicom"; transfer-syntax=*``; every
   part must arrive; MB/s of the series' files, median of ``--retrieve-repeat`` after one
   warm-up. Two clients: a plain-socket HTTP/1.1 client (:class:`RawHttp`, the headline:
   httpx tops out near 1 GB/s here, below what the servers deliver) and httpx.
4. **Series metadata** of a ``--metadata-count`` (600) instance CT series: the first call
   after loading, then p50 of ``--metadata-repeat`` warm calls.
5. **Rendered**: ``GET .../instances/{sop}/rendered`` (Accept image/jpeg) over ``--rendered``
   distinct instances of that series (first render: Vesalius caches rendered images), then
   the same instances again (cached repeat); plus ``frames/1`` of other distinct instances.
6. **Mix**: ``--mix-clients`` (50) threads for ``--mix-seconds`` (60) mixing QIDO, WADO
   (metadata, frames, retrieve, rendered) and STOW of new instances; errors (non-2xx,
   exceptions) are counted, then every instance a STOW acknowledged is fetched back and
   compared byte for byte (SHA-256) with what was sent.

``--quick`` shrinks everything for a smoke run (about a minute). ``--phases`` runs a subset
(e.g. ``--phases retrieve --retrieve-repeat 25``). ``--profile`` attaches
py-spy to our server during its timed phases and writes collapsed stacks and a top-N summary
to ``bench-out/profile/`` (the profiler slows the server: those figures are not for
publishing). Writes ``bench-out/dicomweb.json`` (with the git commit measured); exit status
1 on errors (a missed target is reported, not an error).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import peers  # noqa: E402

TARGETS = ("orthanc", "vesalius")
ROOT = "/dicom-web"
DICOM_MP = 'multipart/related; type="application/dicom"; transfer-syntax=*'
FRAMES_MP = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
OHIF_LIST = "limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060"
QIDO_KINDS = ("patient_id", "name_prefix", "date_range", "ohif_list")
PHASES = ("stow", "metadata", "rendered", "qido", "retrieve", "mix", "big")
CORPUS_VERSION = 1

# Targets of the DICOMweb issue.
TARGET_STOW_RATIO = 1.5  # ours >= 1.5x Orthanc instances/s
TARGET_QIDO_RATIO = 0.5  # ours p50 <= 0.5x Orthanc's
TARGET_RETRIEVE_RATIO = 1.5  # ours >= 1.5x Orthanc MB/s
TARGET_METADATA_MS = 150.0  # ours p50 < 150 ms
TARGET_RENDERED_RATIO = 1.0  # ours p50 <= Orthanc's


# --------------------------------------------------------------------------------------------
# Arguments


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="small sizes for a smoke run (~2 min); explicit options still win")
    ap.add_argument("--targets", default=",".join(TARGETS), help="orthanc,vesalius")
    ap.add_argument("--instances", type=int, default=None,
                    help="CT instances for STOW and the WADO series (300; quick 60)")
    ap.add_argument("--per-request", type=int, default=10, help="instances per STOW body (10)")
    ap.add_argument("--parallel", type=int, default=4, help="parallel STOW clients (4)")
    ap.add_argument("--stow-repeat", type=int, default=None, help="STOW runs per mode (5; quick 1)")
    ap.add_argument("--qido-instances", type=int, default=None,
                    help="instances in the QIDO archive (10000; quick 1000)")
    ap.add_argument("--queries", type=int, default=None, help="QIDO queries per type (100; quick 20)")
    ap.add_argument("--big-count", type=int, default=None,
                    help="Vesalius-only QIDO on a populated index of this size "
                         "(1000000; quick 0 = skip)")
    ap.add_argument("--retrieve-repeat", type=int, default=None,
                    help="timed series retrieves per server (5; quick 2), after one warm-up")
    ap.add_argument("--metadata-count", type=int, default=None,
                    help="instances of the metadata/rendered series (600; quick 100)")
    ap.add_argument("--metadata-repeat", type=int, default=None, help="warm metadata calls (10; quick 3)")
    ap.add_argument("--rendered", type=int, default=None,
                    help="distinct instances rendered (50; quick 10)")
    ap.add_argument("--mix-seconds", type=float, default=None, help="mixed-load duration (60; quick 10)")
    ap.add_argument("--mix-clients", type=int, default=50, help="mixed-load client threads (50)")
    ap.add_argument("--mix-targets", default=None,
                    help="servers the mix runs on (default: every target; 'none' skips)")
    ap.add_argument("--phases", default=",".join(PHASES),
                    help=f"subset of {','.join(PHASES)} (default all; e.g. a retrieve-only rerun "
                         "with more repeats)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the QIDO archive and queries (0)")
    ap.add_argument("--python", default=sys.executable, help="python that runs `-m vesalius.cli`")
    ap.add_argument("--work-dir", type=Path, default=peers.BENCH_OUT / "tmp",
                    help="where the servers' data dirs are made (default bench-out/tmp)")
    ap.add_argument("--profile", action="store_true",
                    help="py-spy our server during its phases (bench-out/profile/; slows it)")
    ap.add_argument("--out", type=Path, default=peers.BENCH_OUT / "dicomweb.json")
    args = ap.parse_args(argv)
    quick = args.quick
    defaults = {
        "instances": (300, 60), "stow_repeat": (5, 1), "qido_instances": (10_000, 1_000),
        "queries": (100, 20), "big_count": (1_000_000, 0), "retrieve_repeat": (5, 2),
        "metadata_count": (600, 100), "metadata_repeat": (10, 3), "rendered": (50, 10),
        "mix_seconds": (60.0, 10.0),
    }
    for name, (full, small) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    args.phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    if args.phases - set(PHASES) or not args.phases:
        ap.error(f"unknown phases {sorted(args.phases - set(PHASES))}; choose from {', '.join(PHASES)}")
    if "mix" not in args.phases:
        args.mix_targets = "none"
    if "big" not in args.phases:
        args.big_count = 0
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown or not args.targets:
        ap.error(f"unknown targets {unknown}; choose from {', '.join(TARGETS)}")
    if args.mix_targets is None:
        args.mix_targets = list(args.targets)
    elif args.mix_targets.strip().lower() == "none":
        args.mix_targets = []
    else:
        args.mix_targets = [t.strip() for t in args.mix_targets.split(",") if t.strip()]
        if set(args.mix_targets) - set(args.targets):
            ap.error("--mix-targets must be among --targets")
    if min(args.instances, args.per_request, args.parallel, args.stow_repeat, args.queries,
           args.retrieve_repeat, args.metadata_count, args.metadata_repeat) < 1:
        ap.error("sizes and repeats must be at least 1")
    if args.rendered > args.metadata_count // 2:
        ap.error("--rendered must be at most half of --metadata-count (distinct instances)")
    return args


# --------------------------------------------------------------------------------------------
# Statistics and small helpers


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (linear between nearest ranks); NaN for no values."""
    s = sorted(values)
    if not s:
        return math.nan
    k = (len(s) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def rnd(x: float, nd: int = 2) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, nd)


def latency_summary(ms: Sequence[float]) -> dict[str, Any]:
    return {"n": len(ms), "p50_ms": rnd(percentile(ms, 50)), "p90_ms": rnd(percentile(ms, 90)),
            "min_ms": rnd(min(ms)) if ms else None, "max_ms": rnd(max(ms)) if ms else None}


def client(port: int, timeout: float = 600.0) -> httpx.Client:
    """One persistent HTTP/1.1 connection to a server's DICOMweb root (no proxies, no gzip)."""
    return httpx.Client(base_url=f"http://{peers.HOST}:{port}{ROOT}", trust_env=False,
                        timeout=httpx.Timeout(timeout), headers={"Accept-Encoding": "identity"})


def multipart_body(parts: Sequence[bytes]) -> tuple[bytes, str]:
    """A STOW-RS body of application/dicom parts and its Content-Type."""
    boundary = "vesalius-bench-" + secrets.token_hex(12)
    delim = b"--" + boundary.encode()
    out = bytearray()
    for p in parts:
        out += delim + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n"
    out += delim + b"--\r\n"
    return bytes(out), f'multipart/related; type="application/dicom"; boundary={boundary}'


_BOUNDARY = re.compile(r'boundary="?([^";,]+)"?', re.IGNORECASE)


def boundary_of(content_type: str) -> bytes:
    m = _BOUNDARY.search(content_type or "")
    if not m:
        raise peers.PeerError(f"no boundary in Content-Type {content_type!r}")
    return m.group(1).strip().encode("latin-1")


def split_multipart(body: bytes, content_type: str) -> list[bytes]:
    """The bodies of the parts of a multipart/related answer."""
    delim = b"--" + boundary_of(content_type)
    out: list[bytes] = []
    pieces = body.split(delim)
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        head, sep, rest = piece.partition(b"\r\n\r\n")
        if not sep:
            continue
        out.append(rest[:-2] if rest.endswith(b"\r\n") else rest)
    return out


def stow_acks(resp: httpx.Response) -> list[str]:
    """SOP Instance UIDs in the ReferencedSOPSequence (0008,1199) of a STOW-RS answer."""
    try:
        doc = resp.json()
    except ValueError:
        return []
    if not isinstance(doc, dict):
        return []
    items = (doc.get("00081199") or {}).get("Value") or []
    out = []
    for item in items:
        v = (item.get("00081155") or {}).get("Value") or []
        if v:
            out.append(str(v[0]))
    return out


def q(value: str) -> str:
    """A query value as OHIF writes it: ``*``, ``,``, ``-`` and ``^`` literal, UTF-8 escaped."""
    return urllib.parse.quote(value, safe="*,-^")


def wait_quiet() -> None:
    os.sync()  # the previous phase's dirty pages are written now, not during the next one


# --------------------------------------------------------------------------------------------
# The QIDO archive: a seeded, realistic shape (populate.make_plan) as small DICOM files


@dataclass
class CorpusSeries:
    uid: str
    modality: str
    sops: list[str]


@dataclass
class CorpusStudy:
    patient_id: str
    patient_name: str
    study_date: str
    uid: str
    series: list[CorpusSeries] = field(default_factory=list)


@dataclass
class Corpus:
    root: Path
    files: list[Path]
    studies: list[CorpusStudy]
    total_bytes: int


def _uid(*parts: object) -> str:
    text = "/".join(["vesalius-dicomweb-bench", *map(str, parts)])
    return "2.25." + str(int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big"))


def corpus_date(day: int, days: int) -> str:
    """A day of the plan's ten years squeezed into 2020 (so a week matches ~10 studies)."""
    return (date(2020, 1, 1) + timedelta(days=min(365, day * 366 // days))).strftime("%Y%m%d")


def qido_corpus(count: int, seed: int) -> Corpus:
    """``count`` small instances shaped like an archive (patients, studies, series of each
    modality), cached under ``bench-out/data/qido-n<count>-seed<seed>/``."""
    base = peers.BENCH_OUT / "data" / f"qido-n{count}-seed{seed}"
    manifest_path = base / "manifest.json"
    if manifest_path.exists():
        m = json.loads(manifest_path.read_text())
        cached = [base / f for f in m["files"]]
        if m.get("version") == CORPUS_VERSION and all(f.exists() for f in cached):
            known = [CorpusStudy(s["patient_id"], s["patient_name"], s["study_date"], s["uid"],
                                 [CorpusSeries(**x) for x in s["series"]]) for s in m["studies"]]
            return Corpus(base, cached, known, int(m["total_bytes"]))
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import UID, ExplicitVRLittleEndian

    from benchmarks import populate

    print(f"generating the QIDO archive: {count} small instances (seed {seed}) in {base} ...",
          flush=True)
    t0 = time.perf_counter()
    if base.exists():
        shutil.rmtree(base)
    (base / "dicom").mkdir(parents=True)
    plan = populate.make_plan(count, seed)
    size = 64
    phantom = peers._phantom_hu(size, 360.0 / size, seed) + 1024.0
    files: list[Path] = []
    studies: list[CorpusStudy] = []
    total = 0
    for si, st in enumerate(plan.studies):
        pat = plan.patients[st.patient]
        study = CorpusStudy(pat.patient_id, pat.name, corpus_date(st.day, populate.DAYS),
                            _uid(seed, "study", si))
        sdir = base / "dicom" / f"st{si:05d}"
        sdir.mkdir()
        for ri, sp in enumerate(st.series):
            ds = Dataset()
            ds.SpecificCharacterSet = "ISO_IR 100" if pat.ascii else "ISO_IR 192"
            ds.StudyDate = ds.SeriesDate = ds.ContentDate = study.study_date
            ds.StudyTime = ds.SeriesTime = ds.ContentTime = st.time
            ds.AccessionNumber = f"RAD{seed:02d}{si:07d}"
            ds.Modality = sp.modality
            ds.Manufacturer = "Vesalius benchmark"
            ds.InstitutionName = "St. Mary's Hospital"
            ds.ReferringPhysicianName = "Müller^Hans" if si % 7 == 0 else "Smith^John"
            ds.StudyDescription = st.description
            ds.SeriesDescription = sp.description
            ds.BodyPartExamined = sp.body_part
            ds.PatientName = pat.name
            ds.PatientID = pat.patient_id
            ds.PatientBirthDate = pat.birth_date
            ds.PatientSex = pat.sex
            ds.StudyInstanceUID = study.uid
            ds.SeriesInstanceUID = _uid(seed, "series", si, ri)
            ds.StudyID = str(si + 1)
            ds.SeriesNumber = ri + 1
            meta = FileMetaDataset()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            if sp.modality == "SR":
                ds.SOPClassUID = sp.sop_class
                ds.ValueType = "CONTAINER"
                ds.ContinuityOfContent = "SEPARATE"
                ds.CompletionFlag = "COMPLETE"
                ds.VerificationFlag = "UNVERIFIED"
                code = Dataset()
                code.CodeValue, code.CodingSchemeDesignator = "18748-4", "LN"
                code.CodeMeaning = "Diagnostic Imaging Report"
                ds.ConceptNameCodeSequence = DicomSequence([code])
                item = Dataset()
                item.RelationshipType, item.ValueType = "CONTAINS", "TEXT"
                finding = Dataset()
                finding.CodeValue, finding.CodingSchemeDesignator = "121071", "DCM"
                finding.CodeMeaning = "Finding"
                item.ConceptNameCodeSequence = DicomSequence([finding])
                item.TextValue = "No acute findings."
                ds.ContentSequence = DicomSequence([item])
            else:
                ds.SOPClassUID = sp.sop_class
                ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
                ds.SamplesPerPixel = 1
                ds.PhotometricInterpretation = "MONOCHROME2"
                ds.Rows = ds.Columns = size
                ds.PixelSpacing = [360.0 / size] * 2
                ds.BitsAllocated = 16
                ds.BitsStored = 16
                ds.HighBit = 15
                ds.PixelRepresentation = 1
                ds.WindowCenter = 40
                ds.WindowWidth = 400
                ds.RescaleIntercept = -1024
                ds.RescaleSlope = 1
                ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
                ds.FrameOfReferenceUID = _uid(seed, "for", si)
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.file_meta = meta
            series = CorpusSeries(ds.SeriesInstanceUID, sp.modality, [])
            for i in range(sp.count):
                sop = _uid(seed, "sop", si, ri, i)
                meta.MediaStorageSOPInstanceUID = UID(sop)
                ds.SOPInstanceUID = sop
                ds.InstanceNumber = i + 1
                if sp.modality != "SR":
                    rng = np.random.default_rng([seed, si, ri, i])
                    img = phantom + 15.0 * rng.standard_normal((size, size), dtype=np.float32)
                    ds.ImagePositionPatient = [-180.0, -180.0, -2.5 * i]
                    ds.PixelData = np.clip(np.rint(img), -32768, 32767).astype("<i2").tobytes()
                path = sdir / f"{ri:02d}-{i:05d}.dcm"
                ds.save_as(path, enforce_file_format=True)
                total += path.stat().st_size
                files.append(path)
                series.sops.append(sop)
            study.series.append(series)
        studies.append(study)
    manifest_path.write_text(json.dumps({
        "version": CORPUS_VERSION, "count": count, "seed": seed, "total_bytes": total,
        "files": [str(f.relative_to(base)) for f in files],
        "studies": [{"patient_id": s.patient_id, "patient_name": s.patient_name,
                     "study_date": s.study_date, "uid": s.uid,
                     "series": [x.__dict__ for x in s.series]} for s in studies],
    }))
    print(f"  {len(files)} files, {total / 1e6:.0f} MB, {len(studies)} studies in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    return Corpus(base, files, studies, total)


@dataclass(frozen=True)
class Query:
    kind: str
    qs: str  # the query string after "/studies?"


def corpus_queries(corpus: Corpus, n: int, seed: int) -> list[Query]:
    """``n`` queries of each kind, interleaved, with values drawn from the corpus."""
    rng = random.Random(seed * 7 + 3)
    prefixes = sorted({s.patient_name.split("^")[0][:3].upper() for s in corpus.studies
                       if re.fullmatch(r"[A-Za-z]{3}", s.patient_name.split("^")[0][:3])})
    out: list[Query] = []
    for i in range(n):
        st = corpus.studies[rng.randrange(len(corpus.studies))]
        start = date(2020, 1, 1) + timedelta(days=0 if i == 0 else rng.randrange(359))
        end = start + timedelta(days=6)
        out += [Query("patient_id", f"PatientID={q(st.patient_id)}"),
                Query("name_prefix", f"PatientName={q(rng.choice(prefixes) + '*')}"),
                Query("date_range", f"StudyDate={start:%Y%m%d}-{end:%Y%m%d}"),
                Query("ohif_list", OHIF_LIST)]
    return out


def big_queries(count: int, seed: int, n: int) -> tuple[str, list[Query]]:
    """The populated index of ``count`` instances and ``n`` queries per kind drawn from it (the
    same drawing as benchmarks/find.py: 3-letter name prefixes, 7-14 day ranges)."""
    from benchmarks import find, populate

    url = populate.default_sqlite_url(count, seed)
    engine, _manifest = populate.ensure(url, count, seed)
    try:
        specs = find.pick_queries(engine, n, seed, 3)
    finally:
        engine.dispose()
    out: list[Query] = []
    for s in specs:
        key = {"patient_id": "PatientID", "name_prefix": "PatientName", "date_range": "StudyDate"}[s.kind]
        out.append(Query(s.kind, f"{key}={q(s.value)}"))
        if s.kind == "date_range":
            out.append(Query("ohif_list", OHIF_LIST))
    return url, out


# --------------------------------------------------------------------------------------------
# Servers


@contextlib.contextmanager
def start(target: str, work: Path, args: argparse.Namespace, db: str | None = None
          ) -> Iterator[peers.RunningPeer]:
    work.mkdir(parents=True, exist_ok=True)
    if target == "orthanc":
        with peers.orthanc(work, dicomweb=True) as peer:
            yield peer
    else:
        with peers.vesalius(work, python=args.python, db=db, dicom_host=peers.HOST) as peer:
            yield peer


class Profiler:
    """py-spy attached to our server for one phase (collapsed stacks); a no-op when off."""

    def __init__(self, enabled: bool, out_dir: Path) -> None:
        self.enabled = enabled
        self.out_dir = out_dir
        self.summaries: dict[str, Any] = {}

    @contextlib.contextmanager
    def phase(self, name: str, peer: peers.RunningPeer) -> Iterator[None]:
        if not self.enabled or peer.name != "vesalius":
            yield
            return
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        raw = self.out_dir / f"{name}.txt"
        proc = subprocess.Popen(
            [exe, "record", "--pid", str(peer.process.pid), "--rate", "250", "--nonblocking",
             "--format", "raw", "-o", str(raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(1.0)  # attached before the phase starts
        try:
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            if raw.exists():
                self.summaries[name] = summarize_profile(raw)
                print_profile(name, self.summaries[name])


def summarize_profile(raw: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_n: Counter[str] = Counter()
    incl_n: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        k = int(n)
        total += k
        frames = [re.sub(r" \((.*/)?([^/]+?):\d+\)$", r" (\2)", f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if frames:
            self_n[frames[-1]] += k
        for f in set(frames):
            incl_n[f] += k
    def pct(c: Counter[str]) -> list[list[Any]]:
        return [[f, round(100.0 * v / total, 1)] for f, v in c.most_common(top)] if total else []

    return {"samples": total, "self_pct": pct(self_n), "inclusive_pct": pct(incl_n), "raw": str(raw)}


def print_profile(name: str, s: dict[str, Any]) -> None:
    print(f"    profile {name}: {s['samples']} samples; top self time:")
    for f, p in s["self_pct"][:8]:
        print(f"      {p:5.1f}%  {f[:110]}")


# --------------------------------------------------------------------------------------------
# 1. STOW-RS


def stow_bodies(datas: Sequence[bytes], per_request: int) -> list[tuple[bytes, str, int]]:
    out = []
    for i in range(0, len(datas), per_request):
        chunk = datas[i:i + per_request]
        body, ctype = multipart_body(chunk)
        out.append((body, ctype, len(chunk)))
    return out


def stow_send(port: int, bodies: Sequence[tuple[bytes, str, int]], clients: int
              ) -> tuple[float, int, list[str]]:
    """Send ``bodies`` from ``clients`` threads (round robin), each on its own connection.

    Returns (seconds from the first request to the last answer, acknowledged instances,
    errors)."""
    groups = [list(bodies[k::clients]) for k in range(clients)]
    acked = [0] * clients
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)
    ends = [0.0] * clients

    def work(k: int) -> None:
        with client(port) as c:
            barrier.wait()
            for body, ctype, n in groups[k]:
                try:
                    r = c.post("/studies", content=body,
                               headers={"Content-Type": ctype, "Accept": "application/dicom+json"})
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                got = len(stow_acks(r))
                if r.status_code != 200 or got != n:
                    errors.append(f"HTTP {r.status_code}, {got} of {n} acknowledged: {r.text[:300]}")
                acked[k] += got
            ends[k] = time.perf_counter()

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return max(ends) - t0, sum(acked), errors


def count_series_instances(port: int, study: str, series: str) -> int:
    with client(port) as c:
        r = c.get(f"/studies/{study}/series/{series}/instances?includefield=00080018")
        if r.status_code == 204:
            return 0
        r.raise_for_status()
        return len(r.json())


def phase_stow(args: argparse.Namespace, ct: peers.CtSet, work: Path, prof: Profiler,
               errors: dict[str, str]) -> dict[str, Any]:
    datas = [f.read_bytes() for f in ct.files]
    bodies = stow_bodies(datas, args.per_request)
    series = ct.series[0]
    runs: list[dict[str, Any]] = []
    modes = (("single", 1), ("parallel", args.parallel))
    for r in range(args.stow_repeat):
        for mode, clients in modes:
            for target in args.targets:
                label = f"stow {target} {mode} #{r + 1}"
                run_dir = Path(tempfile.mkdtemp(prefix=f"stow-{target}-", dir=work))
                try:
                    with start(target, run_dir, args) as peer:
                        assert peer.http_port is not None
                        with prof.phase(f"stow-{mode}-{r + 1}", peer):
                            seconds, acked, errs = stow_send(peer.http_port, bodies, clients)
                        held = count_series_instances(peer.http_port, series.study_uid,
                                                      series.series_uid)
                    if errs or acked != ct.count or held != ct.count:
                        raise peers.PeerError(f"{label}: {acked} acknowledged, {held} found of "
                                              f"{ct.count}; {errs[:3]}")
                    row = {"target": target, "mode": mode, "clients": clients, "repeat": r + 1,
                           "seconds": seconds, "instances": ct.count,
                           "instances_per_s": ct.count / seconds,
                           "mb_per_s": ct.total_bytes / 1e6 / seconds}
                    runs.append(row)
                    print(f"  {label:<32} {seconds:6.2f} s {row['instances_per_s']:7.1f} inst/s "
                          f"{row['mb_per_s']:6.1f} MB/s", flush=True)
                except Exception as exc:
                    errors[label] = str(exc)
                    print(f"  {label}: FAILED {exc}", file=sys.stderr, flush=True)
                    with contextlib.suppress(Exception):
                        peers.keep_logs(run_dir, f"dicomweb-{run_dir.name}")
                finally:
                    shutil.rmtree(run_dir, ignore_errors=True)
                    wait_quiet()
    summary: dict[str, Any] = {}
    for target in args.targets:
        for mode, clients in modes:
            vals = [x["instances_per_s"] for x in runs if x["target"] == target and x["mode"] == mode]
            if vals:
                summary.setdefault(target, {})[mode] = {
                    "runs": len(vals), "clients": clients,
                    "median_instances_per_s": rnd(peers.median(vals), 1),
                    "min_instances_per_s": rnd(min(vals), 1), "max_instances_per_s": rnd(max(vals), 1),
                    "median_mb_per_s": rnd(peers.median(vals) * ct.total_bytes / ct.count / 1e6, 1)}
    ratios = {}
    for mode, _ in modes:
        o, v = summary.get("orthanc", {}).get(mode), summary.get("vesalius", {}).get(mode)
        if o and v:
            ratios[mode] = rnd(v["median_instances_per_s"] / o["median_instances_per_s"])
    return {"instances": ct.count, "bytes": ct.total_bytes, "per_request": args.per_request,
            "summary": summary, "ratios_vesalius_over_orthanc": ratios, "runs": runs}


# --------------------------------------------------------------------------------------------
# Loading the main servers


def load(peer: peers.RunningPeer, files: Sequence[Path], per_request: int, clients: int,
         what: str) -> dict[str, Any]:
    assert peer.http_port is not None
    datas = [f.read_bytes() for f in files]
    bodies = stow_bodies(datas, per_request)
    seconds, acked, errs = stow_send(peer.http_port, bodies, clients)
    if errs or acked != len(files):
        raise peers.PeerError(f"{peer.name}: loading {what}: {acked} of {len(files)} "
                              f"acknowledged; {errs[:3]}")
    rate = len(files) / seconds
    print(f"  {peer.name:<9} loaded {what}: {len(files)} instances in {seconds:.1f} s "
          f"({rate:.0f} inst/s, {clients} clients x {per_request} per request)", flush=True)
    return {"instances": len(files), "seconds": rnd(seconds), "instances_per_s": rnd(rate, 1),
            "clients": clients, "per_request": per_request}


# --------------------------------------------------------------------------------------------
# 2. QIDO-RS


def run_queries(ports: dict[str, int], queries: Sequence[Query], warmup: int
                ) -> dict[str, list[tuple[str, float, int, int]]]:
    """Each query to each server in turn (alternating); (kind, ms, matches, status) each."""
    out: dict[str, list[tuple[str, float, int, int]]] = {t: [] for t in ports}
    clients = {t: client(p) for t, p in ports.items()}
    try:
        warm = list(queries[: warmup * len(QIDO_KINDS)])
        for i, qq in enumerate([*warm, *queries]):
            order = list(ports) if i % 2 == 0 else list(reversed(ports))
            for t in order:
                c = clients[t]
                t0 = time.perf_counter()
                r = c.get("/studies?" + qq.qs, headers={"Accept": "application/dicom+json"})
                body = r.content
                ms = (time.perf_counter() - t0) * 1000.0
                n = len(json.loads(body)) if r.status_code == 200 and body else 0
                if i >= len(warm):
                    out[t].append((qq.kind, ms, n, r.status_code))
    finally:
        for c in clients.values():
            c.close()
    return out


def summarize_queries(samples: dict[str, list[tuple[str, float, int, int]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for t, rows in samples.items():
        for kind in QIDO_KINDS:
            mine = [r for r in rows if r[0] == kind]
            if not mine:
                continue
            s = latency_summary([r[1] for r in mine])
            s["matches_median"] = peers.median([r[2] for r in mine])
            s["matches_max"] = max(r[2] for r in mine)
            s["failed"] = sum(1 for r in mine if r[3] not in (200, 204))
            summary.setdefault(t, {})[kind] = s
    return summary


# --------------------------------------------------------------------------------------------
# 3. WADO-RS retrieve


def retrieve_stream(c: httpx.Client, path: str, accept: str = DICOM_MP) -> tuple[float, int, int, int]:
    """GET a multipart answer, streamed; (seconds, bytes, parts, status)."""
    t0 = time.perf_counter()
    n = 0
    count = 0
    with c.stream("GET", path, headers={"Accept": accept}) as r:
        if r.status_code != 200:
            r.read()
            return time.perf_counter() - t0, 0, 0, r.status_code
        delim = b"--" + boundary_of(r.headers.get("content-type", ""))
        tail = b""
        for chunk in r.iter_raw(1 << 20):
            n += len(chunk)
            buf = tail + chunk
            count += buf.count(delim)
            tail = buf[-(len(delim) - 1):]
    return time.perf_counter() - t0, n, max(0, count - 1), 200


class RawHttp:
    """A minimal HTTP/1.1 GET client on a plain socket (standard library only) for bulk
    answers: one persistent connection, the body received straight into a preallocated
    buffer, chunked framing walked by offsets without copying. httpx (h11, 64 KiB reads)
    tops out at ~350-550 MB/s on this machine, below what the servers deliver."""

    def __init__(self, port: int, capacity: int = 64 << 20) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.buf = bytearray(capacity)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _recv(self, n: int) -> int:
        """Receive more bytes after offset ``n``; grows the buffer; 0 at EOF."""
        assert self.sock is not None
        if len(self.buf) - n < (4 << 20):
            self.buf.extend(bytes(max(len(self.buf), 8 << 20)))
        return self.sock.recv_into(memoryview(self.buf)[n:], len(self.buf) - n)

    def get(self, path: str, accept: str) -> tuple[int, dict[str, str], memoryview,
                                                    list[tuple[int, int]] | None]:
        """(status, headers, raw body as received, spans of the chunk data in ``self.buf``
        for a chunked answer or None): de-chunking is left to the caller, after its clock."""
        for attempt in (0, 1):
            if self.sock is None:
                self.sock = socket.create_connection((peers.HOST, self.port))
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                return self._get(path, accept)
            except (ConnectionError, peers.PeerError):
                self.close()  # a keep-alive connection the server had closed: once more
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _get(self, path: str, accept: str) -> tuple[int, dict[str, str], memoryview,
                                                     list[tuple[int, int]] | None]:
        assert self.sock is not None
        self.sock.sendall(
            f"GET {ROOT}{path} HTTP/1.1\r\nHost: {peers.HOST}:{self.port}\r\nAccept: {accept}\r\n"
            "Accept-Encoding: identity\r\n\r\n".encode("latin-1"))
        n = 0
        while (end := self.buf.find(b"\r\n\r\n", 0, n)) < 0:
            k = self._recv(n)
            if not k:
                raise peers.PeerError("connection closed before the response headers")
            n += k
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
        start = end + 4
        spans: list[tuple[int, int]] | None = None
        if "content-length" in headers:
            stop = start + int(headers["content-length"])
            while n < stop:
                k = self._recv(n)
                if not k:
                    raise peers.PeerError("connection closed inside the body")
                n += k
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            pos = start  # offset of the next chunk-size line
            spans = []
            while True:
                line_end = self.buf.find(b"\r\n", pos, n)
                if line_end < 0:
                    k = self._recv(n)
                    if not k:
                        raise peers.PeerError("connection closed inside the chunked body")
                    n += k
                    continue
                size = int(bytes(self.buf[pos:line_end]).split(b";")[0], 16)
                nxt = line_end + 2 + size + 2
                if size == 0:
                    nxt = line_end + 4  # no trailers
                while n < nxt:
                    k = self._recv(n)
                    if not k:
                        raise peers.PeerError("connection closed inside a chunk")
                    n += k
                pos = nxt
                if size == 0:
                    break
                spans.append((line_end + 2, line_end + 2 + size))
            stop = pos
        else:  # delimited by the end of the connection
            while k := self._recv(n):
                n += k
            stop = n
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, memoryview(self.buf)[start:stop], spans


def retrieve_raw(c: RawHttp, path: str) -> tuple[float, int, int, int]:
    """:func:`retrieve_stream` with :class:`RawHttp`; parts are counted after the clock stops."""
    t0 = time.perf_counter()
    status, headers, body, spans = c.get(path, DICOM_MP)
    seconds = time.perf_counter() - t0
    if status != 200:
        return seconds, 0, 0, status
    delim = b"--" + boundary_of(headers.get("content-type", ""))
    data = bytes(body) if spans is None else b"".join(c.buf[a:b] for a, b in spans)
    del body
    return seconds, len(data), max(0, data.count(delim) - 1), status


RETRIEVE_CLIENTS = ("raw", "httpx")


def phase_retrieve(peers_: dict[str, peers.RunningPeer], ct: peers.CtSet, args: argparse.Namespace,
                   prof: Profiler, errors: dict[str, str]) -> dict[str, Any]:
    """Series retrieve with both clients, servers alternating; MB/s of the series' files."""
    s = ct.series[0]
    path = f"/studies/{s.study_uid}/series/{s.series_uid}"
    runs: list[dict[str, Any]] = []
    httpx_clients = {t: client(p.http_port or 0) for t, p in peers_.items()}
    raw_clients = {t: RawHttp(p.http_port or 0, ct.total_bytes + (16 << 20))
                   for t, p in peers_.items()}
    try:
        with contextlib.ExitStack() as stack:
            for p in peers_.values():
                stack.enter_context(prof.phase("wado-retrieve", p))
            for r in range(1 + args.retrieve_repeat):
                for t in (list(peers_) if r % 2 == 0 else list(reversed(peers_))):
                    for how in RETRIEVE_CLIENTS:
                        if how == "raw":
                            seconds, nbytes, parts, status = retrieve_raw(raw_clients[t], path)
                        else:
                            seconds, nbytes, parts, status = retrieve_stream(httpx_clients[t], path)
                        if status != 200 or parts != ct.count:
                            errors[f"retrieve {t} {how}"] = f"HTTP {status}, {parts} of {ct.count} parts"
                            continue
                        row = {"target": t, "client": how, "warmup": r == 0, "seconds": seconds,
                               "bytes_received": nbytes, "parts": parts,
                               "mb_per_s": ct.total_bytes / 1e6 / seconds,
                               "instances_per_s": parts / seconds}
                        print(f"  retrieve {t:<9} {how:<6} {'warm-up' if r == 0 else f'#{r}':<8} "
                              f"{seconds:6.3f} s {row['mb_per_s']:7.1f} MB/s", flush=True)
                        if r > 0:
                            runs.append(row)
    finally:
        for c in httpx_clients.values():
            c.close()
        for rc in raw_clients.values():
            rc.close()
    summary: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    for how in RETRIEVE_CLIENTS:
        for t in peers_:
            mine = [x for x in runs if x["target"] == t and x["client"] == how]
            vals = [x["mb_per_s"] for x in mine]
            if vals:
                summary.setdefault(t, {})[how] = {
                    "runs": len(vals), "median_mb_per_s": rnd(peers.median(vals), 1),
                    "min_mb_per_s": rnd(min(vals), 1), "max_mb_per_s": rnd(max(vals), 1),
                    "median_instances_per_s": rnd(peers.median(
                        [x["instances_per_s"] for x in mine]), 1)}
        o, v = _get(summary, "orthanc", how), _get(summary, "vesalius", how)
        if o and v:
            ratios[how] = rnd(v["median_mb_per_s"] / o["median_mb_per_s"])
    return {"instances": ct.count, "file_bytes": ct.total_bytes, "accept": DICOM_MP,
            "mb": "10^6 bytes of the series' files per second, request sent to last byte",
            "clients": {"raw": "stdlib socket, persistent connection, recv_into a preallocated "
                               "buffer (headline)",
                        "httpx": "httpx stream, iter_raw(1 MiB)"},
            "summary": summary, "ratios_vesalius_over_orthanc": ratios, "runs": runs}


# --------------------------------------------------------------------------------------------
# 4-5. Metadata, rendered, frames


def timed_get(c: httpx.Client, path: str, accept: str) -> tuple[float, int, bytes, str]:
    t0 = time.perf_counter()
    r = c.get(path, headers={"Accept": accept})
    body = r.content
    return (time.perf_counter() - t0) * 1000.0, r.status_code, body, r.headers.get("content-type", "")


def phase_metadata(peers_: dict[str, peers.RunningPeer], ct: peers.CtSet, args: argparse.Namespace,
                   prof: Profiler, errors: dict[str, str]) -> dict[str, Any]:
    s = ct.series[0]
    path = f"/studies/{s.study_uid}/series/{s.series_uid}/metadata"
    out: dict[str, Any] = {"instances": ct.count, "summary": {}}
    for t, peer in peers_.items():
        with client(peer.http_port or 0) as c, prof.phase("metadata", peer):
            first, status, body, _ = timed_get(c, path, "application/dicom+json")
            n = len(json.loads(body)) if status == 200 else 0
            warm = []
            for _ in range(args.metadata_repeat):
                ms, st2, body2, _ = timed_get(c, path, "application/dicom+json")
                if st2 == 200:
                    warm.append(ms)
        if status != 200 or n != ct.count:
            errors[f"metadata {t}"] = f"HTTP {status}, {n} of {ct.count} instances"
        out["summary"][t] = {"first_ms": rnd(first), "warm": latency_summary(warm),
                             "bytes": len(body), "instances": n}
        print(f"  metadata {t:<9} first {first:8.1f} ms, warm p50 "
              f"{percentile(warm, 50):8.1f} ms ({len(body) / 1e6:.1f} MB, {n} instances)", flush=True)
    return out


def instance_sops(port: int, study: str, series: str) -> list[str]:
    with client(port) as c:
        r = c.get(f"/studies/{study}/series/{series}/instances?includefield=00200013")
        r.raise_for_status()
        rows = r.json()
    def num(x: dict[str, Any]) -> int:
        v = (x.get("00200013") or {}).get("Value") or [0]
        return int(v[0])
    return [x["00080018"]["Value"][0] for x in sorted(rows, key=num)]


def phase_rendered(peers_: dict[str, peers.RunningPeer], ct: peers.CtSet, args: argparse.Namespace,
                   prof: Profiler, errors: dict[str, str]) -> dict[str, Any]:
    s = ct.series[0]
    first_peer = next(iter(peers_.values()))
    sops = instance_sops(first_peer.http_port or 0, s.study_uid, s.series_uid)
    step = len(sops) // args.rendered
    render_set = [sops[i * step] for i in range(args.rendered)]
    frame_set = [sops[i * step + step // 2] for i in range(args.rendered)]
    base = f"/studies/{s.study_uid}/series/{s.series_uid}/instances/"
    samples: dict[str, dict[str, list[float]]] = {t: defaultdict(list) for t in peers_}
    sizes: dict[str, list[int]] = {t: [] for t in peers_}
    clients = {t: client(p.http_port or 0) for t, p in peers_.items()}
    try:
        with contextlib.ExitStack() as stack:
            for p in peers_.values():
                stack.enter_context(prof.phase("rendered-frames", p))
            for kind, sop_list, suffix, accept in (
                ("rendered_first", render_set, "/rendered", "image/jpeg"),
                ("rendered_repeat", render_set, "/rendered", "image/jpeg"),
                ("frames", frame_set, "/frames/1", FRAMES_MP),
            ):
                for i, sop in enumerate(sop_list):
                    for t in (list(peers_) if i % 2 == 0 else list(reversed(peers_))):
                        ms, status, body, ctype = timed_get(clients[t], base + sop + suffix, accept)
                        if status != 200 or not body:
                            errors[f"{kind} {t}"] = f"HTTP {status} for {sop}"
                            continue
                        if kind == "rendered_first":
                            if not body.startswith(b"\xff\xd8"):
                                errors[f"{kind} {t}"] = f"not a JPEG ({ctype})"
                            sizes[t].append(len(body))
                        samples[t][kind].append(ms)
    finally:
        for c in clients.values():
            c.close()
    summary: dict[str, dict[str, Any]] = {t: {k: latency_summary(v) for k, v in d.items()}
                                          for t, d in samples.items()}
    for t in summary:
        summary[t]["jpeg_bytes_median"] = peers.median(sizes[t]) if sizes[t] else None
    for t, d in summary.items():
        print(f"  rendered {t:<9} first p50 {d['rendered_first']['p50_ms']} ms, cached repeat p50 "
              f"{d['rendered_repeat']['p50_ms']} ms, frames/1 p50 {d['frames']['p50_ms']} ms",
              flush=True)
    return {"instances": len(render_set), "summary": summary}


# --------------------------------------------------------------------------------------------
# 6. Mixed load


class MixTemplate:
    """A stored CT instance whose UIDs are swapped for new ones of the same length, so every
    STOW in the mix sends a new, valid instance (phantom pixels, not zeros) at no cost."""

    def __init__(self, path: Path, series: peers.SeriesRef) -> None:
        from pydicom import dcmread

        self.data = path.read_bytes()
        ds = dcmread(path, stop_before_pixels=True)
        self.sop = str(ds.SOPInstanceUID).encode()
        self.study = series.study_uid.encode()
        self.series = series.series_uid.encode()
        for u in (self.sop, self.study, self.series):
            if self.data.count(u) < 1:
                raise peers.PeerError("template UID not found in the file")

    @staticmethod
    def like(uid: bytes, rng: random.Random) -> bytes:
        digits = len(uid) - len(b"2.25.")
        return b"2.25." + str(rng.randrange(10 ** (digits - 1), 10 ** digits)).encode()

    def make(self, study: bytes, series: bytes, rng: random.Random) -> tuple[bytes, str]:
        sop = self.like(self.sop, rng)
        data = self.data.replace(self.sop, sop).replace(self.study, study).replace(self.series, series)
        return data, sop.decode()


@dataclass
class MixOp:
    name: str
    ms: float
    status: int
    error: str = ""


def phase_mix(peer: peers.RunningPeer, corpus: Corpus, queries: Sequence[Query],
              meta_ct: peers.CtSet, meta_sops: Sequence[str], template: MixTemplate,
              args: argparse.Namespace, prof: Profiler) -> dict[str, Any]:
    port = peer.http_port or 0
    image_series = [(st.uid, se) for st in corpus.studies for se in st.series if se.modality != "SR"
                    and len(se.sops) <= 50]
    all_series = [(st.uid, se) for st in corpus.studies for se in st.series]
    ms_ = meta_ct.series[0]
    weights = {"qido": 30, "metadata": 15, "frames": 20, "retrieve": 10, "rendered": 5, "stow": 20}
    names = list(weights)
    wvals = [weights[n] for n in names]
    ops: list[list[MixOp]] = [[] for _ in range(args.mix_clients)]
    acked: list[dict[str, tuple[str, str, str]]] = [{} for _ in range(args.mix_clients)]
    sent_not_acked = [0] * args.mix_clients
    deadline = [0.0]
    barrier = threading.Barrier(args.mix_clients + 1)

    def work(k: int) -> None:
        rng = random.Random(args.seed * 1000 + k)
        study = MixTemplate.like(template.study, rng)
        series = MixTemplate.like(template.series, rng)
        with client(port, timeout=300) as c:
            barrier.wait()
            while time.perf_counter() < deadline[0]:
                op = rng.choices(names, wvals)[0]
                t0 = time.perf_counter()
                status = 0
                err = ""
                try:
                    if op == "qido":
                        r = c.get("/studies?" + rng.choice(queries).qs)
                        status = r.status_code
                    elif op == "metadata":
                        st, se = rng.choice(all_series)
                        r = c.get(f"/studies/{st}/series/{se.uid}/metadata")
                        status = r.status_code
                    elif op == "frames":
                        if rng.random() < 0.5:
                            st, se_uid, sop = ms_.study_uid, ms_.series_uid, rng.choice(meta_sops)
                        else:
                            st, s2 = rng.choice(image_series)
                            se_uid, sop = s2.uid, rng.choice(s2.sops)
                        r = c.get(f"/studies/{st}/series/{se_uid}/instances/{sop}/frames/1",
                                  headers={"Accept": FRAMES_MP})
                        status = r.status_code
                    elif op == "rendered":
                        sop = rng.choice(meta_sops)
                        r = c.get(f"/studies/{ms_.study_uid}/series/{ms_.series_uid}/instances/"
                                  f"{sop}/rendered", headers={"Accept": "image/jpeg"})
                        status = r.status_code
                    elif op == "retrieve":
                        st, se = rng.choice(image_series)
                        r = c.get(f"/studies/{st}/series/{se.uid}", headers={"Accept": DICOM_MP})
                        status = r.status_code
                        if status == 200 and len(split_multipart(
                                r.content, r.headers.get("content-type", ""))) != len(se.sops):
                            err = "retrieve: wrong number of parts"
                    else:
                        made = [template.make(study, series, rng) for _ in range(rng.randint(1, 3))]
                        body, ctype = multipart_body([d for d, _ in made])
                        r = c.post("/studies", content=body, headers={
                            "Content-Type": ctype, "Accept": "application/dicom+json"})
                        status = r.status_code
                        ok = set(stow_acks(r)) if status in (200, 202) else set()
                        for d, sop in made:
                            if sop in ok:
                                acked[k][sop] = (study.decode(), series.decode(),
                                                 hashlib.sha256(d).hexdigest())
                            else:
                                sent_not_acked[k] += 1
                except Exception as exc:  # noqa: BLE001 - every failure is counted
                    err = f"{type(exc).__name__}: {str(exc)[:200]}"
                ms = (time.perf_counter() - t0) * 1000.0
                if not err and not 200 <= status < 300:
                    err = f"HTTP {status}"
                ops[k].append(MixOp(op, ms, status, err))

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(args.mix_clients)]
    for t in threads:
        t.start()
    with prof.phase("mix", peer):
        deadline[0] = time.perf_counter() + args.mix_seconds
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
    flat = [o for lst in ops for o in lst]
    per_op: dict[str, Any] = {}
    for n in names:
        mine = [o for o in flat if o.name == n]
        s = latency_summary([o.ms for o in mine])
        s["errors"] = sum(1 for o in mine if o.error)
        per_op[n] = s
    error_kinds = Counter(f"{o.name}: {o.error[:120]}" for o in flat if o.error)
    # Nothing lost: every acknowledged instance comes back, byte for byte.
    everything = {sop: v for d in acked for sop, v in d.items()}
    missing: list[str] = []
    different: list[str] = []
    lock = threading.Lock()
    items = sorted(everything.items())

    def verify(chunk: Sequence[tuple[str, tuple[str, str, str]]]) -> None:
        with client(port) as c:
            for sop, (st, se, sha) in chunk:
                try:
                    r = c.get(f"/studies/{st}/series/{se}/instances/{sop}", headers={"Accept": DICOM_MP})
                    parts = split_multipart(r.content, r.headers.get("content-type", "")) \
                        if r.status_code == 200 else []
                except httpx.HTTPError:
                    parts = []
                with lock:
                    if len(parts) != 1:
                        missing.append(sop)
                    elif hashlib.sha256(parts[0]).hexdigest() != sha:
                        different.append(sop)

    vt = [threading.Thread(target=verify, args=(items[k::4],)) for k in range(4)]
    for t in vt:
        t.start()
    for t in vt:
        t.join()
    total_errors = sum(1 for o in flat if o.error)
    result = {
        "clients": args.mix_clients, "seconds": rnd(elapsed), "requests": len(flat),
        "requests_per_s": rnd(len(flat) / elapsed, 1), "errors": total_errors,
        "error_kinds": dict(error_kinds.most_common(10)), "per_op": per_op,
        "stow_acknowledged": len(everything), "stow_not_acknowledged": sum(sent_not_acked),
        "verify_missing": len(missing), "verify_bytes_differ": len(different),
        "missing_examples": missing[:5], "differ_examples": different[:5],
    }
    print(f"  mix {peer.name:<9} {len(flat)} requests in {elapsed:.0f} s "
          f"({len(flat) / elapsed:.0f}/s), {total_errors} errors; STOW acknowledged "
          f"{len(everything)}, missing afterwards {len(missing)}, bytes differ {len(different)}",
          flush=True)
    for k, v in error_kinds.most_common(5):
        print(f"      {v} x {k}", flush=True)
    return result


# --------------------------------------------------------------------------------------------
# Main


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    errors: dict[str, str] = {}
    result: dict[str, Any] = {"benchmark": "dicomweb",
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                              "git": git_state()}
    ct = peers.cached_ct(args.instances, 1, per_series=args.instances)
    meta_ct = peers.cached_ct(args.metadata_count, 2, per_series=args.metadata_count)
    corpus = qido_corpus(args.qido_instances, args.seed)
    peers.warm_page_cache([*ct.files, *meta_ct.files, *corpus.files])
    wait_quiet()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dicomweb-", dir=args.work_dir))
    prof = Profiler(args.profile, peers.BENCH_OUT / "profile")
    print(f"data: STOW/WADO {ct.count} CT ({ct.total_bytes / 1e6:.0f} MB), metadata/rendered "
          f"{meta_ct.count} CT ({meta_ct.total_bytes / 1e6:.0f} MB), QIDO archive "
          f"{len(corpus.files)} instances in {len(corpus.studies)} studies; targets "
          f"{', '.join(args.targets)}", flush=True)
    ok = False
    try:
        ph = args.phases
        if "stow" in ph:
            print("\n1. STOW-RS ingest (fresh server per run)", flush=True)
            result["stow"] = phase_stow(args, ct, work, prof, errors)

        reads = ph & {"metadata", "rendered", "qido", "retrieve", "mix"}
        if reads:
            print("\n   starting both servers for the read phases and loading them", flush=True)
        with contextlib.ExitStack() as stack:
            running: dict[str, peers.RunningPeer] = {}
            loads: dict[str, Any] = {}
            for target in args.targets if reads else ():
                try:
                    peer = stack.enter_context(start(target, work / f"main-{target}", args))
                    loads[target] = {}
                    if reads & {"metadata", "rendered", "mix"}:
                        loads[target]["metadata_series"] = load(
                            peer, meta_ct.files, args.per_request, args.parallel,
                            f"{meta_ct.count}-instance CT series")
                    if reads & {"retrieve", "mix"}:
                        loads[target]["retrieve_series"] = load(
                            peer, ct.files, args.per_request, args.parallel,
                            f"{ct.count}-instance CT series")
                    if reads & {"qido", "mix"}:
                        loads[target]["qido_archive"] = load(peer, corpus.files, 50, args.parallel,
                                                             "QIDO archive")
                    running[target] = peer
                except Exception as exc:
                    errors[f"start/load {target}"] = str(exc)
                    traceback.print_exc()
            if loads:
                result["load"] = loads
            wait_quiet()
            queries = corpus_queries(corpus, args.queries, args.seed)
            if running:
                if "metadata" in ph:
                    print("\n4. series metadata", flush=True)
                    result["metadata"] = phase_metadata(running, meta_ct, args, prof, errors)
                if "rendered" in ph:
                    print("\n5. rendered and frames", flush=True)
                    result["rendered"] = phase_rendered(running, meta_ct, args, prof, errors)
                if "qido" in ph:
                    print("\n2. QIDO-RS study search", flush=True)
                    ports = {t: p.http_port or 0 for t, p in running.items()}
                    vpeer = running.get("vesalius")
                    ctx = prof.phase("qido", vpeer) if vpeer else contextlib.nullcontext()
                    with ctx:
                        samples = run_queries(ports, queries, warmup=3)
                    qsum = summarize_queries(samples)
                    result["qido"] = {"archive_instances": len(corpus.files),
                                      "archive_studies": len(corpus.studies),
                                      "queries_per_kind": args.queries, "summary": qsum,
                                      "examples": {k: next(x.qs for x in queries if x.kind == k)
                                                   for k in QIDO_KINDS}}
                    print_qido(qsum)
                if "retrieve" in ph:
                    print("\n3. WADO-RS series retrieve", flush=True)
                    result["retrieve"] = phase_retrieve(running, ct, args, prof, errors)
                if args.mix_targets:
                    print(f"\n6. mixed load: {args.mix_clients} clients for {args.mix_seconds:g} s",
                          flush=True)
                    template = MixTemplate(ct.files[0], ct.series[0])
                    ms_ = meta_ct.series[0]
                    meta_sops = instance_sops(next(iter(running.values())).http_port or 0,
                                              ms_.study_uid, ms_.series_uid)
                    result["mix"] = {}
                    for t in args.mix_targets:
                        if t in running:
                            try:
                                m = phase_mix(running[t], corpus, queries, meta_ct, meta_sops,
                                              template, args, prof)
                                result["mix"][t] = m
                                if m["verify_missing"]:
                                    errors[f"mix {t}"] = (f"{m['verify_missing']} acknowledged "
                                                          "instances not retrievable")
                            except Exception as exc:
                                errors[f"mix {t}"] = str(exc)
                                traceback.print_exc()
        if args.big_count and "vesalius" in args.targets:
            print(f"\n2b. QIDO-RS on Vesalius alone, index of {args.big_count:,} instances",
                  flush=True)
            try:
                result["qido_big"] = phase_big(args, work, prof)
            except Exception as exc:
                errors["qido big"] = str(exc)
                traceback.print_exc()
        ok = not errors
    finally:
        if not ok:
            for sub in [work, *sorted(p for p in work.glob("*") if p.is_dir())]:
                if any(sub.glob("*.log")):
                    peers.keep_logs(sub, f"{work.name}-{sub.name}")
        shutil.rmtree(work, ignore_errors=True)

    result["duration_s"] = round(time.time() - started, 1)
    result["host"] = peers.host_info()
    result["params"] = {k: (str(v) if isinstance(v, Path) else sorted(v) if isinstance(v, set) else v)
                        for k, v in vars(args).items()}
    result["params"]["client"] = (f"httpx {httpx.__version__}, one persistent connection per "
                                  "client thread, Accept-Encoding: identity")
    result["targets"] = target_table(result)
    if prof.summaries:
        result["profile"] = prof.summaries
    result["errors"] = errors
    print_summary(result)
    if args.quick:
        print("(--quick: a smoke run; at these sizes Orthanc's 128 MB storage cache holds every "
              "file and fixed costs dominate: quote only full runs)")
    for k, v in errors.items():
        print(f"ERROR {k}: {v.splitlines()[0] if v else ''}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 1 if errors else 0


def git_state() -> dict[str, Any]:
    """The commit the measured server ran from, and whether vesalius/ had local changes."""
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=peers.REPO_ROOT, capture_output=True,
                                  text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD"),
            "vesalius_changed": bool(git("status", "--porcelain", "--", "vesalius"))}


def phase_big(args: argparse.Namespace, work: Path, prof: Profiler) -> dict[str, Any]:
    url, queries = big_queries(args.big_count, args.seed, args.queries)
    with start("vesalius", work / "big", args, db=url) as peer, prof.phase("qido-big", peer):
        samples = run_queries({"vesalius": peer.http_port or 0}, queries, warmup=3)
    s = summarize_queries(samples)
    print_qido(s)
    return {"index": url, "instances": args.big_count, "queries_per_kind": args.queries,
            "summary": s.get("vesalius", {}),
            "examples": {k: next(x.qs for x in queries if x.kind == k) for k in QIDO_KINDS}}


# --------------------------------------------------------------------------------------------
# Report


def print_qido(summary: dict[str, Any]) -> None:
    print(f"  {'server':<9} {'query':<12} {'p50 ms':>8} {'p90 ms':>8} {'matches':>8}")
    for t, kinds in summary.items():
        for k, s in kinds.items():
            print(f"  {t:<9} {k:<12} {s['p50_ms']:>8} {s['p90_ms']:>8} {s['matches_median']:>8}"
                  f"{'  FAILED ' + str(s['failed']) if s['failed'] else ''}")


def _get(d: dict[str, Any] | None, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def target_table(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure: ours, Orthanc's, the ratio and whether the issue's target is met."""
    rows: list[dict[str, Any]] = []

    def row(figure: str, target: str, ours: Any, theirs: Any, ratio: Any, met: bool | None,
            unit: str) -> None:
        rows.append({"figure": figure, "target": target, "vesalius": ours, "orthanc": theirs,
                     "ratio": ratio, "unit": unit, "met": met})

    stow = _get(r, "stow", "summary") or {}
    for mode in ("single", "parallel") if stow else ():
        v = _get(stow, "vesalius", mode, "median_instances_per_s")
        o = _get(stow, "orthanc", mode, "median_instances_per_s")
        ratio = rnd(v / o) if v and o else None
        n = _get(stow, "vesalius", mode, "clients") or _get(stow, "orthanc", mode, "clients")
        row(f"STOW-RS ingest, {n} client{'s' if n != 1 else ''}", f">= {TARGET_STOW_RATIO}x Orthanc",
            v, o, ratio, None if ratio is None else ratio >= TARGET_STOW_RATIO, "inst/s")
    qs = _get(r, "qido", "summary") or {}
    for kind in QIDO_KINDS if qs else ():
        v = _get(qs, "vesalius", kind, "p50_ms")
        o = _get(qs, "orthanc", kind, "p50_ms")
        ratio = rnd(v / o) if v and o else None
        row(f"QIDO /studies {kind} p50 ({_get(r, 'qido', 'archive_instances'):,} instances)",
            f"<= {TARGET_QIDO_RATIO}x Orthanc", v, o, ratio,
            None if ratio is None else ratio <= TARGET_QIDO_RATIO, "ms")
    big = _get(r, "qido_big", "summary") or {}
    for kind in QIDO_KINDS:
        v = _get(big, kind, "p50_ms")
        o = _get(qs, "orthanc", kind, "p50_ms")
        if v is None:
            continue
        ratio = rnd(v / o) if v and o else None
        row(f"QIDO {kind} p50, ours at {_get(r, 'qido_big', 'instances'):,} vs Orthanc at "
            f"{_get(r, 'qido', 'archive_instances') or 0:,}", f"<= {TARGET_QIDO_RATIO}x Orthanc",
            v, o, ratio, None if ratio is None else ratio <= TARGET_QIDO_RATIO, "ms")
    ret = _get(r, "retrieve", "summary") or {}
    for how in RETRIEVE_CLIENTS if ret else ():
        v, o = _get(ret, "vesalius", how, "median_mb_per_s"), _get(ret, "orthanc", how, "median_mb_per_s")
        ratio = rnd(v / o) if v and o else None
        row(f"WADO-RS retrieve, {_get(r, 'retrieve', 'instances')}-instance series ({how} client)",
            f">= {TARGET_RETRIEVE_RATIO}x Orthanc" if how == "raw" else "-", v, o, ratio,
            (None if ratio is None else ratio >= TARGET_RETRIEVE_RATIO) if how == "raw" else None,
            "MB/s")
    md = _get(r, "metadata", "summary") or {}
    n = _get(r, "metadata", "instances")
    for label, key in (("first call", ("first_ms",)), ("warm p50", ("warm", "p50_ms"))) if md else ():
        v, o = _get(md, "vesalius", *key), _get(md, "orthanc", *key)
        row(f"series metadata, {n} instances, {label}", f"< {TARGET_METADATA_MS:g} ms", v, o,
            rnd(v / o) if v and o else None, None if v is None else v < TARGET_METADATA_MS, "ms")
    rd = _get(r, "rendered", "summary") or {}
    for label, kind, tgt in (("rendered JPEG, first render p50", "rendered_first", True),
                             ("rendered JPEG, repeat p50", "rendered_repeat", False),
                             ("frames/1 p50", "frames", False)) if rd else ():
        v, o = _get(rd, "vesalius", kind, "p50_ms"), _get(rd, "orthanc", kind, "p50_ms")
        ratio = rnd(v / o) if v and o else None
        row(label, "<= Orthanc" if tgt else "-", v, o, ratio,
            (None if ratio is None else ratio <= TARGET_RENDERED_RATIO) if tgt else None, "ms")
    for t, m in (_get(r, "mix") or {}).items():
        row(f"mix, {m['clients']} clients {m['seconds']:.0f} s ({t}): errors / lost",
            "0 / 0", m["errors"] if t == "vesalius" else None,
            m["errors"] if t == "orthanc" else None, None,
            (m["errors"] == 0 and m["verify_missing"] == 0) if t == "vesalius" else None,
            f"of {m['requests']} requests; {m['stow_acknowledged']} STOWed, "
            f"{m['verify_missing']} lost")
    return rows


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"
    return str(x)


def print_summary(r: dict[str, Any]) -> None:
    rows = r.get("targets", [])
    print("\nDICOMweb, Vesalius vs Orthanc 1.10 + DICOMweb 1.7 (medians; ratio = ours/Orthanc)")
    print(f"{'figure':<62} {'unit':<7} {'Vesalius':>9} {'Orthanc':>9} {'ratio':>6}  "
          f"{'target':<18} status")
    for x in rows:
        status = {True: "met", False: "MISSED", None: "-"}[x["met"]]
        unit = x["unit"] if len(x["unit"]) <= 7 else ""
        print(f"{x['figure'][:62]:<62} {unit:<7} {_fmt(x['vesalius']):>9} {_fmt(x['orthanc']):>9} "
              f"{_fmt(x['ratio']):>6}  {x['target']:<18} {status}")
        if len(x["unit"]) > 7:
            print(f"{'':<4}{x['unit']}")


if __name__ == "__main__":
    raise SystemExit(main())

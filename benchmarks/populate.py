"""Fill a Vesalius index directly with a large, realistic, seeded archive (no stored objects).

    PYTHONPATH=. python benchmarks/populate.py [--count 1000000] [--seed 0] [--db URL] [--force]

The schema is created by Alembic through :func:`vesalius.index.db.open_index`; rows go in with
SQLAlchemy Core ``executemany`` batches (SQLite) or ``COPY`` through psycopg (PostgreSQL), in
transactions of about 10k instances. Shape for N instances (defaults at 1M):

- ``N / 50`` patients (20k): 8-digit MRNs, European names (about 15 % with non-ASCII
  letters), Zipf-like surname frequencies, birth dates 1930-2020;
- about ``N / 20`` studies (50k): dates over ten years (2015-2024, fewer at weekends), mostly
  indexed in date order (10 % arrive late, like migrated priors), accession numbers, study IDs,
  descriptions, referring physicians; each patient has one study or more;
- 1-5 series per study and 1-200 instances per series by modality (CR, DX, US, CT, MR, SR;
  CT and US studies often carry a dose / measurement SR); about 1.5 % of CT studies hold a thin
  slice series of 300-600 instances;
- per-level counters as the writer keeps them: ``num_studies``, ``num_series``,
  ``num_instances``, ``size_bytes``, ``modalities`` (``\\CT\\SR\\``), ``sop_classes``;
- per instance a compressed header (one realistic template per modality, encoded with
  :func:`vesalius.dicom.record.encode_header`) and a random 64-hex blob key.

Same count and seed, same rows. A finished index is recorded in ``bench-out/populate/`` and
reused: SQLite files default to ``bench-out/populate/index-n<N>-seed<S>.sqlite``; for
PostgreSQL give a URL whose ``search_path`` names a schema (created if missing), e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dbench1m``.
Rows added later (by a benchmark's ingest) are removed by :func:`reset` before reuse.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import random
import sys
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `vesalius` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Table, delete, func, insert, select, text
from sqlalchemy.engine import Connection, Engine

from vesalius.index.db import open_index
from vesalius.index.models import conflicts, instances, patients, series, studies

VERSION = 2
REPO_ROOT = Path(__file__).resolve().parent.parent
POPULATE_DIR = REPO_ROOT / "bench-out" / "populate"
UID_ROOT = "1.2.826.0.1.3680043.8.498"  # pydicom's root, for example data
BATCH = 10_000  # rows per executemany / per transaction (instances)
FIRST_DAY = date(2015, 1, 1)
DAYS = (date(2024, 12, 31) - FIRST_DAY).days + 1

# --------------------------------------------------------------------------------------------
# Names

def _words(s: str) -> list[str]:
    """Names separated by blanks; ``_`` stands for a blank inside one name."""
    return [w.replace("_", " ") for w in s.split()]


_REAL_SURNAMES = _words(
    "Smith Smithson Jones Williams Brown Taylor Wilson Johnson Davies Robinson Wright Thompson "
    "Evans Walker White Roberts Green Hall Wood Jackson Clarke Murphy Kelly O'Brien O'Connor "
    "MacDonald McCarthy Walsh Byrne Ryan Müller Schmidt Schneider Fischer Weber Meyer Wagner "
    "Becker Schulz Hoffmann Schäfer Koch Bauer Richter Klein Wolf Schröder Neumann Schwarz "
    "Zimmermann Braun Krüger Hofmann Hartmann Lange Köhler Weiß Jäger Günther Vogel Rossi Russo "
    "Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo Conti De_Luca "
    "Mancini Costa Giordano Rizzo Lombardi Moretti García Fernández González Rodríguez López "
    "Martínez Sánchez Pérez Gómez Martín Jiménez Ruiz Hernández Díaz Moreno Muñoz Álvarez "
    "Romero Alonso Gutiérrez Navarro Torres Domínguez Vázquez Núñez Peña Ibáñez Silva Santos "
    "Ferreira Pereira Oliveira Rodrigues Gonçalves Simões Magalhães Conceição Martin Bernard "
    "Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent Lefèvre Michel "
    "Garnier Faure Rousseau Blanc Guérin Müller-Lüdenscheidt Dupré Lemaître Gauthier Girard "
    "Janssen De_Jong De_Vries Van_den_Berg Van_Dijk Bakker Visser Smit Meijer Mulder Peeters "
    "Jensen Nielsen Hansen Pedersen Andersen Christensen Larsen Sørensen Rasmussen Jørgensen "
    "Østergaard Søndergaard Johansson Andersson Karlsson Nilsson Eriksson Larsson Olsson "
    "Persson Svensson Gustafsson Lindqvist Nyström Åberg Öberg Björk Ångström Korhonen "
    "Virtanen Mäkinen Nieminen Hämäläinen Nowak Kowalski Wiśniewski Wójcik Kowalczyk "
    "Kamiński Lewandowski Zieliński Szymański Woźniak Łukasiewicz Dvořák Novák Svoboda Černý "
    "Procházka Kučera Veselý Horváth Kovács Szabó Tóth Varga Nagy Kiss Molnár Papadopoulos "
    "Papadakis Georgiou Öztürk Yılmaz Şahin Çelik Kaya Doğan Jovanović Petrović Đorđević "
    "Nikolić Popescu Ionescu Popa Ivanov Petrov Smirnov Kuznetsov Popov Sokolov Novikov "
    "Kovalenko Bondarenko Shevchenko Tkachenko Horvat Kovačević Babić"
)

_ROOTS_SUFFIXES: tuple[tuple[str, str], ...] = (
    (
        "Bar Bell Ben Cal Cap Car Cas Cor Fal For Gal Gar Lan Lor Mar Mas Mor Pag Pel Pes Ran "
        "Sal San Ser Tar Tor Val Ven Vit Zan",
        "ini elli etti one ari ucci esi otti",
    ),
    (
        "Bog Dob Gor Jab Kar Kos Kraw Lis Mal Mich Mil Nov Pav Piot Rad Sok Stan Tom Vas Vol "
        "Wol Zaj Zar Bor Dub Gol Kol Pop Ros Sed",
        "ov ova ski ska ovic enko czyk ak",
    ),
    (
        "Ahl Berg Dahl Ek Fors Hag Hed Holm Lind Ljung Lund Nord Sand Sjö Wall Wester Eng "
        "Fager Hell Kull Lil Nyl Rosen Tall Alm Bjur Fal Gran Hult Sten",
        "sson sen berg strom lund gren qvist dahl",
    ),
    (
        "Alt Bach Brandt Eck Eich Engel Frank Fried Grün Hahn Heil Horn Kirch Kraus Lind "
        "Lorenz Ober Reich Roth Sauer Schön Stein Sund Vogt Wald Weis Wend Wink Zell Mohr",
        "mann er hoff bauer meier stein feld haus",
    ),
    (
        "Alv Bel Cab Cal Del Esc Est Fig Gal Gil Ib Lar Lem Mad Mal Mend Mir Mol Nav Pin Quint "
        "Rib Sal Sanch Sol Tej Val Vel Vill Zam",
        "ez es ado eira illa ano oso ero",
    ),
)

_GIVEN_F = _words(
    "Anna Maria Sofia Emma Olivia Mia Laura Julia Clara Sarah Elena Giulia Chiara Francesca "
    "Lucía María José Carmen Inês Beatriz Mariana Hélène Chloé Zoë Camille Léa Manon Élise "
    "Ingrid Åsa Karin Sigrid Maja Freja Ida Anneliese Jürgens Ágnes Zsófia Katalin Eszter "
    "Małgorzata Agnieszka Łucja Zuzanna Kateřina Tereza Milica Jelena Ayşe Elif Zeynep "
    "Siobhán Aoife Niamh Mary Linda Susan Margaret Helen Claire Ruth Alice Grace Eva"
)
_GIVEN_M = _words(
    "Hans Jürgen Jörg Klaus Stefan Thomas Peter Michael Paul David John James Robert William "
    "Noah Liam Lucas Luca Marco Lorenzo Giovanni Francesco Antonio José Juan Carlos Javier "
    "Álvaro Joaquín João Gonçalo Tiago François Jérôme Théo Étienne René Søren Bjørn Lars "
    "Mikael Åke Olof Jussi Väinö Piotr Paweł Łukasz Wojciech Jiří Tomáš Zoltán László Gábor "
    "Dragan Miloš Đorđe Mehmet Ahmet Çağrı Seán Pádraig Ciarán Ivan Dmitri Andrei Ion"
)


def _surname_pool(rng: random.Random) -> list[str]:
    """Real surnames (the common ones, shuffled) first, then the generated long tail."""
    real = list(dict.fromkeys(n for n in _REAL_SURNAMES if n))
    rng.shuffle(real)
    seen = set(real)
    tail: list[str] = []
    for roots, suffixes in _ROOTS_SUFFIXES:
        for root in roots.split():
            for suffix in suffixes.split():
                name = root + suffix
                if name not in seen:
                    seen.add(name)
                    tail.append(name)
    rng.shuffle(tail)
    return real + tail


class _Weighted:
    """Draws from ``items`` with Zipf-like weights ``1 / (rank + offset)``, in the given order."""

    def __init__(self, items: Sequence[str], offset: float = 30.0) -> None:
        self.items = list(items)
        cum = 0.0
        self.cum: list[float] = []
        for rank in range(len(self.items)):
            cum += 1.0 / (rank + offset)
            self.cum.append(cum)

    def draw(self, rng: random.Random) -> str:
        return self.items[bisect.bisect_left(self.cum, rng.random() * self.cum[-1])]


def _is_ascii(s: str) -> bool:
    return all(ord(c) < 128 for c in s)


_TRANSLIT = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D",
                           "ß": "ss", "ı": "i", "æ": "ae", "Æ": "AE"})


def ascii_fold(s: str) -> str:
    """``s`` without diacritics, as many registration systems still write names."""
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", s.translate(_TRANSLIT))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


# --------------------------------------------------------------------------------------------
# Modalities: SOP classes, series shapes, sizes, header templates

CT, MR, CR, DX, US = (
    "1.2.840.10008.5.1.4.1.1.2",
    "1.2.840.10008.5.1.4.1.1.4",
    "1.2.840.10008.5.1.4.1.1.1",
    "1.2.840.10008.5.1.4.1.1.1.1",
    "1.2.840.10008.5.1.4.1.1.6.1",
)
SR_DOSE, SR_COMP, SR_BASIC = (
    "1.2.840.10008.5.1.4.1.1.88.67",
    "1.2.840.10008.5.1.4.1.1.88.33",
    "1.2.840.10008.5.1.4.1.1.88.11",
)
EXPLICIT, J2K, JLS, JPEG = (
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.50",
)

_STUDY_KINDS: tuple[tuple[str, float], ...] = (
    ("CR", 0.28),
    ("DX", 0.16),
    ("US", 0.13),
    ("CT", 0.22),
    ("MR", 0.18),
    ("SR", 0.03),
)
_DESCRIPTIONS = {
    "CR": (
        ("XR CHEST PA AND LATERAL", "CHEST"),
        ("XR HAND 2 VIEWS", "HAND"),
        ("XR KNEE 3 VIEWS", "KNEE"),
        ("XR PELVIS", "PELVIS"),
    ),
    "DX": (("DX CHEST AP PORTABLE", "CHEST"), ("DX SPINE LUMBAR", "LSPINE"), ("DX FOOT", "FOOT")),
    "US": (
        ("US ABDOMEN COMPLETE", "ABDOMEN"),
        ("US THYROID", "NECK"),
        ("US OB 2ND TRIM", "PELVIS"),
    ),
    "CT": (
        ("CT THORAX W/O CONTRAST", "CHEST"),
        ("CT ABDOMEN PELVIS W CONTRAST", "ABDOMEN"),
        ("CT HEAD W/O CONTRAST", "HEAD"),
        ("CTA CHEST PE PROTOCOL", "CHEST"),
    ),
    "MR": (
        ("MR BRAIN W/WO CONTRAST", "BRAIN"),
        ("MR KNEE RIGHT", "KNEE"),
        ("MR LUMBAR SPINE", "LSPINE"),
        ("MR PROSTATE MULTIPARAMETRIC", "PROSTATE"),
    ),
    "SR": (("OUTSIDE REPORT", ""),),
}
_SOURCE_AE = {"CR": "CR_ROOM2", "DX": "DX_PORTABLE", "US": "US_EPIQ3", "CT": "CT_SOMATOM1",
              "MR": "MR_PRISMA", "SR": "RIS_GATEWAY"}


@dataclass
class SeriesPlan:
    modality: str
    sop_class: str
    count: int
    description: str
    body_part: str
    transfer_syntax: str
    size: int  # bytes per instance
    frames: int | None = None


@dataclass
class StudyPlan:
    kind: str
    day: int  # days since FIRST_DAY
    time: str
    description: str
    series: list[SeriesPlan] = field(default_factory=list)
    patient: int = 0

    @property
    def count(self) -> int:
        return sum(s.count for s in self.series)


def _plan_study(kind: str, rng: random.Random) -> StudyPlan:
    desc, body = rng.choice(_DESCRIPTIONS[kind])
    day = rng.randrange(DAYS)
    while (FIRST_DAY + timedelta(days=day)).weekday() >= 5 and rng.random() < 0.7:
        day = rng.randrange(DAYS)
    hhmmss = f"{rng.randrange(7, 20):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}"
    st = StudyPlan(kind, day, hhmmss, desc)
    add = st.series.append
    if kind == "CR":
        ts = JLS if rng.random() < 0.5 else EXPLICIT
        for _ in range(rng.choice((1, 1, 2))):
            add(SeriesPlan("CR", CR, rng.randint(1, 2), desc.split(" ", 1)[1], body, ts,
                           rng.randint(4, 9) * 1_000_000))
    elif kind == "DX":
        add(SeriesPlan("DX", DX, rng.randint(1, 3), desc.split(" ", 1)[1], body, EXPLICIT,
                       rng.randint(8, 18) * 1_000_000))
    elif kind == "US":
        if rng.random() < 0.2:
            frames = rng.randint(30, 120)
            add(SeriesPlan("US", US, rng.randint(1, 6), "Cine loops", body, JPEG,
                           frames * 60_000, frames))
        else:
            add(SeriesPlan("US", US, rng.randint(5, 40), "Still images", body, JPEG, 350_000))
        if rng.random() < 0.3:
            add(SeriesPlan("SR", SR_COMP, 1, "US measurements", "", EXPLICIT, 24_000))
    elif kind == "CT":
        ts = J2K if rng.random() < 0.2 else EXPLICIT
        size = 525_000 if ts == EXPLICIT else 240_000
        add(SeriesPlan("CT", CT, rng.randint(1, 2), "Topogram", body, ts, size))
        if rng.random() < 0.015:
            add(SeriesPlan("CT", CT, rng.randint(300, 600), "Axial 0.6 mm", body, ts, size))
        else:
            add(SeriesPlan("CT", CT, rng.randint(10, 40), "Axial 5 mm", body, ts, size))
        if rng.random() < 0.4:
            add(SeriesPlan("CT", CT, rng.randint(10, 40), "Coronal MPR 3 mm", body, ts, size))
        if rng.random() < 0.3:
            add(SeriesPlan("SR", SR_DOSE, 1, "Dose Report", "", EXPLICIT, 30_000))
    elif kind == "MR":
        ts = J2K if rng.random() < 0.2 else EXPLICIT
        names = ("t1_tse_sag", "t2_tse_tra", "t2_flair_cor", "dwi_b1000", "t1_mprage_gd")
        for name in rng.sample(names, rng.randint(2, 5)):
            add(SeriesPlan("MR", MR, rng.randint(6, 20), name, body, ts, 130_000))
    else:
        add(SeriesPlan("SR", SR_BASIC, 1, "Report", "", EXPLICIT, 12_000))
    return st


def _header_templates() -> dict[str, bytes]:
    """One compressed DICOM JSON header per SOP class, built from a realistic data set."""
    from pydicom.dataset import Dataset

    from vesalius.dicom.record import encode_header, header_json

    out: dict[str, bytes] = {}
    for sop_class, modality in ((CT, "CT"), (MR, "MR"), (CR, "CR"), (DX, "DX"), (US, "US"),
                                (SR_DOSE, "SR"), (SR_COMP, "SR"), (SR_BASIC, "SR")):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = f"{UID_ROOT}.9.{len(out)}.1.1.1"
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20200115"
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "093000"
        ds.AccessionNumber = "RAD00012345"
        ds.Modality = modality
        ds.Manufacturer = "Vesalius benchmark"
        ds.InstitutionName = "St. Mary's Hospital"
        ds.ReferringPhysicianName = "Müller^Hans"
        ds.StudyDescription = "TEMPLATE"
        ds.SeriesDescription = "TEMPLATE"
        ds.PatientName = "Gonçalves^Inês"
        ds.PatientID = "10000001"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "F"
        ds.StudyInstanceUID = f"{UID_ROOT}.9.{len(out)}"
        ds.SeriesInstanceUID = f"{UID_ROOT}.9.{len(out)}.1"
        ds.StudyID = "1"
        ds.SeriesNumber = 2
        ds.InstanceNumber = 1
        if modality != "SR":
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows = ds.Columns = 512
            ds.BitsAllocated = 16
            ds.BitsStored = 12
            ds.HighBit = 11
            ds.PixelRepresentation = 0
            ds.PixelSpacing = [0.703125, 0.703125]
            ds.ImagePositionPatient = [-180.0, -180.0, -12.5]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.WindowCenter = 40
            ds.WindowWidth = 400
            ds.RescaleIntercept = -1024
            ds.RescaleSlope = 1
            ds.PixelData = b"\0" * 2048  # becomes a BulkDataURI placeholder
        else:
            ds.CompletionFlag = "COMPLETE"
            ds.VerificationFlag = "UNVERIFIED"
        out[sop_class] = encode_header(header_json(ds))
    return out


# --------------------------------------------------------------------------------------------
# The plan


@dataclass
class PatientPlan:
    patient_id: str
    name: str
    birth_date: str
    sex: str
    ascii: bool


@dataclass
class Plan:
    count: int
    seed: int
    patients: list[PatientPlan]
    studies: list[StudyPlan]  # in pk order

    @property
    def series_count(self) -> int:
        return sum(len(s.series) for s in self.studies)


def make_plan(count: int, seed: int) -> Plan:
    """The archive's shape for ``count`` instances: patients and studies in pk order."""
    if count < 1:
        raise ValueError("count must be at least 1")
    rng = random.Random(seed)
    kinds = [k for k, _ in _STUDY_KINDS]
    weights = [w for _, w in _STUDY_KINDS]
    planned: list[StudyPlan] = []
    total = 0
    while total < count:
        st = _plan_study(rng.choices(kinds, weights)[0], rng)
        over = total + st.count - count
        while over > 0:  # trim the last study to land on exactly ``count``
            last = st.series[-1]
            cut = min(over, last.count - 1)
            last.count -= cut
            over -= cut
            if over > 0:
                st.series.pop()
                over -= 1
        total += st.count
        planned.append(st)
    # Indexed mostly in date order; 10 % arrive late (migrated priors, outside studies).
    keyed = [(st.day if rng.random() >= 0.1 else rng.uniform(0, DAYS), i, st)
             for i, st in enumerate(planned)]
    keyed.sort(key=lambda t: (t[0], t[1]))
    ordered = [st for _, _, st in keyed]

    n_patients = max(1, min(len(ordered), round(count / 50)))
    owner = list(range(n_patients)) + [-1] * (len(ordered) - n_patients)
    rng.shuffle(owner)
    activity = [rng.lognormvariate(0.0, 1.0) for _ in range(n_patients)]
    cum = list(itertools.accumulate(activity))
    for st, p in zip(ordered, owner, strict=True):
        st.patient = p if p >= 0 else bisect.bisect_left(cum, rng.random() * cum[-1])
    # Patient pks in order of first appearance, as an archive would create them.
    renumber: dict[int, int] = {}
    for st in ordered:
        st.patient = renumber.setdefault(st.patient, len(renumber))

    surnames = _Weighted(_surname_pool(rng))
    mrns = rng.sample(range(10_000_000, 100_000_000), n_patients)
    pts: list[PatientPlan] = []
    for i in range(n_patients):
        sex = "F" if rng.random() < 0.5 else "M"
        if rng.random() < 0.02:
            sex = "O"
        surname = surnames.draw(rng)
        given = rng.choice(_GIVEN_F if sex == "F" else _GIVEN_M)
        style = rng.random()
        if style < 0.2:
            name = f"{surname}^{given}".upper()
        elif style < 0.35:
            name = f"{surname}^{given}^{rng.choice('ABCDEFGHJKLMNPRSTW')}"
        else:
            name = f"{surname}^{given}"
        if not _is_ascii(name) and rng.random() < 0.7:
            name = ascii_fold(name)
        birth = date(1930, 1, 1) + timedelta(days=rng.randrange(90 * 365))
        pts.append(PatientPlan(f"{mrns[i]:08d}", name, birth.strftime("%Y%m%d"), sex,
                               _is_ascii(name)))
    return Plan(count, seed, pts, ordered)


# --------------------------------------------------------------------------------------------
# Writing


def _batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, n)):
        yield chunk


_COLUMNS: dict[str, list[str]] = {
    t.name: [c.name for c in t.columns] for t in (patients, studies, series, instances)
}


class _Sink:
    """Inserts rows (tuples in column order) with Core executemany or PostgreSQL COPY."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"

    def put(self, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        cols = _COLUMNS[table.name]
        if self.pg:
            raw = self.conn.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cur, cur.copy(
                f"COPY {table.name} ({', '.join(cols)}) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            for batch in _batched(rows, BATCH):
                self.conn.execute(insert(table), [dict(zip(cols, r, strict=True)) for r in batch])


def _write(engine: Engine, plan: Plan, progress: bool) -> dict[str, int]:
    rng = random.Random(plan.seed * 7919 + 1)
    headers = _header_templates()
    physicians = [f"{rng.choice(_REAL_SURNAMES)}^{rng.choice(_GIVEN_F + _GIVEN_M)}"
                  for _ in range(300)]
    created: dict[int, datetime] = {}
    pstudies = [0] * len(plan.patients)
    for st in plan.studies:
        pstudies[st.patient] += 1
    started = time.perf_counter()
    pg = engine.dialect.name == "postgresql"

    def when(st: StudyPlan, minutes: int = 0) -> datetime:
        d = FIRST_DAY + timedelta(days=st.day)
        return datetime(d.year, d.month, d.day, int(st.time[:2]), int(st.time[2:4]),
                        int(st.time[4:]), tzinfo=UTC) + timedelta(minutes=minutes)

    for st in plan.studies:
        created.setdefault(st.patient, when(st))

    with engine.connect() as conn:
        if not pg:
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute("PRAGMA synchronous=OFF")  # a fresh file: redo from scratch on a crash
            raw.execute("PRAGMA cache_size=-1048576")
        sink = _Sink(conn)
        with conn.begin():
            sink.put(patients, [
                (i + 1, p.patient_id, "", p.name, p.name.upper(), "", "", p.birth_date, p.sex,
                 pstudies[i], created[i])
                for i, p in enumerate(plan.patients)
            ])
        series_pk = 0
        instance_pk = 0
        done = 0
        next_report = 0
        study_rows: list[tuple[Any, ...]] = []
        series_rows: list[tuple[Any, ...]] = []
        instance_rows: list[tuple[Any, ...]] = []

        def flush() -> None:
            with conn.begin():
                sink.put(studies, study_rows)
                sink.put(series, series_rows)
                sink.put(instances, instance_rows)
            study_rows.clear()
            series_rows.clear()
            instance_rows.clear()

        for study_pk, st in enumerate(plan.studies, start=1):
            pat = plan.patients[st.patient]
            charset = "ISO_IR 100" if pat.ascii else "ISO_IR 192"
            study_uid = f"{UID_ROOT}.{plan.seed}.{study_pk}"
            year = 2015 + st.day // 365
            modalities: list[str] = []
            sop_classes: list[str] = []
            size_bytes = 0
            t_study = when(st)
            for k, se in enumerate(st.series, start=1):
                series_pk += 1
                series_uid = f"{study_uid}.{k}"
                t_series = when(st, 2 + k)
                if se.modality not in modalities:
                    modalities.append(se.modality)
                if se.sop_class not in sop_classes:
                    sop_classes.append(se.sop_class)
                header = headers[se.sop_class]
                for i in range(1, se.count + 1):
                    instance_pk += 1
                    size = se.size + rng.randrange(4096)
                    size_bytes += size
                    instance_rows.append((
                        instance_pk, f"{series_uid}.{i}", series_pk, study_pk, se.sop_class, i,
                        se.frames, se.transfer_syntax, f"{rng.getrandbits(256):064x}", size,
                        charset, header, _SOURCE_AE[st.kind], t_series,
                    ))
                series_rows.append((
                    series_pk, series_uid, study_pk, se.modality, k if se.modality != "SR" else 900,
                    se.description, se.body_part, t_study.strftime("%Y%m%d"),
                    st.time, se.count, t_series,
                ))
            study_rows.append((
                study_pk, study_uid, st.patient + 1, t_study.strftime("%Y%m%d"), st.time,
                f"RAD{year % 100:02d}{study_pk:07d}", str(study_pk % 100000), st.description,
                physicians[rng.randrange(len(physicians))],
                "\\" + "\\".join(modalities) + "\\", "\\" + "\\".join(sop_classes) + "\\",
                len(st.series), st.count, size_bytes, charset, t_study, when(st, 10),
            ))
            done += st.count
            if len(instance_rows) >= BATCH:
                flush()
            if progress and done >= next_report:
                rate = done / max(1e-9, time.perf_counter() - started)
                print(f"  {done:>9,} / {plan.count:,} instances  ({rate:,.0f}/s)", flush=True)
                next_report += max(BATCH, plan.count // 20)
        flush()
        if pg:
            with conn.begin():
                for t in (patients, studies, series, instances):
                    conn.execute(text(
                        f"SELECT setval(pg_get_serial_sequence('{t.name}', 'pk'), "
                        f"(SELECT max(pk) FROM {t.name}))"))
        else:
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            raw.execute("PRAGMA synchronous=FULL")
    if pg:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for t in (patients, studies, series, instances):
                conn.execute(text(f"VACUUM ANALYZE {t.name}"))
    return {"patients": len(plan.patients), "studies": len(plan.studies),
            "series": series_pk, "instances": instance_pk}


# --------------------------------------------------------------------------------------------
# Caching, reset, entry point


def default_sqlite_url(count: int, seed: int) -> str:
    return f"sqlite:///{POPULATE_DIR / f'index-n{count}-seed{seed}.sqlite'}"


def pg_schema(url: str) -> str | None:
    """The schema named by ``options=-csearch_path=...`` in a PostgreSQL URL, if any."""
    query = urllib.parse.urlsplit(url).query
    for opt in urllib.parse.parse_qs(query).get("options", []):
        for part in opt.split():
            if part.startswith("-csearch_path="):
                return part.split("=", 1)[1].split(",")[0].strip()
    return None


def _pg_admin_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(query=""))


def _pg_schema_sql(url: str, statements: Sequence[str]) -> None:
    from sqlalchemy import create_engine

    admin = create_engine(_pg_admin_url(url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for stmt in statements:
                conn.execute(text(stmt))
    finally:
        admin.dispose()


def drop(url: str) -> None:
    """Remove the index at ``url`` (SQLite file and its WAL, or the PostgreSQL schema)."""
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)
    else:
        schema = pg_schema(url)
        if not schema or schema == "public":
            raise ValueError("refusing to drop: give a PostgreSQL URL with its own search_path "
                             "schema (options=-csearch_path%3Dbench1m)")
        _pg_schema_sql(url, [f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'])
    _manifest_path(url).unlink(missing_ok=True)


def prepare(url: str) -> Engine:
    """Open (creating the PostgreSQL schema if needed) the index at ``url``."""
    if url.startswith("postgresql"):
        schema = pg_schema(url)
        if schema and schema != "public":
            _pg_schema_sql(url, [f'CREATE SCHEMA IF NOT EXISTS "{schema}"'])
    return open_index(url)


def _manifest_path(url: str) -> Path:
    safe = "".join(c if c.isalnum() else "_" for c in url.split("://", 1)[-1])[-120:]
    return POPULATE_DIR / f"manifest-{safe}.json"


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in (patients, studies, series, instances)}


def reset(engine: Engine, manifest: dict[str, Any]) -> int:
    """Delete rows added after population (pk above the populated maximum); returns how many
    studies went. Counters of populated rows are not touched by those ingests."""
    limits = manifest["counts"]
    with engine.begin() as conn:
        gone = conn.execute(delete(studies).where(studies.c.pk > limits["studies"])).rowcount
        conn.execute(delete(instances).where(instances.c.pk > limits["instances"]))
        conn.execute(delete(series).where(series.c.pk > limits["series"]))
        conn.execute(delete(patients).where(patients.c.pk > limits["patients"]))
        conn.execute(delete(conflicts))
    return int(gone or 0)


def ensure(url: str, count: int = 1_000_000, seed: int = 0, *, force: bool = False,
           progress: bool = True) -> tuple[Engine, dict[str, Any]]:
    """The populated index at ``url`` (reused when a finished one with the same parameters is
    there); returns its engine and manifest."""
    POPULATE_DIR.mkdir(parents=True, exist_ok=True)
    mpath = _manifest_path(url)
    if not force and mpath.exists():
        manifest = json.loads(mpath.read_text())
        if (manifest.get("version"), manifest.get("count"), manifest.get("seed")) == (
            VERSION, count, seed
        ):
            engine = prepare(url)
            removed = reset(engine, manifest)
            if removed and progress:
                print(f"  removed {removed} studies added after population", flush=True)
            if counts(engine) == manifest["counts"]:
                if progress:
                    print(f"reusing populated index {url} ({count:,} instances)", flush=True)
                return engine, manifest
            engine.dispose()
            if progress:
                print("  cached index does not match its manifest: rebuilding", flush=True)
    drop(url)
    start = time.perf_counter()
    if progress:
        print(f"populating {url} with {count:,} instances (seed {seed}) ...", flush=True)
    plan = make_plan(count, seed)
    if progress:
        print(f"  plan: {len(plan.patients):,} patients, {len(plan.studies):,} studies, "
              f"{plan.series_count:,} series ({time.perf_counter() - start:.1f} s)", flush=True)
    engine = prepare(url)
    written = _write(engine, plan, progress)
    seconds = time.perf_counter() - start
    found = counts(engine)
    if found != written:
        raise RuntimeError(f"populated index holds {found}, expected {written}")
    manifest = {"version": VERSION, "count": count, "seed": seed, "url": url,
                "counts": written, "seconds": round(seconds, 1)}
    mpath.write_text(json.dumps(manifest, indent=1))
    if progress:
        print(f"  done in {seconds:.0f} s: {written}", flush=True)
    return engine, manifest


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1_000_000, help="instances (default 1000000)")
    ap.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    ap.add_argument("--db", default=None,
                    help="index URL (default: bench-out/populate/index-n<N>-seed<S>.sqlite)")
    ap.add_argument("--force", action="store_true", help="rebuild even if a cached one exists")
    args = ap.parse_args(argv)
    url = args.db or default_sqlite_url(args.count, args.seed)
    engine, manifest = ensure(url, args.count, args.seed, force=args.force)
    engine.dispose()
    print(json.dumps(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())

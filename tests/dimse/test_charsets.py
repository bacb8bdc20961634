"""Specific Character Set through store and query (PS3.5 6.1, Annexes H-K; PS3.4 C.2.2.2).

Patient names in ISO_IR 100, 144, 126, 127, 138, 192, GB18030 and ISO 2022 (Japanese IR 13 /
IR 87, Korean IR 149) arrive with ``storescu``, generated from the standard's own examples
and from pydicom's real ``chr*.dcm`` files. ``findscu`` (and the archive's Python API) finds
each by its name, exact and with wildcards, on the alphabetic and the ideographic /
phonetic component groups; what comes back decodes to the same Unicode string. Person name
matching is case-insensitive (the archive's default), which for non-ASCII Latin, Greek and
Cyrillic letters needs real case folding, not ASCII-only ``upper()`` in SQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
)

from tests import peers
from tests.conftest import PG_BASE, make_settings, pg_problem
from tests.dicomgen import CHARSET_SAMPLES, charset_test_files, make_charset_samples
from vesalius.archive import Archive, open_archive
from vesalius.dimse.server import DimseServer

pytestmark = pytest.mark.skipif(not peers.dcmtk_available("storescu", "findscu"),
                                reason="dcmtk is not installed (apt-get install dcmtk)")
AET = "VESALIUS"
UTF8 = "ISO_IR 192"


@dataclass(frozen=True)
class Name:
    """One stored patient: its name as Unicode, its ID and the character set it came in."""

    key: str
    expected: str
    patient_id: str
    charset: tuple[str, ...]

    @property
    def groups(self) -> list[str]:
        return pn_groups(self.expected)

    @property
    def wildcard(self) -> str:
        """The first three characters of the first component group, then '*'."""
        return self.groups[0][:3] + "*"

    @property
    def ideographic_queries(self) -> list[str]:
        """'山田*', '山田^太郎' and 'Yamada^Tarou=山田^太郎' for the PS3.5 H.3.1 example."""
        ideographic = self.groups[1]
        if not ideographic:
            return []
        return [ideographic.split("^")[0] + "*", ideographic, f"{self.groups[0]}={ideographic}"]


def pn_groups(value: str) -> list[str]:
    return (value.split("=") + ["", ""])[:3]


GENERATED = [s.key for s in CHARSET_SAMPLES]
REAL = [p.stem for p in charset_test_files(storable_only=True)]
WITH_IDEOGRAPHIC = [s.key for s in CHARSET_SAMPLES if len(s.expected.split("=")) > 1]
PATIENT_LEVEL = ["iso_2022_ir_149_korean", "iso_ir_144_cyrillic", "gb18030_chinese"]
#: (query, sample key): person names match case-insensitively (PS3.4 C.2.2.2.1 allows it;
#: it is the archive's default), for non-ASCII letters too.
CASE_QUERIES = [
    ("buc*", "iso_ir_100_french"),
    ("buc^jérôme", "iso_ir_100_french"),
    ("BUC^JÉRÔME", "iso_ir_100_french"),
    ("*JÉRÔME", "iso_ir_100_french"),
    ("äneas^rüdiger", "iso_ir_100_german"),
    ("ÄNEAS*", "iso_ir_100_german"),
    ("люк*", "iso_ir_144_cyrillic"),
    ("ЛЮК*", "iso_ir_144_cyrillic"),
    ("διονυσιος", "iso_ir_126_greek"),
    ("yamada^tarou", "iso_2022_ir_87_japanese"),
    ("WANG^XIAODONG=王^小東", "iso_ir_192_utf8"),
]


@dataclass
class Catalogue:
    archive: Archive
    server: DimseServer
    names: dict[str, Name]
    answers: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)

    def prefetch(self, queries: Iterable[tuple[str, str]]) -> None:
        """Run ``findscu`` for (level, PatientName) queries, eight at a time, and keep the
        answers: one findscu process per query is what makes this module slow otherwise."""
        todo = sorted(set(queries) - set(self.answers))
        with ThreadPoolExecutor(max_workers=8) as pool:
            for query, answer in zip(todo, pool.map(lambda q: self._findscu(*q), todo),
                                     strict=True):
                self.answers[query] = answer

    def findscu(self, name: str, level: str = "STUDY") -> list[tuple[str, str]]:
        """(PatientName, PatientID) of each response; the query is sent in UTF-8."""
        if (level, name) not in self.answers:
            self.answers[(level, name)] = self._findscu(level, name)
        return self.answers[(level, name)]

    def _findscu(self, level: str, name: str) -> list[tuple[str, str]]:
        keys: dict[str, str | None] = {"SpecificCharacterSet": UTF8, "PatientName": name,
                                       "PatientID": None}
        if level == "STUDY":
            keys["StudyInstanceUID"] = None
        rsp = peers.findscu(level, keys, AET, self.server.port,
                            model="S" if level == "STUDY" else "P")
        return [(str(r.PatientName), str(r.PatientID)) for r in rsp]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def catalogue(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Catalogue]:
    """Every sample stored once per database backend (a schema of its own on PostgreSQL)."""
    tmp = tmp_path_factory.mktemp(f"charsets-{request.param}")
    schema = ""
    db = ""
    if request.param == "postgresql":
        problem = pg_problem()
        if problem:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"CI needs PostgreSQL: {problem}")
            pytest.skip(problem)
        import psycopg

        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_BASE.replace("postgresql+psycopg", "postgresql"),
                             autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        db = f"{PG_BASE}?options=-csearch_path%3D{schema}"
    archive = open_archive(make_settings(tmp, db))
    server = DimseServer(archive, host="127.0.0.1", port=0)
    server.start()
    try:
        names: dict[str, Name] = {}
        generated = make_charset_samples(tmp / "generated")
        for sample, (path, expected) in zip(CHARSET_SAMPLES, generated, strict=True):
            ds = dcmread(path, stop_before_pixels=True)
            names[sample.key] = Name(sample.key, expected, str(ds.PatientID), sample.charset)
        real = charset_test_files(storable_only=True)
        for path in real:
            ds = dcmread(path, stop_before_pixels=True)
            cs = ds.SpecificCharacterSet
            names[path.stem] = Name(path.stem, str(ds.PatientName), str(ds.PatientID),
                                    tuple(cs) if isinstance(cs, list) else (str(cs),))
        peers.storescu([p for p, _ in generated] + real, AET, server.port)
        cat = Catalogue(archive, server, names)
        queries = [("STUDY", q) for q, _ in CASE_QUERIES]
        for name in names.values():
            queries += [("STUDY", q) for q in (name.expected, name.wildcard,
                                               *name.ideographic_queries)]
        queries += [("PATIENT", names[k].expected) for k in PATIENT_LEVEL]
        cat.prefetch(queries)
        yield cat
    finally:
        server.stop(grace=5.0)
        archive.close()
        if schema:
            import psycopg

            with psycopg.connect(PG_BASE.replace("postgresql+psycopg", "postgresql"),
                                 autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


# ------------------------------------------------------------------------------ helpers


def pynetdicom_find(cat: Catalogue, names: list[str], charset: tuple[str, ...]
                    ) -> list[list[tuple[str, str]]]:
    """One STUDY level C-FIND per name, each encoded by pydicom in ``charset``."""
    model = StudyRootQueryRetrieveInformationModelFind
    ae = AE("PYFIND")
    ae.add_requested_context(model)
    assoc = ae.associate("127.0.0.1", cat.server.port, ae_title=AET)
    assert assoc.is_established
    answers = []
    try:
        for name in names:
            query = Dataset()
            query.SpecificCharacterSet = list(charset) if len(charset) > 1 else charset[0]
            query.QueryRetrieveLevel = "STUDY"
            query.PatientName = name
            query.PatientID = ""
            out: list[tuple[str, str]] = []
            final = None
            for status, ident in assoc.send_c_find(query, model):
                final = int(status.Status) if status and "Status" in status else None
                if ident is not None and final in (0xFF00, 0xFF01):
                    out.append((str(ident.PatientName), str(ident.PatientID)))
            assert final == 0x0000
            answers.append(out)
    finally:
        assoc.release()
    return answers


def api_find(archive: Archive, name: str) -> list[tuple[str, str]]:
    """The archive's own query API, as DICOMweb uses it: DICOM JSON back."""
    query = Dataset()
    query.SpecificCharacterSet = UTF8
    query.QueryRetrieveLevel = "STUDY"
    query.PatientName = name
    query.PatientID = ""
    out = []
    for doc in archive.find(archive.parse_query(query)):
        pn: dict[str, Any] = doc["00100010"]["Value"][0]
        groups = [pn.get(g, "") for g in ("Alphabetic", "Ideographic", "Phonetic")]
        out.append(("=".join(groups).rstrip("="), doc["00100020"]["Value"][0]))
    return out


def starts(group: str, prefix: str) -> bool:
    return group.casefold().startswith(prefix.casefold())


def matches_a_group(name: str, query_group: str) -> bool:
    """Whether some component group of ``name`` is ``query_group`` (any case)."""
    return query_group.casefold() in [g.casefold() for g in pn_groups(name)]


def a_group_starts(name: str, prefix: str) -> bool:
    return any(starts(g, prefix) for g in pn_groups(name))


# ------------------------------------------------------------------------------ findscu


@pytest.mark.parametrize("key", GENERATED + REAL)
def test_exact_name(catalogue: Catalogue, key: str) -> None:
    name = catalogue.names[key]
    found = catalogue.findscu(name.expected)
    assert (name.expected, name.patient_id) in found
    # Nothing else matches: a query without '=' may match any one component group.
    query_groups = [g for g in pn_groups(name.expected) if g]
    for other, _ in found:
        if len(query_groups) == 1:
            assert matches_a_group(other, query_groups[0]), other
        else:
            assert other == name.expected


@pytest.mark.parametrize("key", GENERATED + REAL)
def test_wildcard_on_the_first_group(catalogue: Catalogue, key: str) -> None:
    name = catalogue.names[key]
    found = catalogue.findscu(name.wildcard)
    assert (name.expected, name.patient_id) in found
    assert all(a_group_starts(n, name.wildcard[:-1]) for n, _ in found)


@pytest.mark.parametrize("key", WITH_IDEOGRAPHIC)
def test_ideographic_group(catalogue: Catalogue, key: str) -> None:
    """'山田*' finds 'Yamada^Tarou=山田^太郎=やまだ^たろう' by its ideographic group."""
    name = catalogue.names[key]
    family_wildcard, ideographic, both = name.ideographic_queries
    for query in (family_wildcard, ideographic):
        found = catalogue.findscu(query)
        assert (name.expected, name.patient_id) in found, query
        assert all(a_group_starts(n, family_wildcard[:-1]) for n, _ in found)
    # Components given per group: both the alphabetic and the ideographic one must match.
    found = catalogue.findscu(both)
    assert (name.expected, name.patient_id) in found
    assert all(pn_groups(n)[:2] == name.groups[:2] for n, _ in found)


def test_phonetic_group(catalogue: Catalogue) -> None:
    name = catalogue.names["iso_2022_ir_87_japanese"]
    assert name.groups[2] == "やまだ^たろう"
    found = catalogue.findscu("やまだ*")
    assert (name.expected, name.patient_id) in found


def test_patient_level_answer_decodes(catalogue: Catalogue) -> None:
    """Patient Root, PATIENT level: the answer names the character set it is encoded in."""
    for key in PATIENT_LEVEL:
        name = catalogue.names[key]
        found = catalogue.findscu(name.expected, level="PATIENT")
        assert (name.expected, name.patient_id) in found


# ------------------------------------------------------------------------------ case


@pytest.mark.parametrize(("query", "key"), CASE_QUERIES)
def test_names_match_case_insensitively(catalogue: Catalogue, query: str, key: str) -> None:
    name = catalogue.names[key]
    assert (name.expected, name.patient_id) in catalogue.findscu(query)


def test_names_match_case_sensitively_when_configured(tmp_path: Path) -> None:
    archive = open_archive(make_settings(tmp_path, case_insensitive_names=False))
    try:
        (path, expected) = make_charset_samples(tmp_path / "s")[0]
        assert archive.store_bytes(path.read_bytes()).ok
        assert [n for n, _ in api_find(archive, expected)] == [expected]
        assert api_find(archive, expected.upper()) == []
        assert api_find(archive, "buc*") == []
    finally:
        archive.close()


# ------------------------------------------------------------------------------ other paths


@pytest.mark.parametrize("key", GENERATED)
def test_query_in_the_names_own_character_set(catalogue: Catalogue, key: str) -> None:
    """The query may come in any character set; pydicom encodes it like a modality would."""
    name = catalogue.names[key]
    exact, wildcard = pynetdicom_find(catalogue, [name.expected, name.groups[0][:2] + "*"],
                                      name.charset)
    assert (name.expected, name.patient_id) in exact
    assert (name.expected, name.patient_id) in wildcard


@pytest.mark.parametrize("key", GENERATED + REAL)
def test_python_api(catalogue: Catalogue, key: str) -> None:
    name = catalogue.names[key]
    assert (name.expected, name.patient_id) in api_find(catalogue.archive, name.expected)
    assert (name.expected, name.patient_id) in api_find(catalogue.archive, name.groups[0][:2] + "*")
    if name.groups[1]:
        family = name.groups[1].split("^")[0]
        assert (name.expected, name.patient_id) in api_find(catalogue.archive, family + "*")


def test_stored_objects_keep_their_original_bytes(catalogue: Catalogue) -> None:
    """The archive indexes a decoded copy but keeps the name's bytes as they arrived."""
    for sample in CHARSET_SAMPLES:
        name = catalogue.names[sample.key]
        refs = catalogue.archive.retrieval.locate(_patient_query(name.patient_id))
        assert len(refs) == 1
        data = catalogue.archive.read(refs[0])
        assert sample.encoded in data


def _patient_query(patient_id: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "PATIENT"
    ds.PatientID = patient_id
    return ds

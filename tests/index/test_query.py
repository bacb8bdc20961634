"""C-FIND/QIDO matching in the index gives the same answers on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.dataset import Dataset

from tests.factory import instance, uid
from vesalius.archive import Archive

STUDIES = [
    # study, patient id, name, date, modality, description
    ("A", "P1", "SMITH^JOHN", "20240105", "CT", "CHEST CT"),
    ("B", "P1", "SMITH^JOHN", "20240210", "MR", "BRAIN MR"),
    ("C", "P2", "SMYTHE^JANE", "20231231", "CT", "ABDOMEN"),
    ("D", "P3", "smithson^anna", "20240301", "CR", "CHEST PA"),
    ("E", "P4", "Yamada^Tarou=山田^太郎=やまだ^たろう", "20240115", "CT", "HEAD"),
    ("F", "P5", "O'BRIEN^PAT", "20240116", "US", "50% OFF_PRICE"),
]


@pytest.fixture
def loaded(archive: Archive) -> Archive:
    for study, pid, name, date, mod, desc in STUDIES:
        extra: dict[str, Any] = {}
        if any(ord(c) > 127 for c in name):
            extra["SpecificCharacterSet"] = "ISO_IR 192"
        for n in range(2):
            rep = archive.store_bytes(instance(study, "SE1", n, patient_id=pid, patient_name=name, study_date=date,
                                               modality=mod, StudyDescription=desc, **extra))
            assert rep.ok, rep
    return archive


def studies(a: Archive, **keys: str) -> set[str]:
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = ""
    for k, v in keys.items():
        setattr(q, k, v)
    found = {d["0020000D"]["Value"][0] for d in a.find(a.parse_query(q))}
    names = {uid(s[0]): s[0] for s in STUDIES}
    return {names[u] for u in found}


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"PatientName": "SMITH*"}, {"A", "B", "D"}),  # case-insensitive names
        ({"PatientName": "SMITH^JOHN"}, {"A", "B"}),
        ({"PatientName": "SM?TH*"}, {"A", "B", "C", "D"}),
        ({"PatientName": "SM?TH^*"}, {"A", "B"}),
        ({"PatientName": "*JANE"}, {"C"}),
        ({"PatientName": "山田*"}, {"E"}),
        ({"PatientName": "やまだ^たろう"}, {"E"}),
        ({"PatientName": "O'BRIEN*"}, {"F"}),
        ({"PatientName": "*"}, {"A", "B", "C", "D", "E", "F"}),
        ({"PatientID": "P1"}, {"A", "B"}),
        ({"StudyDate": "20240101-20240131"}, {"A", "E", "F"}),
        ({"StudyDate": "-20231231"}, {"C"}),
        ({"StudyDate": "20240301-"}, {"D"}),
        ({"StudyDate": "20240210"}, {"B"}),
        ({"ModalitiesInStudy": "CT"}, {"A", "C", "E"}),
        ({"ModalitiesInStudy": "MR\\CR"}, {"B", "D"}),
        ({"StudyDescription": "CHEST*"}, {"A", "D"}),
        ({"StudyDescription": "chest*"}, set()),  # non-PN wildcards are case-sensitive
        ({"StudyDescription": "50% OFF_PRICE"}, {"F"}),  # LIKE metacharacters are literal
        ({"StudyDescription": "50%*"}, {"F"}),
        ({"StudyDescription": "5_%*"}, set()),
        ({"AccessionNumber": "ACC-C"}, {"C"}),
        ({"PatientName": "SMITH*", "StudyDate": "20240201-"}, {"B", "D"}),
        ({"PatientName": "x' OR '1'='1"}, set()),
    ],
)
def test_study_matching(loaded: Archive, keys: dict[str, str], expected: set[str]) -> None:
    assert studies(loaded, **keys) == expected


def test_uid_list(loaded: Archive) -> None:
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = [uid("A"), uid("C"), "1.2.3.4"]
    found = {d["0020000D"]["Value"][0] for d in loaded.find(loaded.parse_query(q))}
    assert found == {uid("A"), uid("C")}


def test_series_and_image_levels(loaded: Archive) -> None:
    q = Dataset()
    q.QueryRetrieveLevel = "SERIES"
    q.StudyInstanceUID = uid("A")
    q.SeriesInstanceUID = ""
    q.Modality = ""
    q.NumberOfSeriesRelatedInstances = ""
    (doc,) = loaded.find(loaded.parse_query(q))
    assert doc["00080060"]["Value"] == ["CT"] and doc["00201209"]["Value"] == [2]
    q = Dataset()
    q.QueryRetrieveLevel = "IMAGE"
    q.SeriesInstanceUID = uid("A", "SE1")
    q.SOPInstanceUID = ""
    q.InstanceNumber = "1"
    (doc,) = loaded.find(loaded.parse_query(q))
    assert doc["00080018"]["Value"] == [uid("A", "SE1", 1)]


def test_patient_level(loaded: Archive) -> None:
    q = Dataset()
    q.QueryRetrieveLevel = "PATIENT"
    q.PatientID = ""
    q.PatientName = "SMITH*"
    q.NumberOfPatientRelatedStudies = ""
    docs = list(loaded.find(loaded.parse_query(q)))
    got = {d["00100020"]["Value"][0]: d["00201200"]["Value"][0] for d in docs}
    assert got == {"P1": 2, "P3": 1}


def test_non_indexed_key_matches_from_header(loaded: Archive) -> None:
    q = Dataset()
    q.QueryRetrieveLevel = "IMAGE"
    q.StudyInstanceUID = uid("A")
    q.SOPInstanceUID = ""
    q.RescaleIntercept = "-1024"
    q.BodyPartExamined = ""
    docs = list(loaded.find(loaded.parse_query(q)))
    assert len(docs) == 2
    q.RescaleIntercept = "0"
    assert list(loaded.find(loaded.parse_query(q))) == []


def test_unicode_name_is_returned_intact(loaded: Archive) -> None:
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.PatientName = "Yamada*"
    (doc,) = loaded.find(loaded.parse_query(q))
    assert doc["00100010"]["Value"][0] == {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎",
                                           "Phonetic": "やまだ^たろう"}

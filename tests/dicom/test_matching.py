"""Matching rules of PS3.4 C.2.2.2, evaluated in Python."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from vesalius.dicom.keys import Level
from vesalius.dicom.matching import Kind, condition_from_value, matches, parse_identifier
from vesalius.errors import QueryError


def cond(keyword: str, vr: str, value: str):  # type: ignore[no-untyped-def]
    return condition_from_value(keyword, vr, value)


@pytest.mark.parametrize(
    ("value", "stored", "expected"),
    [
        ("SMITH^JOHN", "SMITH^JOHN", True),
        ("smith^john", "SMITH^JOHN", True),  # case-insensitive PN (setting default)
        ("SMITH", "SMITH^JOHN", False),  # single value: no prefix match
        ("SMITH*", "SMITH^JOHN", True),
        ("*JOHN", "SMITH^JOHN", True),
        ("SM?TH*", "SMYTH^JANE", True),
        ("SM?TH*", "SMTH^JANE", False),
        ("Yamada*", "Yamada^Tarou=山田^太郎=やまだ^たろう", True),
        ("山田*", "Yamada^Tarou=山田^太郎=やまだ^たろう", True),  # any component group
        ("=山田^太郎", "Yamada^Tarou=山田^太郎=やまだ^たろう", True),
        ("=山本*", "Yamada^Tarou=山田^太郎=やまだ^たろう", False),
        ("SMITH^JOHN", "SMITH^JOHN^^^", True),  # trailing empty components
    ],
)
def test_person_name(value: str, stored: str, expected: bool) -> None:
    assert matches(cond("PatientName", "PN", value), stored) is expected


def test_person_name_case_sensitive_setting() -> None:
    c = cond("PatientName", "PN", "smith*")
    assert matches(c, "SMITH^JOHN", case_insensitive_names=True)
    assert not matches(c, "SMITH^JOHN", case_insensitive_names=False)


@pytest.mark.parametrize(
    ("value", "stored", "expected"),
    [
        ("20240101-20240131", "20240115", True),
        ("20240101-20240131", "20240201", False),
        ("-20240101", "20231231", True),
        ("20240101-", "20231231", False),
        ("20240101", "20240101", True),
        ("20240101-20240131", "", False),
    ],
)
def test_date_range(value: str, stored: str, expected: bool) -> None:
    c = cond("StudyDate", "DA", value)
    assert matches(c, stored) is expected


def test_time_matches_at_its_precision() -> None:
    c = cond("StudyTime", "TM", "10")
    assert c.kind == Kind.RANGE
    assert matches(c, "103015.123")
    assert not matches(c, "110000")
    r = cond("StudyTime", "TM", "0900-1030")
    assert matches(r, "101500") and not matches(r, "103100") and matches(r, "090000")


def test_uid_list_and_universal() -> None:
    c = cond("SeriesInstanceUID", "UI", "1.2.3\\1.2.4")
    assert c.kind == Kind.LIST
    assert matches(c, "1.2.4") and not matches(c, "1.2.5")
    assert cond("PatientID", "LO", "*").kind == Kind.UNIVERSAL
    assert cond("PatientID", "LO", "").kind == Kind.UNIVERSAL


def test_wildcard_on_strings_is_case_sensitive() -> None:
    c = cond("StudyDescription", "LO", "CHEST*")
    assert matches(c, "CHEST CT") and not matches(c, "chest ct")


def test_multi_valued_stored_value_any_matches() -> None:
    c = cond("ModalitiesInStudy", "CS", "MR")
    assert matches(c, ["CT", "MR"]) and not matches(c, ["CT", "SR"])


def test_bad_date_is_a_query_error() -> None:
    with pytest.raises(QueryError):
        cond("StudyDate", "DA", "2024-01-01x")
    with pytest.raises(QueryError):
        cond("StudyDate", "DA", "20240101\\20240102")


def test_parse_identifier_return_and_matching_keys() -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = "DOE*"
    ds.StudyDate = "20240101-"
    ds.StudyInstanceUID = ""
    ds.AccessionNumber = ""
    q = parse_identifier(ds)
    assert q.level == Level.STUDY
    assert {c.keyword for c in q.conditions} == {"PatientName", "StudyDate"}
    assert set(q.return_keys) >= {"PatientName", "StudyDate", "StudyInstanceUID", "AccessionNumber"}


def test_parse_identifier_bad_level() -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "FRAME"
    with pytest.raises(QueryError):
        parse_identifier(ds)


def test_sequence_matching() -> None:
    item = Dataset()
    item.CodeValue = "T-D3000"
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.ProcedureCodeSequence = [item]
    q = parse_identifier(ds)
    (c,) = q.conditions
    assert c.kind == Kind.SEQUENCE
    assert matches(c, [{"CodeValue": "T-D3000", "CodingSchemeDesignator": "SRT"}])
    assert not matches(c, [{"CodeValue": "T-D0000"}])

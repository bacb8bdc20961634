"""De-identification (PS3.15 Annex E): the profile table attribute by attribute, every option,
UID remapping, date shifting, pixel cleaning, the leftover-PHI scan and the pseudonym map."""

from __future__ import annotations

import copy
import datetime as dt
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from tests.dicomgen import make_dataset, pydicom_test_file
from vesalius.dicom.deid_table import SAFE_PRIVATE, SUPPLEMENTARY, TABLE, Rule, rule_for
from vesalius.dicom.deidentify import (
    DeidOptions,
    PseudonymMap,
    deidentify,
    find_identifiers,
    identifiers_of,
    remap_uid,
    to_part10,
)
from vesalius.errors import InvalidDicom, StorageError

SALT = b"test-salt-0123456789abcdef-XYZ!!"
UID_RE = re.compile(r"^2\.25\.(0|[1-9][0-9]*)$")

# Identifying values of the rich data set; the PHI scan looks for every one of them.
NAME, PATIENT_ID, BIRTH = "Doe^Johnathan", "MRN48151623", "19610314"
ACCESSION, OTHER_ID = "ACC99817", "OID77341"
STUDY_DATE, CONTENT_DATE = "20240102", "20240105"
REFERRING, OPERATOR = "House^Gregory", "Cuddy^Lisa"
INSTITUTION, STATION, SERIAL = "St Elsewhere Hospital", "CTROOM3", "SN77731"
PHI_TERMS = [
    "Johnathan", "MRN48151623", "19610314", "1961-03-14", "ACC99817", "OID77341",
    "Gregory", "Cuddy", "Elsewhere", "CTROOM3", "SN77731", "20240102", "20240105",
    "12 Baker Street", "555-0100", "RP5521", "SPS3312",
]


def _item(**attrs: Any) -> Dataset:
    item = Dataset()
    for keyword, value in attrs.items():
        setattr(item, keyword, value)
    return item


def _code(value: str, meaning: str, scheme: str = "99LOCAL") -> Dataset:
    return _item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def rich_dataset(index: int = 0, other_sop: str | None = None) -> Dataset:
    """A CT instance (real phantom pixels) with PHI at the top level and inside sequences,
    private tags with and without a creator, an overlay plane and a curve."""
    ds = make_dataset("CT", seed=7, rows=64, cols=64, index=index, patient_id=PATIENT_ID,
                      patient_name=NAME, accession=ACCESSION, study_date=STUDY_DATE)
    ds.PatientBirthDate = BIRTH
    ds.PatientSex = "M"
    ds.PatientAge = "062Y"
    ds.PatientWeight = 81.5
    ds.PatientSize = 1.78
    ds.EthnicGroup = "Martian"
    ds.SmokingStatus = "NO"
    ds.Allergies = "penicillin, noted for Johnathan Doe"
    ds.PatientAddress = "12 Baker Street"
    ds.PatientTelephoneNumbers = "555-0100"
    ds.OtherPatientIDs = OTHER_ID
    ds.OtherPatientNames = "Doe^Jon"
    ds.IssuerOfPatientID = "ELSEWHERE"
    ds.PatientComments = "Johnathan prefers mornings"
    ds.StudyID = "STUDY42"
    ds.ContentDate = CONTENT_DATE
    ds.AcquisitionDateTime = "20240102101501.123456+0100"
    ds.StudyDescription = "CT chest for Johnathan Doe"
    ds.SeriesDescription = "Thorax MRN48151623"
    ds.ImageComments = "follow-up of MRN48151623"
    ds.ProtocolName = "Chest routine"
    ds.InstitutionName = INSTITUTION
    ds.InstitutionAddress = "1 Hospital Road"
    ds.InstitutionalDepartmentName = "Radiology Elsewhere"
    ds.StationName = STATION
    ds.DeviceSerialNumber = SERIAL
    ds.ReferringPhysicianName = REFERRING
    ds.PerformingPhysicianName = "Wilson^James"
    ds.OperatorsName = OPERATOR
    ds.BurnedInAnnotation = "NO"
    ds.ContrastBolusAgent = "Iohexol"
    ds.InstitutionCodeSequence = Sequence([_code("STE001", INSTITUTION)])
    ds.RequestAttributesSequence = Sequence([
        _item(
            RequestedProcedureID="RP5521",
            ScheduledProcedureStepID="SPS3312",
            AccessionNumber=ACCESSION,
            RequestedProcedureDescription="CT chest Doe",
            ReasonForTheRequestedProcedure="cough, Johnathan Doe MRN48151623",
            ScheduledProcedureStepStartDate="20240101",
            ReferencedStudySequence=Sequence([
                _item(ReferencedSOPClassUID="1.2.840.10008.3.1.2.3.1",
                      ReferencedSOPInstanceUID="1.2.826.0.1.3680043.2.1125.991.1")
            ]),
        )
    ])
    ds.ReferencedPatientSequence = Sequence([
        _item(ReferencedSOPClassUID="1.2.840.10008.3.1.2.1.1",
              ReferencedSOPInstanceUID="1.2.826.0.1.3680043.2.1125.991.2")
    ])
    ds.OtherPatientIDsSequence = Sequence([_item(PatientID=OTHER_ID, IssuerOfPatientID="OTHER")])
    ds.ProcedureCodeSequence = Sequence([_code("CTCHEST", "CT of the chest")])
    ds.VerifyingObserverSequence = Sequence([
        _item(
            VerifyingObserverName="Cuddy^Lisa",
            VerifyingOrganization=INSTITUTION,
            VerificationDateTime="20240105120000",
            VerifyingObserverIdentificationCodeSequence=Sequence([_code("DOC17", "Lisa Cuddy")]),
        )
    ])
    ds.ContentSequence = Sequence([
        _item(
            RelationshipType="CONTAINS",
            ValueType="TEXT",
            ConceptNameCodeSequence=Sequence([_code("121071", "Finding", "DCM")]),
            TextValue="Seen with Gregory House; patient Johnathan Doe MRN48151623, nodule 4 mm",
        ),
        _item(RelationshipType="HAS OBS CONTEXT", ValueType="PNAME", PersonName=REFERRING,
              ConceptNameCodeSequence=Sequence([_code("121008", "Person Observer Name", "DCM")])),
        _item(RelationshipType="CONTAINS", ValueType="DATETIME", DateTime="20240105093000",
              ConceptNameCodeSequence=Sequence([_code("111526", "DateTime Started", "DCM")])),
    ])
    ds.PerFrameFunctionalGroupsSequence = Sequence([
        _item(FrameContentSequence=Sequence([_item(FrameAcquisitionDateTime="20240102101502",
                                                   FrameAcquisitionNumber=1)]))
    ])
    ds.GraphicAnnotationSequence = Sequence([
        _item(GraphicLayer="LAYER1", TextObjectSequence=Sequence([
            _item(UnformattedTextValue="Johnathan Doe", AnchorPointAnnotationUnits="PIXEL",
                  AnchorPoint=[10.0, 10.0], AnchorPointVisibility="Y")
        ]))
    ])
    if other_sop is not None:
        ref = _item(ReferencedSOPClassUID=ds.SOPClassUID, ReferencedSOPInstanceUID=other_sop)
        ds.ReferencedImageSequence = Sequence([ref])
        ds.SourceImageSequence = Sequence([copy.deepcopy(ref)])
    # private: a creator block, a "safe" Siemens block, an orphan, a private sequence
    ds.add_new(0x00090010, "LO", "ACME 1.1")
    ds.add_new(0x00091001, "LO", "Johnathan Doe")
    ds.add_new(0x00091002, "US", 7)
    ds.add_new(0x00190010, "LO", "SIEMENS MR HEADER")
    ds.add_new(0x0019100C, "IS", "1000")  # B_value: on the safe list
    ds.add_new(0x00191020, "LO", "MRN48151623")  # not on the safe list
    ds.add_new(0x00111010, "LO", "Doe orphan")  # no private creator
    ds.add_new(0x00290010, "LO", "ACME SQ")
    ds.add_new(0x00291001, "SQ", Sequence([_item(PatientName=NAME)]))
    # an overlay plane and a (retired) curve
    ds.add_new(0x60000010, "US", 64)  # Overlay Rows
    ds.add_new(0x60000011, "US", 64)  # Overlay Columns
    ds.add_new(0x60000040, "CS", "G")  # Overlay Type
    ds.add_new(0x60000050, "SS", [1, 1])  # Overlay Origin
    ds.add_new(0x60000100, "US", 1)  # Overlay Bits Allocated
    ds.add_new(0x60000102, "US", 0)  # Overlay Bit Position
    ds.add_new(0x60003000, "OW", np.packbits(np.ones(64 * 64, np.uint8), bitorder="little").tobytes())
    ds.add_new(0x60004000, "LT", "drawn by Johnathan")
    ds.add_new(0x50000005, "US", 1)  # Curve Dimensions
    ds.add_new(0x50003000, "OW", b"\x01\x02" * 8)  # Curve Data
    return ds


def options(**kw: Any) -> DeidOptions:
    return DeidOptions(uid_salt=SALT, **kw)


def walk(ds: Dataset, prefix: str = "") -> Iterator[tuple[str, DataElement]]:
    for elem in ds:
        path = f"{prefix}{elem.keyword or elem.tag}"
        yield path, elem
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                yield from walk(item, f"{path}[{i}].")


def leftover_phi(ds: Dataset, terms: list[str]) -> list[str]:
    """Every element value (file meta included, any depth) that contains one of ``terms``."""
    found = []
    meta = getattr(ds, "file_meta", None)
    for path, elem in list(walk(ds)) + (list(walk(meta, "meta.")) if meta is not None else []):
        if elem.VR == "SQ" or elem.tag in (0x7FE00010,):
            continue
        raw = elem.value
        values = list(raw) if isinstance(raw, (MultiValue, list)) else [raw]
        for value in values:
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            found += [f"{path}={text!r}" for t in terms if t.lower() in text.lower()]
    return found


def is_empty(elem: DataElement) -> bool:
    return elem.value is None or elem.value == "" or (elem.VR == "SQ" and len(elem.value) == 0)


def conforms(code: str, before: DataElement, out: Dataset) -> str | None:
    """None if the output element obeys PS3.15 action ``code``; else why not."""
    tag = before.tag
    present = tag in out
    after = out[tag] if present else None

    def changed() -> bool:
        assert after is not None
        if before.VR == "SQ":
            return True
        return bool(after.value != before.value)

    if code == "X":
        return None if not present else "not removed"
    if code == "Z":
        return None if present and (is_empty(after) or changed()) else "not emptied/replaced"  # type: ignore[arg-type]
    if code in ("D", "Z/D"):
        return None if present and not is_empty(after) and changed() else "not replaced by a dummy"  # type: ignore[arg-type]
    if code in ("X/Z", "X/D", "X/Z/D"):
        return None if not present or is_empty(after) or changed() else "kept unchanged"  # type: ignore[arg-type]
    if code in ("U", "X/Z/U*"):
        if not present:
            return None if code == "X/Z/U*" else "UID removed"
        assert after is not None
        if after.VR == "SQ":
            uids = [str(i.ReferencedSOPInstanceUID) for i in after.value if "ReferencedSOPInstanceUID" in i]
            return None if all(UID_RE.match(u) for u in uids) else f"references not remapped: {uids}"
        values = list(after.value) if isinstance(after.value, MultiValue) else [after.value]
        return None if all(UID_RE.match(str(v)) for v in values) and changed() else f"UID not remapped: {after.value}"
    if code == "K":
        if not present:
            return "not kept"
        assert after is not None
        if before.VR == "SQ":
            return None if len(after.value) == len(before.value) else "sequence items lost"
        return None if after.value == before.value else f"changed to {after.value!r}"
    raise AssertionError(code)


# --------------------------------------------------------------------------------------------
# The profile table, attribute by attribute
# --------------------------------------------------------------------------------------------

# Basic Profile actions of PS3.15 Table E.1-1 for the attributes of the rich data set, written
# out here from the standard (independently of vesalius.dicom.deid_table).
EXPECTED_BASIC = {
    "PatientName": "Z", "PatientID": "Z/D", "PatientBirthDate": "Z", "PatientSex": "Z",
    "PatientAge": "X", "PatientWeight": "X", "PatientSize": "X", "EthnicGroup": "X",
    "SmokingStatus": "X", "Allergies": "X", "PatientAddress": "X", "PatientTelephoneNumbers": "X",
    "OtherPatientIDs": "X", "OtherPatientNames": "X", "IssuerOfPatientID": "X",
    "PatientComments": "X", "AccessionNumber": "Z", "StudyID": "Z", "StudyDate": "Z",
    "StudyTime": "Z", "SeriesDate": "X/D", "SeriesTime": "X/D", "AcquisitionDate": "X/Z",
    "AcquisitionTime": "X/Z", "ContentDate": "Z/D", "ContentTime": "Z/D",
    "AcquisitionDateTime": "X/Z/D", "InstanceCreationDate": "X/D", "InstanceCreationTime": "X/Z/D",
    "StudyDescription": "X", "SeriesDescription": "X", "ImageComments": "X", "ProtocolName": "X/D",
    "InstitutionName": "X/Z/D", "InstitutionAddress": "X", "InstitutionalDepartmentName": "X",
    "InstitutionCodeSequence": "X/Z/D", "StationName": "X/Z/D", "DeviceSerialNumber": "X/Z/D",
    "ReferringPhysicianName": "Z", "PerformingPhysicianName": "X", "OperatorsName": "X/Z/D",
    "ContrastBolusAgent": "Z/D", "RequestAttributesSequence": "X",
    "ReferencedPatientSequence": "X", "OtherPatientIDsSequence": "X",
    "VerifyingObserverSequence": "D", "ContentSequence": "D", "GraphicAnnotationSequence": "D",
    "ReferencedImageSequence": "X/Z/U*", "SourceImageSequence": "X/Z/U*",
    "SOPInstanceUID": "U", "StudyInstanceUID": "U", "SeriesInstanceUID": "U",
    "FrameOfReferenceUID": "U",
}

KEPT = ["SOPClassUID", "Modality", "Rows", "Columns", "PixelSpacing", "ImagePositionPatient",
        "RescaleIntercept", "BodyPartExamined", "Manufacturer", "ProcedureCodeSequence"]


def test_basic_profile_attribute_by_attribute() -> None:
    ds = rich_dataset(other_sop="1.2.826.0.1.3680043.2.1125.5.5")
    out, _ = deidentify(ds, options())
    problems = {}
    for keyword, code in EXPECTED_BASIC.items():
        assert keyword in ds, keyword
        assert TABLE[int(ds[keyword].tag)].basic == code, f"deid_table disagrees on {keyword}"
        why = conforms(code, ds[keyword], out)
        if why:
            problems[keyword] = why
    assert not problems
    for keyword in KEPT:
        assert out[keyword].value == ds[keyword].value, keyword
    assert (out.PatientIdentityRemoved, out.LongitudinalTemporalInformationModified) == ("YES", "REMOVED")


def test_nested_sequences_follow_the_table_at_any_depth() -> None:
    ds = rich_dataset(other_sop="1.2.826.0.1.3680043.2.1125.5.5")
    out, _ = deidentify(ds, options())
    # D sequences are kept, their rows applied inside, free text replaced
    observer = out.VerifyingObserverSequence[0]
    assert observer.VerifyingObserverName == "ANONYMIZED"
    assert observer.VerifyingOrganization == "ANONYMIZED"
    assert observer.VerificationDateTime != "20240105120000"
    assert len(observer.VerifyingObserverIdentificationCodeSequence) == 0  # Z
    text, person, when = out.ContentSequence
    assert text.TextValue == "ANONYMIZED"
    assert text.ConceptNameCodeSequence[0].CodeMeaning == "Finding"  # structure kept
    assert person.PersonName != REFERRING and when.DateTime != "20240105093000"
    assert out.InstitutionCodeSequence[0].CodeMeaning == "ANONYMIZED"
    # rows apply inside sequences the table does not list
    frame = out.PerFrameFunctionalGroupsSequence[0].FrameContentSequence[0]
    assert frame.FrameAcquisitionDateTime == "19000101000000" and frame.FrameAcquisitionNumber == 1
    assert out.ProcedureCodeSequence[0].CodeMeaning == "CT of the chest"
    assert out.GraphicAnnotationSequence[0].TextObjectSequence[0].UnformattedTextValue == "ANONYMIZED"


def test_private_overlay_and_curve_groups_removed() -> None:
    out, _ = deidentify(rich_dataset(), options())
    assert not [e.tag for e in out if e.tag.group & 1]
    assert not [e.tag for e in out if (e.tag.group & 0xFF00) in (0x5000, 0x6000)]


@pytest.fixture(scope="module")
def every_row() -> tuple[Dataset, dict[int, Rule]]:
    """One element for every tagged row of Table E.1-1 (and the supplementary rows)."""
    ds = Dataset()
    rows = {**TABLE, **SUPPLEMENTARY}
    for i, (tag, _rule) in enumerate(sorted(rows.items())):
        if tag >> 16 == 0x0002:
            continue  # file meta: checked separately
        vr = dictionary_VR(tag).split(" or ")[0]
        ds.add_new(tag, vr, _sample(vr, i))
    ds.PatientID, ds.PatientName = "ROWS-PATIENT", "Rows^Patient"
    return ds, rows


def _sample(vr: str, i: int) -> Any:
    if vr == "SQ":
        return Sequence([_item(CodeValue=f"C{i}", CodingSchemeDesignator="99X", CodeMeaning="secret meaning",
                               ReferencedSOPInstanceUID=f"1.2.826.0.1.3680043.2.1125.77.{i}")])
    samples = {"UI": f"1.2.826.0.1.3680043.2.1125.{i}", "DA": "20210315", "DT": "20210315101112",
               "TM": "101112", "PN": "Hidden^Someone", "AS": "045Y", "CS": "SECRET", "DS": "12.5",
               "IS": "42", "FL": 1.5, "FD": 1.5, "AT": 0x00100010}
    if vr in samples:
        return samples[vr]
    if vr in ("US", "SS", "UL", "SL", "UV", "SV"):
        return 7
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return b"SECRET!!"
    if vr == "UR":
        return f"http://example.org/{i}"
    return f"<text-{i:04d}>"  # unique, so no row's value is another row's identifier


def test_every_table_row_gets_its_basic_action(every_row: tuple[Dataset, dict[int, Rule]]) -> None:
    ds, rows = every_row
    assert len(TABLE) >= 600  # the whole 2024b table, not a sample
    out, _ = deidentify(ds, options())
    problems = {}
    for elem in ds:
        rule = rows[int(elem.tag)]
        why = conforms(rule.basic, elem, out)
        if why:
            problems[f"{elem.tag} {keyword_for_tag(elem.tag)} {rule.basic}"] = why
    assert not problems


@pytest.mark.parametrize("flag,column", [
    ("retain_uids", "uids"),
    ("retain_device_identity", "device"),
    ("retain_institution_identity", "institution"),
    ("retain_patient_characteristics", "patient_chars"),
    ("retain_long_full_dates", "full_dates"),
    ("retain_long_modified_dates", "modified_dates"),
    ("clean_descriptors", "clean_descriptors"),
    ("clean_structured_content", "clean_structured"),
    ("clean_graphics", "clean_graphics"),
])
def test_every_table_row_gets_its_option_action(
    every_row: tuple[Dataset, dict[int, Rule]], flag: str, column: str
) -> None:
    ds, rows = every_row
    kw: dict[str, Any] = {flag: True}
    if flag == "retain_long_modified_dates":
        kw = {"modified_dates_shift_days": -10}
    out, _ = deidentify(ds, options(**kw))
    checked, problems = 0, {}
    for elem in ds:
        action = getattr(rows[int(elem.tag)], column)
        if not action:
            continue
        checked += 1
        name = f"{elem.tag} {keyword_for_tag(elem.tag)} {action}"
        if action == "K":
            why = conforms("K", elem, out)
        elif action == "X":
            why = conforms("X", elem, out)
        elif column == "modified_dates":  # C: dates moved by the shift, times unchanged
            expected = {"DA": "20210305", "DT": "20210305101112"}.get(elem.VR, elem.value)
            why = None if elem.tag in out and out[elem.tag].value == expected else f"got {out.get(elem.tag)}"
        else:  # C: kept and cleaned; the sample text holds no identifier, so it stays
            why = None if elem.tag in out and (elem.VR == "SQ" or out[elem.tag].value == elem.value) else "not kept"
        if why:
            problems[name] = why
    assert checked and not problems


# --------------------------------------------------------------------------------------------
# Each option on the rich data set
# --------------------------------------------------------------------------------------------


def test_retain_patient_characteristics() -> None:
    ds = rich_dataset()
    base, _ = deidentify(ds, options())
    out, _ = deidentify(ds, options(retain_patient_characteristics=True))
    for keyword in ("PatientSex", "PatientAge", "PatientWeight", "PatientSize", "EthnicGroup", "SmokingStatus"):
        assert out[keyword].value == ds[keyword].value, keyword
    assert "PatientAge" not in base and base.PatientSex == ""
    assert out.Allergies == "penicillin, noted for"  # C: cleaned of the patient's name
    assert out.PatientBirthDate == ""  # no option keeps the birth date
    assert "113108" in _codes(out)


def test_retain_device_and_institution_identity() -> None:
    ds = rich_dataset()
    out, _ = deidentify(ds, options(retain_device_identity=True))
    assert (out.StationName, out.DeviceSerialNumber) == (STATION, SERIAL)
    assert out.InstitutionName == "ANONYMIZED"
    out, _ = deidentify(ds, options(retain_institution_identity=True))
    assert out.InstitutionName == INSTITUTION and out.InstitutionAddress == "1 Hospital Road"
    assert out.InstitutionCodeSequence[0].CodeMeaning == INSTITUTION
    assert out.StationName == "ANONYMIZED"
    assert {"113112"} <= _codes(out)


def test_retain_uids() -> None:
    ds = rich_dataset()
    out, mapping = deidentify(ds, options(retain_uids=True))
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert out[keyword].value == ds[keyword].value
    assert out.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SOPInstanceUID not in mapping and "113110" in _codes(out)


def test_retain_full_dates() -> None:
    ds = rich_dataset()
    out, _ = deidentify(ds, options(retain_long_full_dates=True))
    for keyword in ("StudyDate", "StudyTime", "ContentDate", "AcquisitionDateTime", "SeriesDate"):
        assert out[keyword].value == ds[keyword].value
    assert out.PatientBirthDate == ""
    assert out.LongitudinalTemporalInformationModified == "UNMODIFIED" and "113106" in _codes(out)


def test_modified_dates_keep_intervals() -> None:
    ds = rich_dataset()
    out, _ = deidentify(ds, options(modified_dates_shift_days=-100))
    assert out.StudyDate == "20230924"  # 2024-01-02 minus 100 days
    assert out.ContentDate == "20230927"
    assert out.StudyTime == ds.StudyTime  # a whole-day shift leaves times alone
    assert out.AcquisitionDateTime == "20230924101501.123456+0100"
    nested = out.RequestAttributesSequence if "RequestAttributesSequence" in out else None
    assert nested is None  # still removed: no option keeps it
    assert out.VerifyingObserverSequence[0].VerificationDateTime == "20230927120000"
    assert out.PatientBirthDate == ""
    assert out.LongitudinalTemporalInformationModified == "MODIFIED" and "113107" in _codes(out)


def test_derived_date_shift_is_per_patient_and_keeps_intervals() -> None:
    first = rich_dataset()
    later = rich_dataset()
    later.StudyDate, later.ContentDate = "20240402", "20240403"
    opts = options(retain_long_modified_dates=True)
    a, _ = deidentify(first, opts)
    b, _ = deidentify(later, options(retain_long_modified_dates=True))

    def day(value: object) -> dt.date:
        return dt.datetime.strptime(str(value), "%Y%m%d").date()

    assert day(b.StudyDate) - day(a.StudyDate) == day(later.StudyDate) - day(first.StudyDate)
    shift = (day(a.StudyDate) - day(first.StudyDate)).days
    assert -3650 <= shift <= -1
    other = rich_dataset()
    other.PatientID = "SOMEONE-ELSE"
    c, _ = deidentify(other, opts)
    assert c.StudyDate != a.StudyDate  # another patient, another shift (probability ~1/3650)


def test_clean_descriptors_keeps_text_without_identifiers() -> None:
    ds = rich_dataset()
    out, _ = deidentify(ds, options(clean_descriptors=True))
    assert out.StudyDescription == "CT chest for"
    assert out.SeriesDescription == "Thorax"
    assert out.ImageComments == "follow-up of"
    assert out.ProtocolName == "Chest routine"
    request = out.RequestAttributesSequence[0]  # C: kept and cleaned, its own rows applied
    assert "RequestedProcedureID" not in request and "ScheduledProcedureStepID" not in request
    assert request.AccessionNumber == ""
    assert request.ReasonForTheRequestedProcedure == "cough"
    assert "ScheduledProcedureStepStartDate" not in request  # X, no date option chosen
    assert request.ReferencedStudySequence == Sequence()  # X/Z
    assert out.ContrastBolusAgent == "Iohexol" and "113105" in _codes(out)
    assert not leftover_phi(out, PHI_TERMS)


def test_clean_structured_content_and_graphics() -> None:
    ds = rich_dataset()
    out, _ = deidentify(ds, options(clean_structured_content=True))
    assert out.ContentSequence[0].TextValue == "Seen with; patient, nodule 4 mm"
    assert "113104" in _codes(out)
    out, _ = deidentify(ds, options(clean_graphics=True, pixel_regions=[(0, 0, 16, 8)]))
    assert out.GraphicAnnotationSequence[0].TextObjectSequence[0].UnformattedTextValue == ""
    overlay = out.overlay_array(0x6000)
    assert not overlay[:8, :16].any() and overlay[8:, :].all() and overlay[:, 16:].all()
    assert out[0x60004000].value == "drawn by"
    assert 0x50000005 not in out  # curves go even under Clean Graphics
    assert {"113103", "113101"} <= _codes(out)
    assert not leftover_phi(out, PHI_TERMS)


def test_retain_safe_private() -> None:
    out, _ = deidentify(rich_dataset(), options(retain_safe_private=True))
    private = {int(e.tag): e.value for e in out if e.tag.group & 1}
    assert private == {0x00190010: "SIEMENS MR HEADER", 0x0019100C: "1000"}
    assert (0x0019, "SIEMENS MR HEADER") in SAFE_PRIVATE and "113111" in _codes(out)


def test_method_codes_and_markers() -> None:
    out, _ = deidentify(rich_dataset(), options())
    assert [(i.CodeValue, i.CodingSchemeDesignator) for i in out.DeidentificationMethodCodeSequence] == [
        ("113100", "DCM")
    ]
    assert out.DeidentificationMethod == "Basic Application Confidentiality Profile"
    everything = options(
        retain_safe_private=True, retain_uids=True, retain_device_identity=True,
        retain_institution_identity=True, retain_patient_characteristics=True,
        retain_long_modified_dates=True, clean_descriptors=True, clean_structured_content=True,
        clean_graphics=True, pixel_regions=[(0, 0, 4, 4)],
    )
    out, _ = deidentify(rich_dataset(), everything)
    assert _codes(out) == {f"1131{n:02d}" for n in (0, 1, 3, 4, 5, 7, 8, 9, 10, 11, 12)}
    assert all(len(v) <= 64 for v in out.DeidentificationMethod)


def _codes(ds: Dataset) -> set[str]:
    return {str(i.CodeValue) for i in ds.DeidentificationMethodCodeSequence}


# --------------------------------------------------------------------------------------------
# UIDs and pseudonyms
# --------------------------------------------------------------------------------------------


def test_uids_remapped_consistently_across_a_study() -> None:
    first = rich_dataset(index=0)
    second = rich_dataset(index=1, other_sop=str(first.SOPInstanceUID))
    assert first.SOPInstanceUID != second.SOPInstanceUID
    a, map_a = deidentify(first, options())
    b, map_b = deidentify(second, DeidOptions(uid_salt=SALT))  # another run, same secret
    assert a.StudyInstanceUID == b.StudyInstanceUID != first.StudyInstanceUID
    assert a.SeriesInstanceUID == b.SeriesInstanceUID
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID
    assert b.ReferencedImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert b.SourceImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert b.ReferencedImageSequence[0].ReferencedSOPClassUID == first.SOPClassUID
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    for uid in (a.SOPInstanceUID, a.StudyInstanceUID, b.SOPInstanceUID):
        assert UID_RE.match(uid) and len(uid) <= 64
    assert map_a[first.SOPInstanceUID] == a.SOPInstanceUID
    assert map_b[first.SOPInstanceUID] == a.SOPInstanceUID == remap_uid(first.SOPInstanceUID, SALT)
    c, _ = deidentify(first, DeidOptions(uid_salt=b"another-secret-salt-0123456789"))
    assert c.SOPInstanceUID != a.SOPInstanceUID and c.StudyInstanceUID != a.StudyInstanceUID
    assert DeidOptions().uid_salt != DeidOptions().uid_salt  # random by default


def test_patient_pseudonyms() -> None:
    out, mapping = deidentify(rich_dataset(), options())
    assert out.PatientID == str(out.PatientName) == mapping[PATIENT_ID] == mapping[NAME]
    assert re.fullmatch(r"ANON[0-9A-F]{16}", out.PatientID)
    again, _ = deidentify(rich_dataset(index=3), options())
    assert again.PatientID == out.PatientID  # same patient, same pseudonym
    named, mapping = deidentify(rich_dataset(), options(patient_pseudonym=lambda pid: f"SUBJ-{pid[-3:]}"))
    assert named.PatientID == "SUBJ-623" and mapping[PATIENT_ID] == "SUBJ-623"
    with pytest.raises(ValueError, match="patient_pseudonym"):
        deidentify(rich_dataset(), options(patient_pseudonym=lambda pid: ""))


# --------------------------------------------------------------------------------------------
# Leftover PHI, input untouched, Part-10 output
# --------------------------------------------------------------------------------------------


def test_no_identifying_value_survives_anywhere() -> None:
    ds = rich_dataset(other_sop="1.2.826.0.1.3680043.2.1125.5.5")
    assert len(leftover_phi(ds, PHI_TERMS)) > 20  # the scan does find them in the input
    for opts in (options(), options(clean_descriptors=True, clean_structured_content=True,
                                    clean_graphics=True, retain_safe_private=True)):
        out, _ = deidentify(ds, opts)
        assert leftover_phi(out, PHI_TERMS) == []
        assert find_identifiers(out, identifiers_of(ds)) == []
        uids = {str(e.value) for _p, e in walk(ds) if e.VR == "UI" and "1.2.826.0.1.3680043.2.1125" in str(e.value)}
        assert uids and not leftover_phi(out, sorted(uids))


def test_input_is_untouched_and_part10_has_a_zero_preamble(tmp_path: Path) -> None:
    ds = rich_dataset()
    path = tmp_path / "in.dcm"
    ds.save_as(path, enforce_file_format=True)
    raw = bytearray(path.read_bytes())
    raw[:128] = b"MZ" + b"\x90" * 126  # an executable-looking preamble
    path.write_bytes(bytes(raw))
    src = dcmread(path)
    before = copy.deepcopy(src)
    out, _ = deidentify(src, options())
    assert src == before and src.preamble == before.preamble
    assert out.preamble == b"\0" * 128
    data = to_part10(out)
    assert data[:128] == b"\0" * 128 and data[128:132] == b"DICM"
    back = dcmread(io.BytesIO(data))
    assert back.SOPInstanceUID == out.SOPInstanceUID == back.file_meta.MediaStorageSOPInstanceUID
    assert back.PatientIdentityRemoved == "YES"


# --------------------------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------------------------


def _region_check(before: np.ndarray, after: np.ndarray, x: int, y: int, w: int, h: int) -> None:
    """``after`` is ``before`` with the (grey-scale) region x, y, w, h set to zero, nothing else."""
    assert after.shape == before.shape
    assert (after[..., y:y + h, x:x + w] == 0).all()
    expected = before.copy()
    expected[..., y:y + h, x:x + w] = 0
    np.testing.assert_array_equal(after, expected)


def test_pixel_regions_zero_exactly_the_region() -> None:
    ds = rich_dataset()
    before = ds.pixel_array.copy()
    assert (before[10:18, 5:25] != 0).all()  # the phantom is not zero there
    out, _ = deidentify(ds, options(pixel_regions=[(5, 10, 20, 8)]))
    _region_check(before, out.pixel_array, 5, 10, 20, 8)
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert "113101" in _codes(out)


def test_pixel_regions_in_every_frame_of_rgb_multiframe() -> None:
    ds = make_dataset("US", seed=3, rows=48, cols=64, n_frames=4)
    before = ds.pixel_array.copy()
    out, _ = deidentify(ds, options(pixel_regions=[(40, 0, 100, 6)]))  # clipped at the right edge
    after = out.pixel_array
    assert after.shape == before.shape == (4, 48, 64, 3)
    assert (after[:, 0:6, 40:64, :] == 0).all()
    expected = before.copy()
    expected[:, 0:6, 40:64, :] = 0
    np.testing.assert_array_equal(after, expected)


def test_monochrome1_region_becomes_black() -> None:
    ds = make_dataset("CR", seed=5, rows=64, cols=64, photometric="MONOCHROME1")
    out, _ = deidentify(ds, options(pixel_regions=[(0, 0, 8, 8)]))
    assert (out.pixel_array[:8, :8] == (1 << int(ds.BitsStored)) - 1).all()


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm"])
def test_pydicom_files_native_and_compressed(name: str) -> None:
    ds = dcmread(pydicom_test_file(name))
    syntax = ds.file_meta.TransferSyntaxUID
    assert (syntax == RLELossless) == (name == "MR_small_RLE.dcm")
    before = ds.pixel_array.copy()
    out, _ = deidentify(ds, options(pixel_regions=[(3, 4, 30, 12)]))
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert not out["PixelData"].is_undefined_length
    _region_check(before, out.pixel_array, 3, 4, 30, 12)
    back = dcmread(io.BytesIO(to_part10(out)))
    _region_check(before, back.pixel_array, 3, 4, 30, 12)
    assert ds.file_meta.TransferSyntaxUID == syntax  # the input is untouched


def test_burned_in_annotation_refused_unless_cleaned_or_allowed() -> None:
    ds = rich_dataset()
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(InvalidDicom, match="pixel_regions"):
        deidentify(ds, options())
    kept, _ = deidentify(ds, options(allow_burned_in_annotation=True))
    assert kept.BurnedInAnnotation == "YES" and "113101" not in _codes(kept)
    cleaned, _ = deidentify(ds, options(pixel_regions=[(0, 0, 64, 6)]))
    assert cleaned.BurnedInAnnotation == "NO" and "113101" in _codes(cleaned)


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="exclude each other"):
        options(retain_long_full_dates=True, modified_dates_shift_days=-3)
    with pytest.raises(ValueError, match="full_dates"):
        options(modified_dates_shift_days=0)
    with pytest.raises(ValueError, match="16 secret bytes"):
        DeidOptions(uid_salt=b"short")
    with pytest.raises(ValueError, match="width and height"):
        options(pixel_regions=[(0, 0, 0, 5)])
    assert options(modified_dates_shift_days=5).retain_long_modified_dates
    assert "uid_salt" not in repr(options())


def test_rule_lookup_patterns() -> None:
    assert rule_for(0x00091001) == Rule("X", safe_private="C")
    assert rule_for(0x50023000) == Rule("X", clean_graphics="C")
    assert rule_for(0x60023000) == Rule("X", clean_graphics="C")
    assert rule_for(0x60020010) is None  # overlay rows: not a row of the table
    assert rule_for(0x00080060) is None  # Modality: kept
    assert rule_for(0x00080051) == SUPPLEMENTARY[0x00080051]


# --------------------------------------------------------------------------------------------
# The pseudonym map
# --------------------------------------------------------------------------------------------


def test_pseudonym_map_round_trip_and_tamper_detection(tmp_path: Path) -> None:
    _out, mapping = deidentify(rich_dataset(), options())
    pmap = PseudonymMap()
    pmap.update(mapping)
    pmap.update(mapping)  # idempotent
    key = PseudonymMap.generate_key()
    path = tmp_path / "pseudonyms.bin"
    pmap.save(path, key)
    assert (path.stat().st_mode & 0o777) == 0o600
    blob = path.read_bytes()
    assert PATIENT_ID.encode() not in blob and NAME.encode() not in blob
    loaded = PseudonymMap.load(path, key)
    assert loaded == pmap and len(loaded) == len(mapping)
    assert loaded.get(PATIENT_ID) == mapping[PATIENT_ID]
    assert loaded.original_of(mapping[PATIENT_ID]) in (PATIENT_ID, NAME)
    assert PATIENT_ID not in repr(loaded)

    for i in (0, 9, 25, len(blob) - 1):  # header, nonce, ciphertext, tag
        bad = bytearray(blob)
        bad[i] ^= 0x01
        path.write_bytes(bytes(bad))
        with pytest.raises(StorageError):
            PseudonymMap.load(path, key)
    path.write_bytes(blob[:30])
    with pytest.raises(StorageError):
        PseudonymMap.load(path, key)
    path.write_bytes(blob)
    with pytest.raises(StorageError, match="wrong key"):
        PseudonymMap.load(path, PseudonymMap.generate_key())
    with pytest.raises(ValueError, match="32 bytes"):
        pmap.save(path, b"short")
    with pytest.raises(ValueError, match="already mapped"):
        pmap.add(PATIENT_ID, "SOMETHING-ELSE")
    with pytest.raises(StorageError):
        PseudonymMap.load(tmp_path / "missing.bin", key)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".pseudonyms.")]

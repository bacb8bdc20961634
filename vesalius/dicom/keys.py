"""Query/Retrieve keys per level (PS3.4 C.6.1 Patient Root, C.6.2 Study Root).

Each key names the index column that holds it (if any) so that matching runs in the
database; keys without a column are matched and returned from the stored header JSON.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from vesalius.errors import QueryError


class Level(StrEnum):
    """Query/Retrieve Level (0008,0052) values, PS3.4 C.6."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"

    @property
    def depth(self) -> int:
        return _DEPTH[self]


_DEPTH = {"PATIENT": 0, "STUDY": 1, "SERIES": 2, "IMAGE": 3}


@functools.lru_cache(maxsize=4096)
def tag_of(keyword: str) -> int | None:
    """The tag of a keyword (cached: queries ask for the same few keywords per match)."""
    t = tag_for_keyword(keyword)
    return int(t) if t is not None else None


@dataclass(frozen=True)
class Key:
    """One attribute the index knows at one level."""

    keyword: str
    level: Level
    column: str | None  # attribute name on the level's index table; None: header JSON only
    computed: bool = False  # derived by the archive (counts, ModalitiesInStudy)

    @functools.cached_property
    def tag(self) -> int:
        t = tag_of(self.keyword)
        assert t is not None
        return t

    @functools.cached_property
    def vr(self) -> str:
        return str(dictionary_VR(self.tag))


_P, _ST, _SE, _I = Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE

KEYS: dict[str, Key] = {
    k.keyword: k
    for k in (
        # Patient level (C.6.1.1.2)
        Key("PatientName", _P, "patient_name"),
        Key("PatientID", _P, "patient_id"),
        Key("IssuerOfPatientID", _P, "issuer"),
        Key("PatientBirthDate", _P, "birth_date"),
        Key("PatientSex", _P, "sex"),
        Key("NumberOfPatientRelatedStudies", _P, "num_studies", computed=True),
        Key("NumberOfPatientRelatedSeries", _P, None, computed=True),
        Key("NumberOfPatientRelatedInstances", _P, None, computed=True),
        # Study level (C.6.1.1.3 / C.6.2.1.2)
        Key("StudyInstanceUID", _ST, "study_uid"),
        Key("StudyDate", _ST, "study_date"),
        Key("StudyTime", _ST, "study_time"),
        Key("AccessionNumber", _ST, "accession_number"),
        Key("StudyID", _ST, "study_id"),
        Key("StudyDescription", _ST, "description"),
        Key("ReferringPhysicianName", _ST, "referring_name"),
        Key("ModalitiesInStudy", _ST, "modalities", computed=True),
        Key("SOPClassesInStudy", _ST, None, computed=True),
        Key("NumberOfStudyRelatedSeries", _ST, "num_series", computed=True),
        Key("NumberOfStudyRelatedInstances", _ST, "num_instances", computed=True),
        # Not Q/R keys of PS3.4 C.6; kept per study (first instance) for access scopes
        Key("InstitutionName", _ST, "institution"),
        Key("InstitutionalDepartmentName", _ST, "department"),
        # Series level (C.6.1.1.4)
        Key("SeriesInstanceUID", _SE, "series_uid"),
        Key("Modality", _SE, "modality"),
        Key("SeriesNumber", _SE, "series_number"),
        Key("SeriesDescription", _SE, "description"),
        Key("BodyPartExamined", _SE, "body_part"),
        Key("SeriesDate", _SE, "series_date"),
        Key("SeriesTime", _SE, "series_time"),
        Key("NumberOfSeriesRelatedInstances", _SE, "num_instances", computed=True),
        # Composite object instance level (C.6.1.1.5)
        Key("SOPInstanceUID", _I, "sop_uid"),
        Key("SOPClassUID", _I, "sop_class_uid"),
        Key("InstanceNumber", _I, "instance_number"),
        Key("NumberOfFrames", _I, "number_of_frames"),
        Key("AvailableTransferSyntaxUID", _I, "transfer_syntax", computed=True),
    )
}

#: The unique key of each level (PS3.4 C.6.1.1 / C.6.2.1).
UNIQUE_KEY: dict[Level, str] = {
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.IMAGE: "SOPInstanceUID",
}

#: Keywords that only make sense as part of the query/response envelope.
ENVELOPE = frozenset({"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle",
                      "InstanceAvailability", "TimezoneOffsetFromUTC", "QueryRetrieveView"})

#: Default attributes returned at each level when the client asks for no others
#: (the keys of PS3.4 C.6 and the QIDO-RS defaults of PS3.18 Table 10.6.3-3).
DEFAULT_RETURN: dict[Level, tuple[str, ...]] = {
    Level.PATIENT: ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
                    "NumberOfPatientRelatedStudies"),
    Level.STUDY: ("StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy",
                  "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                  "StudyInstanceUID", "StudyID", "StudyDescription", "NumberOfStudyRelatedSeries",
                  "NumberOfStudyRelatedInstances"),
    Level.SERIES: ("Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription",
                   "NumberOfSeriesRelatedInstances", "BodyPartExamined"),
    Level.IMAGE: ("SOPClassUID", "SOPInstanceUID", "InstanceNumber", "NumberOfFrames", "Rows", "Columns",
                  "BitsAllocated"),
}


def level_of_identifier(identifier: Any) -> Level:
    """The Query/Retrieve Level (0008,0052) of a C-FIND/C-MOVE/C-GET identifier."""
    lv = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    try:
        return Level(lv)
    except ValueError:
        raise QueryError(f"QueryRetrieveLevel {lv!r} is not PATIENT, STUDY, SERIES or IMAGE") from None


def level_of(keyword: str) -> Level:
    """The level an attribute belongs to; attributes the index does not know are IMAGE-level
    for instance queries and taken from a representative instance at higher levels."""
    k = KEYS.get(keyword)
    return k.level if k else Level.IMAGE


def keyword_of(tag: int) -> str:
    """The keyword of a tag ('' for private or unknown tags)."""
    return keyword_for_tag(tag) or ""

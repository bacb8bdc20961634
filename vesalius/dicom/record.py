"""What the index keeps of one instance: query keys, identity and the header as DICOM JSON.

The header is the PS3.18 Annex F JSON model of the whole data set, with bulk data (pixel
data and other large binary values) replaced by a ``BulkDataURI`` placeholder that the web
layer resolves, compressed with zlib.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from vesalius.dicom.matching import normalize_name, pn_groups

#: Binary values longer than this are bulk data (PS3.18 8.6.1.1; Orthanc uses 1 KiB too).
BULK_THRESHOLD = 1024
BULK_PLACEHOLDER = "bulk:"  # + tag as 8 hex digits; see vesalius.web for the real URI
_BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})


@dataclass
class InstanceRecord:
    """Everything the index stores for one instance."""

    sop_uid: str
    sop_class_uid: str
    series_uid: str
    study_uid: str
    transfer_syntax: str
    blob_key: str
    size: int
    source_ae: str
    # patient
    patient_id: str
    issuer: str
    patient_name: str
    birth_date: str
    sex: str
    # study
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    study_description: str
    referring_name: str
    institution: str
    department: str
    # series
    modality: str
    series_number: int | None
    series_description: str
    body_part: str
    series_date: str
    series_time: str
    # instance
    instance_number: int | None
    number_of_frames: int | None
    charset: str
    header: bytes  # zlib(JSON)

    @property
    def pn_parts(self) -> tuple[str, str, str]:
        a, i, p = pn_groups(self.patient_name)[:3]
        return normalize_name(a), i, p


def _s(ds: Dataset, kw: str, limit: int = 0) -> str:
    try:
        v = ds.get(kw)
    except Exception:
        return ""
    if v is None:
        return ""
    text = str(v).replace("\0", "").strip()
    return text[:limit] if limit else text


def _i(ds: Dataset, kw: str) -> int | None:
    try:
        v = ds.get(kw)
        if v is None or v == "":
            return None
        return int(v)
    except Exception:
        return None


def _bulk_handler(elem: DataElement) -> str:
    return f"{BULK_PLACEHOLDER}{int(elem.tag):08X}"


def header_json(ds: Dataset) -> dict[str, Any]:
    """The data set as DICOM JSON (PS3.18 F.2) without bulk data and without file meta."""
    out: dict[str, Any] = {}
    for elem in ds:
        tag = int(elem.tag)
        if tag >> 16 == 0x0002:
            continue
        try:
            if tag in (0x7FE00010, 0x7FE00008, 0x7FE00009) or (
                elem.VR in _BULK_VRS and elem.value is not None and len(elem.value) > BULK_THRESHOLD
            ):
                out[f"{tag:08X}"] = {"vr": elem.VR if elem.VR in _BULK_VRS else "OB",
                                     "BulkDataURI": _bulk_handler(elem)}
                continue
            out[f"{tag:08X}"] = elem.to_json_dict(bulk_data_element_handler=_bulk_handler,
                                                  bulk_data_threshold=BULK_THRESHOLD)
        except Exception:
            # A value pydicom cannot convert is kept out of the JSON rather than refusing
            # the object; the stored file still holds it byte-exact.
            continue
    return out


def encode_header(doc: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode(), 1)


def decode_header(blob: bytes) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(zlib.decompress(blob))
    return result


def make_record(ds: Dataset, *, sop_uid: str, sop_class: str, study_uid: str, series_uid: str,
                transfer_syntax: str, blob_key: str, size: int, source_ae: str) -> InstanceRecord:
    """Build the index record of a parsed, validated instance."""
    charset = ds.get("SpecificCharacterSet", "")
    if not isinstance(charset, str):
        charset = "\\".join(str(c) for c in charset)
    return InstanceRecord(
        sop_uid=sop_uid,
        sop_class_uid=sop_class,
        series_uid=series_uid,
        study_uid=study_uid,
        transfer_syntax=transfer_syntax,
        blob_key=blob_key,
        size=size,
        source_ae=source_ae[:16],
        patient_id=_s(ds, "PatientID", 64),
        issuer=_s(ds, "IssuerOfPatientID", 64),
        patient_name=_s(ds, "PatientName", 324),
        birth_date=_s(ds, "PatientBirthDate", 8),
        sex=_s(ds, "PatientSex", 16),
        study_date=_s(ds, "StudyDate", 8),
        study_time=_s(ds, "StudyTime", 16),
        accession_number=_s(ds, "AccessionNumber", 64),
        study_id=_s(ds, "StudyID", 64),
        study_description=_s(ds, "StudyDescription", 256),
        referring_name=_s(ds, "ReferringPhysicianName", 324),
        institution=_s(ds, "InstitutionName", 64),
        department=_s(ds, "InstitutionalDepartmentName", 64),
        modality=_s(ds, "Modality", 16),
        series_number=_i(ds, "SeriesNumber"),
        series_description=_s(ds, "SeriesDescription", 256),
        body_part=_s(ds, "BodyPartExamined", 64),
        series_date=_s(ds, "SeriesDate", 8),
        series_time=_s(ds, "SeriesTime", 16),
        instance_number=_i(ds, "InstanceNumber"),
        number_of_frames=_i(ds, "NumberOfFrames"),
        charset=str(charset)[:128],
        header=encode_header(header_json(ds)),
    )

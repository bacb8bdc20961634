"""Small in-memory DICOM objects for unit tests (realistic headers, noisy pixels)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

_counter = [0]


def uid(*parts: object) -> str:
    return str(generate_uid(entropy_srcs=[str(p) for p in parts]))


def instance(study: str = "S1", series: str = "SE1", n: int = 1, *, patient_id: str = "PID1",
             patient_name: str = "DOE^JANE", study_date: str = "20240115", modality: str = "CT",
             seed: int = 0, rows: int = 32, **extra: Any) -> bytes:
    """A CT-like Part-10 object; UIDs derive from the given names so tests can refer to them."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = uid(study, series, n)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = uid(study)
    ds.SeriesInstanceUID = uid(study, series)
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = f"ACC-{study}"
    ds.StudyID = "1"
    ds.StudyDescription = "CHEST CT"
    ds.ReferringPhysicianName = "HOUSE^GREGORY"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.SeriesDescription = f"AXIAL {series}"
    ds.BodyPartExamined = "CHEST"
    ds.InstanceNumber = n
    ds.Rows = rows
    ds.Columns = rows
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    for k, v in extra.items():
        setattr(ds, k, v)
    rng = np.random.default_rng(seed * 1000 + n)
    ds.PixelData = (rng.normal(1000, 40, (rows, rows)).clip(0, 4095)).astype(np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()

"""The header kept in the index: every element as DICOM JSON, bulk data as a placeholder."""

from __future__ import annotations

from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.dicomgen import pydicom_test_file
from vesalius.dicom.record import decode_header, encode_header, header_json


def test_every_element_is_kept_and_bulk_data_left_out() -> None:
    ds = dcmread(pydicom_test_file("CT_small.dcm"))
    doc = header_json(ds)
    assert {f"{int(e.tag):08X}" for e in ds} == set(doc)
    assert doc["7FE00010"] == {"vr": "OW", "BulkDataURI": "bulk:7FE00010"}
    back = Dataset.from_json({k: v for k, v in doc.items() if "BulkDataURI" not in v})
    assert back.PatientName == ds.PatientName and back.ImagePositionPatient == ds.ImagePositionPatient
    assert decode_header(encode_header(doc)) == doc


def test_large_binary_values_become_bulk_data() -> None:
    ds = Dataset()
    ds.PatientName = "A^B"
    ds.add_new(0x00091010, "OB", b"\x01" * 4096)  # private, large
    ds.add_new(0x00091011, "OB", b"\x02" * 16)  # private, small: inline
    doc = header_json(ds)
    assert doc["00091010"] == {"vr": "OB", "BulkDataURI": "bulk:00091010"}
    assert "InlineBinary" in doc["00091011"]

"""The DICOM domain, on pydicom: parsing and validation, query keys and matching, JSON, transcoding."""

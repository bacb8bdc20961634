"""Vesalius: an open-source medical imaging platform (DICOM archive, DICOMweb, viewer, AI)."""

__version__ = "0.1.0"

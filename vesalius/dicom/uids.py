"""UIDs and transfer syntaxes (PS3.5 Section 9 and Annex A, PS3.6 Annex A)."""

from __future__ import annotations

import re

from pydicom import uid as pduid

# PS3.5 9.1: components of digits separated by '.', no leading zero in a multi-digit
# component, at most 64 characters. Many modalities emit leading zeros, so ingest accepts
# them (lenient) but never anything other than digits and dots.
_STRICT_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_LENIENT_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_valid_uid(value: object, strict: bool = False) -> bool:
    """True if ``value`` is a UID we accept (PS3.5 9.1; lenient about leading zeros)."""
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        return False
    return bool((_STRICT_UID if strict else _LENIENT_UID).match(value))


IMPLICIT_VR_LE = pduid.ImplicitVRLittleEndian
EXPLICIT_VR_LE = pduid.ExplicitVRLittleEndian
EXPLICIT_VR_BE = pduid.ExplicitVRBigEndian
DEFLATED_LE = pduid.DeflatedExplicitVRLittleEndian

UNCOMPRESSED = frozenset({IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE, DEFLATED_LE})

#: Every transfer syntax the archive accepts on C-STORE (PS3.5 Annex A, PS3.6 Annex A):
#: native, deflate, JPEG family, JPEG-LS, JPEG 2000 (+ HTJ2K), RLE, MPEG-2/4, H.264, HEVC.
STORAGE_TRANSFER_SYNTAXES: tuple[str, ...] = (
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    DEFLATED_LE,
    "1.2.840.10008.1.2.1.98",  # Encapsulated Uncompressed Explicit VR Little Endian
    pduid.JPEGBaseline8Bit,
    pduid.JPEGExtended12Bit,
    pduid.JPEGLossless,
    pduid.JPEGLosslessSV1,
    pduid.JPEGLSLossless,
    pduid.JPEGLSNearLossless,
    pduid.JPEG2000Lossless,
    pduid.JPEG2000,
    "1.2.840.10008.1.2.4.92",  # JPEG 2000 Part 2 Multi-component Lossless
    "1.2.840.10008.1.2.4.93",  # JPEG 2000 Part 2 Multi-component
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    pduid.RLELossless,
    "1.2.840.10008.1.2.4.100",  # MPEG2 MP@ML
    "1.2.840.10008.1.2.4.100.1",  # MPEG2 MP@ML SV
    "1.2.840.10008.1.2.4.101",  # MPEG2 MP@HL
    "1.2.840.10008.1.2.4.101.1",
    "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC/H.264 HP@4.1
    "1.2.840.10008.1.2.4.102.1",
    "1.2.840.10008.1.2.4.103",  # MPEG-4 AVC/H.264 BD-compatible HP@4.1
    "1.2.840.10008.1.2.4.103.1",
    "1.2.840.10008.1.2.4.104",  # MPEG-4 AVC/H.264 HP@4.2 2D
    "1.2.840.10008.1.2.4.104.1",
    "1.2.840.10008.1.2.4.105",  # MPEG-4 AVC/H.264 HP@4.2 3D
    "1.2.840.10008.1.2.4.105.1",
    "1.2.840.10008.1.2.4.106",  # MPEG-4 AVC/H.264 Stereo HP@4.2
    "1.2.840.10008.1.2.4.106.1",
    "1.2.840.10008.1.2.4.107",  # HEVC/H.265 Main
    "1.2.840.10008.1.2.4.108",  # HEVC/H.265 Main 10
)


def is_lossy(ts: str) -> bool:
    """True for transfer syntaxes whose pixel data may be lossy (PS3.5 Section 8.2)."""
    lossless = {
        pduid.JPEGLossless,
        pduid.JPEGLosslessSV1,
        pduid.JPEGLSLossless,
        pduid.JPEG2000Lossless,
        "1.2.840.10008.1.2.4.92",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
        pduid.RLELossless,
    }
    return ts not in UNCOMPRESSED and ts not in lossless and ts != "1.2.840.10008.1.2.1.98"

# SOP classes of the services the archive offers (PS3.4, PS3.6 Annex A).
VERIFICATION = "1.2.840.10008.1.1"
STORAGE_COMMITMENT_PUSH = "1.2.840.10008.1.20.1"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PATIENT_ROOT_MODELS = frozenset({PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET})
STUDY_ROOT_MODELS = frozenset({STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET})

"""De-identification: PS3.15 Annex E, Basic Application Level Confidentiality Profile and options.

:func:`deidentify` returns a de-identified copy of a data set and the pseudonyms it made. It
applies the action of every attribute of PS3.15 Table E.1-1 (:mod:`vesalius.dicom.deid_table`)
at any depth of nesting, with the options of PS3.15 E.3 chosen in :class:`DeidOptions`:

==========================================  ======  ==================================================
option (PS3.15 E.3)                         code    what it does here
==========================================  ======  ==================================================
Basic Profile (E.2)                         113100  always: every row's basic action
Clean Pixel Data (E.3.1)                    113101  ``pixel_regions``: rectangles blacked out in every
                                                    frame (compressed data decoded, stored native)
Clean Graphics (E.3.3)                      113103  graphic annotation text kept, cleaned; overlay
                                                    planes kept, with ``pixel_regions`` cleared in them
Clean Structured Content (E.3.4)            113104  SR content kept, text cleaned instead of replaced
Clean Descriptors (E.3.5)                   113105  descriptions kept, cleaned
Retain Longitudinal, Full Dates (E.3.6)     113106  dates and times kept
Retain Longitudinal, Modified Dates (E.3.6) 113107  dates shifted by a whole number of days
Retain Patient Characteristics (E.3.7)      113108  sex, age, size, weight, ethnic group... kept
Retain Device Identity (E.3.8)              113109  serial numbers, station names... kept
Retain UIDs (E.3.9)                         113110  UIDs kept
Retain Safe Private (E.3.10)                113111  an allow-list of private attributes kept
Retain Institution Identity (E.3.12)        113112  institution name, address, department kept
==========================================  ======  ==================================================

How each action is carried out (the way dcm4che's ``DeIdentifier`` and CTP resolve them):

- **X** removes; **Z** empties (a sequence becomes empty); **K** keeps (a kept sequence is still
  walked, so nested rows apply); **U** maps every UID through HMAC-SHA256 keyed with
  ``uid_salt`` to ``2.25.<128-bit integer>`` (PS3.5 B.2), so the same UID becomes the same new
  UID in every object, study and run that uses the same secret, and references
  (Referenced SOP Instance UID...) stay consistent with the objects they point to.
- **D** puts a dummy value of the VR (``ANONYMIZED``, ``19000101``, ``0``...); a D sequence is
  kept and walked, and free text in it (Text Value, Unformatted Text Value) is replaced too.
- The conformance-conditional actions keep an element that is present, so an object stays
  valid whatever the IOD makes of it: X/Z -> Z, X/D and X/Z/D and Z/D -> D, X/Z/U* -> the
  sequence is kept and its instance UIDs mapped (U).
- **C** under Retain Longitudinal with Modified Dates shifts DA and DT values (TM values and
  the timezone offset are unchanged by a whole-day shift); every other C "cleans": the text
  is kept with every known identifier of the patient and staff (names and name parts, IDs,
  accession numbers, birth date, addresses, phone numbers, collected from the input) cut out,
  and a cleaned sequence is walked with the same rule for its text.
- Patient ID and Patient's Name (Z/D, Z) get a pseudonym: ``patient_pseudonym(original ID)``
  when given, else ``ANON`` + 16 hex digits of HMAC-SHA256(``uid_salt``, ID), so a patient
  keeps one pseudonym across studies; Patient's Name gets the same pseudonym as the ID.

Beyond the table (documented choices, each erring on the side of removal):

- Private attributes are removed (creators included), except those of the Retain Safe Private
  allow-list (:data:`vesalius.dicom.deid_table.SAFE_PRIVATE`) when that option is chosen;
  private elements without a private creator are always removed.
- Curve groups (50xx) are removed (retired; there is no way to clean them). Overlay Data and
  Overlay Comments are removed as the table says, and with them the rest of that overlay
  plane (60xx): a plane without its Type 1 Overlay Data would make the object invalid.
- DA and DT attributes the table does not list are emptied unless a Retain Longitudinal option
  keeps (or shifts) them; the table's own list of dates is long but not every IOD's.
- Identifying attributes the table misses (Issuer of Accession Number Sequence...) are removed:
  :data:`vesalius.dicom.deid_table.SUPPLEMENTARY`.
- Burned In Annotation (0028,0301) = YES with no ``pixel_regions`` is refused
  (:class:`~vesalius.errors.InvalidDicom`) unless ``allow_burned_in_annotation``; after the
  regions are cleared it becomes NO (the regions are the operator's statement of where the
  modality burns in text).

The result carries Patient Identity Removed (0012,0062) YES, De-identification Method
(0012,0063) and its Code Sequence (0012,0064) with the CID 7050 codes of the profile and each
option used, and Longitudinal Temporal Information Modified (0028,0303) MODIFIED / UNMODIFIED
/ REMOVED. Its file meta has the new Media Storage SOP Instance UID, no source/sending AE
titles or private information, and a zero preamble; :func:`to_part10` writes it.

The pseudonyms (original -> replacement of Patient ID, Patient's Name and every UID) go into
a :class:`PseudonymMap`, which is kept apart from the de-identified data and saved encrypted
(AES-256-GCM) so that authorised staff can re-identify.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import hmac
import io
import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID, ExplicitVRLittleEndian

from vesalius.dicom.deid_table import (
    OPTION_FIELDS,
    SAFE_PRIVATE,
    Rule,
    rule_for,
)
from vesalius.errors import InvalidDicom, StorageError

log = logging.getLogger(__name__)

__all__ = [
    "DeidOptions",
    "PseudonymMap",
    "deidentify",
    "find_identifiers",
    "identifiers_of",
    "method_codes",
    "remap_uid",
    "to_part10",
]

# --------------------------------------------------------------------------------------------
# Options and their codes (PS3.16 CID 7050 De-identification Method)
# --------------------------------------------------------------------------------------------

#: (DeidOptions attribute or "basic"/"clean_pixel", CID 7050 code value, code meaning).
_METHOD_CODES: tuple[tuple[str, str, str], ...] = (
    ("basic", "113100", "Basic Application Confidentiality Profile"),
    ("clean_pixel", "113101", "Clean Pixel Data Option"),
    ("clean_graphics", "113103", "Clean Graphics Option"),
    ("clean_structured_content", "113104", "Clean Structured Content Option"),
    ("clean_descriptors", "113105", "Clean Descriptors Option"),
    ("retain_long_full_dates", "113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    (
        "retain_long_modified_dates",
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    ("retain_patient_characteristics", "113108", "Retain Patient Characteristics Option"),
    ("retain_device_identity", "113109", "Retain Device Identity Option"),
    ("retain_uids", "113110", "Retain UIDs Option"),
    ("retain_safe_private", "113111", "Retain Safe Private Option"),
    ("retain_institution_identity", "113112", "Retain Institution Identity Option"),
)

#: Rule column -> the DeidOptions flag that turns it on.
_OPTION_FLAG: dict[str, str] = {
    "safe_private": "retain_safe_private",
    "uids": "retain_uids",
    "device": "retain_device_identity",
    "institution": "retain_institution_identity",
    "patient_chars": "retain_patient_characteristics",
    "full_dates": "retain_long_full_dates",
    "modified_dates": "retain_long_modified_dates",
    "clean_descriptors": "clean_descriptors",
    "clean_structured": "clean_structured_content",
    "clean_graphics": "clean_graphics",
}
assert set(_OPTION_FLAG) == set(OPTION_FIELDS)


@dataclass
class DeidOptions:
    """What :func:`deidentify` does beyond the Basic Profile (PS3.15 E.3).

    Attributes:
        retain_safe_private: Retain Safe Private Option (keeps the allow-list
            :data:`~vesalius.dicom.deid_table.SAFE_PRIVATE`).
        retain_uids: Retain UIDs Option.
        retain_device_identity: Retain Device Identity Option.
        retain_institution_identity: Retain Institution Identity Option.
        retain_patient_characteristics: Retain Patient Characteristics Option.
        retain_long_full_dates: Retain Longitudinal Temporal Information with Full Dates.
        retain_long_modified_dates: ... with Modified Dates: dates shifted by
            ``modified_dates_shift_days``, or, when that is ``None``, by a per-patient shift of
            1 to 3650 days into the past derived from ``uid_salt`` and the Patient ID (the same
            for every study of the patient, so intervals between studies survive).
        clean_descriptors: Clean Descriptors Option.
        clean_structured_content: Clean Structured Content Option.
        clean_graphics: Clean Graphics Option.
        modified_dates_shift_days: whole days added to every date (negative: into the past);
            setting it turns ``retain_long_modified_dates`` on.
        pixel_regions: Clean Pixel Data Option: (x, y, width, height) rectangles, in pixels
            from the top-left corner, blacked out in every frame (clipped to the image).
        uid_salt: the secret keying the UID and pseudonym HMACs; keep it to get the same UIDs
            and pseudonyms across runs (at least 16 bytes; a fresh random one by default).
        patient_pseudonym: the pseudonym of a Patient ID (called with the original ID, or the
            name when there is no ID); ``None``: ``ANON`` + 16 hex digits of an HMAC.
        allow_burned_in_annotation: accept Burned In Annotation YES without ``pixel_regions``
            (the pixels then still show whatever the modality burned in).
    """

    retain_safe_private: bool = False
    retain_uids: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_patient_characteristics: bool = False
    retain_long_full_dates: bool = False
    retain_long_modified_dates: bool = False
    clean_descriptors: bool = False
    clean_structured_content: bool = False
    clean_graphics: bool = False
    modified_dates_shift_days: int | None = None
    pixel_regions: list[tuple[int, int, int, int]] = field(default_factory=list)
    uid_salt: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    patient_pseudonym: Callable[[str], str] | None = None
    allow_burned_in_annotation: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.uid_salt, bytes) or len(self.uid_salt) < 16:
            raise ValueError("uid_salt must be at least 16 secret bytes (e.g. secrets.token_bytes(32))")
        if self.modified_dates_shift_days is not None:
            if self.modified_dates_shift_days == 0:
                raise ValueError(
                    "modified_dates_shift_days=0 would keep the real dates: use "
                    "retain_long_full_dates=True, or a non-zero shift"
                )
            self.retain_long_modified_dates = True
        if self.retain_long_full_dates and self.retain_long_modified_dates:
            raise ValueError(
                "retain_long_full_dates and retain_long_modified_dates exclude each other: "
                "choose one (a date shift means modified dates)"
            )
        for region in self.pixel_regions:
            if len(region) != 4 or any(not isinstance(v, int) for v in region):
                raise ValueError(f"pixel region {region!r} must be four integers (x, y, width, height)")
            x, y, w, h = region
            if x < 0 or y < 0 or w <= 0 or h <= 0:
                raise ValueError(
                    f"pixel region {region!r}: x and y must be >= 0, width and height > 0"
                )


def method_codes(options: DeidOptions, pixels_cleaned: bool = False) -> list[tuple[str, str]]:
    """The (code value, code meaning) of CID 7050 for the profile and each option used."""
    out = []
    for name, value, meaning in _METHOD_CODES:
        if name == "basic":
            used = True
        elif name == "clean_pixel":
            used = pixels_cleaned
        else:
            used = bool(getattr(options, name))
        if used:
            out.append((value, meaning))
    return out


# --------------------------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------------------------

# Internal actions: X Z D U K, SHIFT (C of the modified-dates option), CLEAN (any other C).
_RANK = {"X": 0, "CLEAN": 1, "SHIFT": 2, "K": 3}
_BASIC = {
    "X": "X",
    "Z": "Z",
    "D": "D",
    "U": "U",
    "Z/D": "D",
    "X/Z": "Z",
    "X/D": "D",
    "X/Z/D": "D",
    "X/Z/U*": "U",
}


def _resolve(rule: Rule, options: DeidOptions) -> str:
    """The one action for ``rule`` under ``options``: the most retaining of the chosen options'
    actions (K > shift > clean), else the basic action resolved as the module docstring says."""
    chosen = ""
    for column in OPTION_FIELDS:
        code = getattr(rule, column)
        if not code or not getattr(options, _OPTION_FLAG[column]):
            continue
        action = code if code != "C" else ("SHIFT" if column == "modified_dates" else "CLEAN")
        if _RANK.get(action, 0) > _RANK.get(chosen, 0):
            chosen = action
    return chosen or _BASIC[rule.basic]


_TEXT_VRS = frozenset({"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"})
_DATE_VRS = frozenset({"DA", "DT"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"})
_DUMMY: dict[str, str] = {
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "AS": "000D",
    "DS": "0",
    "IS": "0",
}
_DUMMY_TEXT = "ANONYMIZED"
#: Free text inside structured content and graphics that the table has no row for.
_FREE_TEXT = frozenset({0x0040A160, 0x00700006})  # Text Value, Unformatted Text Value
#: The text of a coded entry: replaced in the items of a sequence the table replaces (D), so
#: an Institution or Person Identification Code Sequence keeps its shape but not its codes.
_CODE_TEXT = frozenset({0x00080100, 0x00080104, 0x00080119, 0x00080120})
_PATIENT_ID, _PATIENT_NAME = 0x00100020, 0x00100010
_BURNED_IN = 0x00280301


@dataclass
class _Context:
    options: DeidOptions
    pattern: re.Pattern[str] | None  # known identifiers, for cleaning text
    shift_days: int | None
    mapping: dict[str, str] = field(default_factory=dict)
    pseudonyms: dict[str, str] = field(default_factory=dict)

    def digest(self, purpose: str, value: str) -> bytes:
        msg = purpose.encode() + b"\0" + value.encode("utf-8", "surrogateescape")
        return hmac.new(self.options.uid_salt, msg, hashlib.sha256).digest()


def remap_uid(uid: str, salt: bytes) -> str:
    """The replacement of ``uid``: ``2.25.`` + the first 128 bits of HMAC-SHA256(salt, uid)."""
    digest = hmac.new(salt, b"uid\0" + uid.strip().encode(), hashlib.sha256).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def _values(elem: DataElement) -> list[Any]:
    value = elem.value
    if value is None or value == "":
        return []
    if isinstance(value, (MultiValue, list, tuple)):
        return list(value)
    return [value]


def _set_values(elem: DataElement, values: list[Any]) -> None:
    elem.value = values[0] if len(values) == 1 else values


def _map_strings(elem: DataElement, fn: Callable[[str], str]) -> None:
    values = _values(elem)
    if values:
        _set_values(elem, [fn(str(v)) for v in values])


def _empty(elem: DataElement) -> None:
    if elem.VR == "SQ":
        elem.value = Sequence()
    elif elem.VR in _TEXT_VRS or elem.VR in _DUMMY or elem.VR in ("CS", "UI"):
        elem.value = ""
    else:
        elem.value = None


def _dummy_value(vr: str) -> Any:
    if vr in _DUMMY:
        return _DUMMY[vr]
    if vr in _TEXT_VRS or vr == "CS":
        return _DUMMY_TEXT
    if vr in _NUMBER_VRS:
        return 0
    return b"\0\0"


def _shift_date(value: str, days: int) -> str:
    """A DA value (``YYYYMMDD``, legacy ``YYYY.MM.DD``, or a range) moved by ``days``; ``""``
    when it cannot be read."""
    if "-" in value:
        return "-".join(_shift_date(part, days) if part else "" for part in value.split("-"))
    digits = value.strip().replace(".", "")
    try:
        day = _dt.datetime.strptime(digits, "%Y%m%d").date()
        return (day + _dt.timedelta(days=days)).strftime("%Y%m%d")
    except (ValueError, OverflowError):
        return ""


def _shift_datetime(value: str, days: int) -> str:
    """A DT value with its date part moved by ``days``; time, fraction and offset kept.
    Year-only or year-month values cannot be shifted by days and become ``""``."""
    value = value.strip()
    match = re.fullmatch(r"(\d{8})(.*)", value)
    if not match:
        return ""
    shifted = _shift_date(match.group(1), days)
    return shifted + match.group(2) if shifted else ""


def _shift(elem: DataElement, days: int) -> None:
    if elem.VR == "DA":
        _map_strings(elem, lambda v: _shift_date(v, days))
    elif elem.VR == "DT":
        _map_strings(elem, lambda v: _shift_datetime(v, days))


def _clean_text(value: str, pattern: re.Pattern[str] | None) -> str:
    if pattern is None:
        return value
    cleaned = pattern.sub("", value)
    if cleaned == value:
        return value
    cleaned = re.sub(r"[ \t]{2,}", " ", cleaned)
    cleaned = re.sub(r"\^{2,}", "^", re.sub(r"[ \t]+([,;:.])", r"\1", cleaned))
    return cleaned.strip(" ^,;:-")


def _pseudonym(ctx: _Context, original: str) -> str:
    known = ctx.pseudonyms.get(original)
    if known is not None:
        ctx.mapping[original] = known
        return known
    fn = ctx.options.patient_pseudonym
    if fn is not None:
        replacement = fn(original)
        if not isinstance(replacement, str) or not replacement or len(replacement) > 64 or "\\" in replacement:
            raise ValueError(
                f"patient_pseudonym returned {replacement!r}: it must be a non-empty string of at "
                "most 64 characters without backslash (a valid LO value)"
            )
    else:
        replacement = "ANON" + ctx.digest("patient", original).hex()[:16].upper()
    ctx.pseudonyms[original] = replacement
    ctx.mapping[original] = replacement
    return replacement


# --------------------------------------------------------------------------------------------
# The walk
# --------------------------------------------------------------------------------------------


def _strip_private(ds: Dataset, ctx: _Context) -> None:
    """Remove private elements, keeping the safe allow-list under Retain Safe Private."""
    private = [tag for tag in list(ds.keys()) if BaseTag(tag).is_private]
    if not private:
        return
    creators: dict[tuple[int, int], str] = {}
    for tag in private:
        if 0x0010 <= tag.element <= 0x00FF:
            value = ds[tag].value
            if isinstance(value, bytes):
                value = value.decode("latin-1", "replace")
            creators[(tag.group, tag.element)] = str(value or "").strip()
    used: set[tuple[int, int]] = set()
    for tag in private:
        if 0x0010 <= tag.element <= 0x00FF:
            continue
        block = (tag.group, tag.element >> 8)
        creator = creators.get(block) if tag.element >= 0x1000 else None
        allowed = SAFE_PRIVATE.get((tag.group, creator)) if creator else None
        if ctx.options.retain_safe_private and allowed and (tag.element & 0xFF) in allowed:
            used.add(block)
            elem = ds[tag]
            if elem.VR == "SQ":
                for item in elem.value:
                    _walk(item, ctx, None)
        else:
            del ds[tag]
    for block in creators:
        if block not in used:
            del ds[BaseTag((block[0] << 16) | block[1])]


def _walk(ds: Dataset, ctx: _Context, text_mode: str | None) -> None:
    """Apply the table to every element of ``ds`` and, recursively, of its sequences.

    ``text_mode`` says what becomes of text the table has no row for: in the items of a
    sequence the table replaces (``"dummy"``) free text and the text of coded entries get
    dummy values, deeper down (``"dummy-text"``) free text only; in a sequence the table
    cleans (``"clean"``) every text value is cleaned.
    """
    _strip_private(ds, ctx)
    dropped_planes: set[int] = set()
    for tag in list(ds.keys()):
        if tag not in ds:
            continue
        group, element = tag.group, tag.element
        if group & 1:
            continue  # kept safe private, already handled
        if element == 0 and group != 0x0002:
            del ds[tag]  # group length (retired)
            continue
        if 0x5000 <= group <= 0x50FF:
            del ds[tag]  # curves: removed, even under Clean Graphics (nothing cleans them)
            continue
        rule = rule_for(int(tag))
        elem = ds[tag]
        if rule is None:
            _unlisted(ds, elem, ctx, text_mode)
            continue
        action = _resolve(rule, ctx.options)
        if 0x6000 <= group <= 0x60FF and element == 0x3000 and action == "X":
            dropped_planes.add(group)
        _apply(ds, elem, action, ctx, text_mode)
    for group in dropped_planes:
        for tag in [t for t in list(ds.keys()) if t.group == group]:
            del ds[tag]


def _walk_items(elem: DataElement, ctx: _Context, text_mode: str | None) -> None:
    for item in elem.value or []:
        _walk(item, ctx, text_mode)


def _apply(ds: Dataset, elem: DataElement, action: str, ctx: _Context, text_mode: str | None) -> None:
    tag, vr = int(elem.tag), elem.VR
    if action == "X":
        del ds[elem.tag]
    elif tag == _PATIENT_ID and action in ("Z", "D"):
        _map_strings(elem, lambda v: _pseudonym(ctx, v) if v.strip() else v)
    elif tag == _PATIENT_NAME and action in ("Z", "D"):
        ids = [str(v) for v in _values(ds[_PATIENT_ID])] if _PATIENT_ID in ds else []
        original = str(elem.value or "")
        if original.strip() or (ids and ids[0].strip()):
            key = ids[0] if ids and ids[0].strip() else original
            pseudonym = _pseudonym(ctx, key)
            if original.strip():
                ctx.mapping[original] = pseudonym
            elem.value = pseudonym
    elif action == "Z":
        _empty(elem)
    elif action == "D":
        if vr == "SQ":
            _walk_items(elem, ctx, "dummy")
        elif vr == "UI":
            _map_strings(elem, lambda v: _uid(ctx, v))
        else:
            elem.value = _dummy_value(vr)
    elif action == "U":
        if vr == "SQ":
            _walk_items(elem, ctx, text_mode)
        elif vr == "UI":
            _map_strings(elem, lambda v: _uid(ctx, v))
        else:
            elem.value = _dummy_value(vr)
    elif action == "SHIFT":
        if vr == "SQ":
            _walk_items(elem, ctx, text_mode)
        elif vr in _DATE_VRS and ctx.shift_days is not None:
            _shift(elem, ctx.shift_days)
    elif action == "CLEAN":
        if vr == "SQ":
            _walk_items(elem, ctx, "clean")
        elif vr in _TEXT_VRS:
            _map_strings(elem, lambda v: _clean_text(v, ctx.pattern))
    elif vr == "SQ":  # K
        _walk_items(elem, ctx, text_mode)


def _unlisted(ds: Dataset, elem: DataElement, ctx: _Context, text_mode: str | None) -> None:
    vr = elem.VR
    if vr == "SQ":
        _walk_items(elem, ctx, "dummy-text" if text_mode == "dummy" else text_mode)
    elif vr in _DATE_VRS:
        if ctx.options.retain_long_full_dates:
            return
        if ctx.shift_days is not None:
            _shift(elem, ctx.shift_days)
        else:
            _empty(elem)
    elif text_mode in ("dummy", "dummy-text") and _values(elem) and (
        int(elem.tag) in _FREE_TEXT or (text_mode == "dummy" and int(elem.tag) in _CODE_TEXT)
    ):
        elem.value = _DUMMY_TEXT
    elif text_mode == "clean" and vr in _TEXT_VRS:
        _map_strings(elem, lambda v: _clean_text(v, ctx.pattern))


def _uid(ctx: _Context, value: str) -> str:
    value = value.strip("\0 ")
    if not value:
        return value
    new = remap_uid(value, ctx.options.uid_salt)
    ctx.mapping[value] = new
    return new


# --------------------------------------------------------------------------------------------
# Identifiers (for cleaning text, and for checking a result)
# --------------------------------------------------------------------------------------------

#: Attributes whose values identify the patient or staff, looked for at any depth.
_IDENTIFYING = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientBirthDate",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "MedicalRecordLocator",
    "AccessionNumber",
    "AdmissionID",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy",
    "RequestingPhysician",
    "ConsultingPhysicianName",
    "ScheduledPerformingPhysicianName",
    "VerifyingObserverName",
    "PersonName",
    "ContentCreatorName",
    "ResponsiblePerson",
)


def _walk_elements(ds: Dataset) -> Iterator[tuple[str, DataElement]]:
    for elem in ds:
        yield elem.keyword or str(elem.tag), elem
        if elem.VR == "SQ":
            for index, item in enumerate(elem.value or []):
                for path, inner in _walk_elements(item):
                    yield f"{elem.keyword or elem.tag}[{index}].{path}", inner


def identifiers_of(ds: Dataset) -> set[str]:
    """The identifying strings of ``ds`` (any depth): names and their parts of at least three
    letters, IDs, accession number, birth and study dates (also as YYYY-MM-DD), address, phone
    numbers."""
    terms: set[str] = set()
    wanted = set(_IDENTIFYING)
    for _path, elem in _walk_elements(ds):
        if elem.keyword not in wanted:
            continue
        for value in _values(elem):
            text = str(value).strip()
            if not text:
                continue
            terms.add(text)
            if elem.VR == "PN":
                terms.update(p for p in re.split(r"[\^=\s,]+", text) if len(p) >= 3)
                terms.add(text.replace("^", " ").strip())
            if elem.VR == "DA" and re.fullmatch(r"\d{8}", text):
                terms.add(f"{text[:4]}-{text[4:6]}-{text[6:]}")
    return {t for t in terms if len(t) >= 3}


def _pattern(terms: set[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    ordered = sorted(terms, key=len, reverse=True)
    return re.compile("|".join(re.escape(t) for t in ordered), re.IGNORECASE)


def find_identifiers(ds: Dataset, terms: set[str]) -> list[str]:
    """Every ``path: term`` where a text value of ``ds`` (any depth, file meta excluded)
    still contains one of ``terms`` (case-insensitive); empty when the result is clean."""
    pattern = _pattern(terms)
    if pattern is None:
        return []
    found = []
    for path, elem in _walk_elements(ds):
        if elem.VR == "SQ" or int(elem.tag) in _PIXEL_TAGS or (elem.tag.group & 0xFF00) == 0x6000:
            continue
        for value in _values(elem):
            if isinstance(value, (bytes, bytearray)):
                text = bytes(value).decode("latin-1")
            else:
                text = str(value)
            match = pattern.search(text)
            if match:
                found.append(f"{path}: {match.group(0)}")
    return found


# --------------------------------------------------------------------------------------------
# Pixels and overlays
# --------------------------------------------------------------------------------------------

_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float, Double Float


def _clip(region: tuple[int, int, int, int], rows: int, cols: int) -> tuple[slice, slice] | None:
    x, y, w, h = region
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, cols), min(y + h, rows)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


def _clean_pixels(ds: Dataset, regions: list[tuple[int, int, int, int]]) -> bool:
    """Black out ``regions`` in every frame; compressed data is decoded and the result stored
    native in Explicit VR Little Endian. False when there is no pixel data."""
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.pixels.utils import as_pixel_options, pack_bits

    tag = next((t for t in _PIXEL_TAGS if t in ds), None)
    if tag is None:
        return False
    tsyntax = UID(ds.file_meta.TransferSyntaxUID)
    if not tsyntax.is_little_endian:
        raise InvalidDicom(
            f"cannot clean pixel data in {tsyntax.name}: convert the object to Explicit VR "
            "Little Endian first"
        )
    try:
        decoder = get_decoder(tsyntax)
        arr, props = decoder.as_array(ds, **as_pixel_options(ds, as_rgb=True))
    except Exception as exc:  # any decoder failure means we cannot clean this object
        raise InvalidDicom(f"cannot decode the pixel data to clean it ({tsyntax.name}): {exc}") from exc
    if not arr.flags.writeable:
        arr = arr.copy()
    rows, cols = int(ds.Rows), int(ds.Columns)
    samples = int(props.get("samples_per_pixel", ds.get("SamplesPerPixel", 1)) or 1)
    photometric = str(props.get("photometric_interpretation", ds.get("PhotometricInterpretation", "")))
    fill: Any = 0
    if photometric == "MONOCHROME1" and arr.dtype.kind in "ui":
        bits = int(ds.get("BitsStored", arr.dtype.itemsize * 8))
        fill = (1 << bits) - 1 if arr.dtype.kind == "u" else (1 << (bits - 1)) - 1
    for region in regions:
        window = _clip(region, rows, cols)
        if window is None:
            continue
        ys, xs = window
        if samples > 1:
            arr[..., ys, xs, :] = fill
        else:
            arr[..., ys, xs] = fill
    if tag == 0x7FE00010 and int(ds.get("BitsAllocated", 8)) == 1:
        data = pack_bits(arr)
    else:
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    if len(data) % 2:
        data += b"\0"
    elem = ds[tag]
    elem.value = data
    elem.is_undefined_length = False
    if tag == 0x7FE00010:
        elem.VR = "OB" if int(ds.get("BitsAllocated", 8)) <= 8 else "OW"
    if photometric:
        ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return True


def _clean_overlays(ds: Dataset, regions: list[tuple[int, int, int, int]]) -> None:
    """Clear ``regions`` (image coordinates) in every overlay plane kept under Clean Graphics."""
    from pydicom.pixels.utils import pack_bits

    for group in sorted({t.group for t in list(ds.keys()) if 0x6000 <= t.group <= 0x60FF}):
        if BaseTag((group << 16) | 0x3000) not in ds:
            continue
        arr = ds.overlay_array(group).copy()
        origin = ds.get(BaseTag((group << 16) | 0x0050))
        row0, col0 = (int(origin.value[0]), int(origin.value[1])) if origin is not None else (1, 1)
        rows, cols = arr.shape[-2], arr.shape[-1]
        for x, y, w, h in regions:
            window = _clip((x - (col0 - 1), y - (row0 - 1), w, h), rows, cols)
            if window is not None:
                arr[..., window[0], window[1]] = 0
        ds[BaseTag((group << 16) | 0x3000)].value = pack_bits(arr)


# --------------------------------------------------------------------------------------------
# deidentify
# --------------------------------------------------------------------------------------------

_META_REMOVED = (
    0x00020016,  # Source Application Entity Title
    0x00020017,  # Sending Application Entity Title
    0x00020018,  # Receiving Application Entity Title
    0x00020026,  # Source Presentation Address
    0x00020027,  # Sending Presentation Address
    0x00020028,  # Receiving Presentation Address
    0x00020100,  # Private Information Creator UID
    0x00020102,  # Private Information
)


def _date_shift(ds: Dataset, options: DeidOptions, ctx: _Context) -> int | None:
    if not options.retain_long_modified_dates:
        return None
    if options.modified_dates_shift_days is not None:
        return options.modified_dates_shift_days
    key = str(ds.get("PatientID", "") or ds.get("PatientName", "") or "")
    return -(1 + int.from_bytes(ctx.digest("date-shift", key)[:4], "big") % 3650)


def deidentify(ds: Dataset, options: DeidOptions) -> tuple[Dataset, dict[str, str]]:
    """A de-identified copy of ``ds`` (``ds`` is not modified) and the pseudonyms made.

    Returns:
        The new data set (with file meta) and ``{original: replacement}`` for Patient ID,
        Patient's Name and every UID replaced; add it to a :class:`PseudonymMap`.

    Raises:
        InvalidDicom: Burned In Annotation is YES and neither ``pixel_regions`` nor
            ``allow_burned_in_annotation`` is set, or the pixel data cannot be cleaned.
    """
    out = copy.deepcopy(ds)
    burned_in = str(out.get(_BURNED_IN).value if _BURNED_IN in out else "").strip().upper()
    if burned_in == "YES" and not options.pixel_regions and not options.allow_burned_in_annotation:
        raise InvalidDicom(
            "Burned In Annotation is YES: configure pixel_regions that cover the burned-in text "
            "for this modality, or set allow_burned_in_annotation=True to export it as it is"
        )
    if burned_in == "YES" and not options.pixel_regions:
        log.warning("exporting an object with Burned In Annotation YES without cleaning its pixels")
    ctx = _Context(options=options, pattern=_pattern(identifiers_of(out)), shift_days=None)
    ctx.shift_days = _date_shift(out, options, ctx)
    meta = getattr(out, "file_meta", None) or FileMetaDataset()

    _walk(out, ctx, None)

    pixels_cleaned = False
    if options.pixel_regions:
        if "TransferSyntaxUID" not in meta:
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
        out.file_meta = meta
        pixels_cleaned = _clean_pixels(out, options.pixel_regions)
        if options.clean_graphics:
            _clean_overlays(out, options.pixel_regions)
        if pixels_cleaned and burned_in == "YES":
            out.BurnedInAnnotation = "NO"

    out.PatientIdentityRemoved = "YES"
    codes = method_codes(options, pixels_cleaned)
    out.DeidentificationMethod = [meaning for _value, meaning in codes]
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    out.DeidentificationMethodCodeSequence = Sequence(items)
    if options.retain_long_modified_dates:
        out.LongitudinalTemporalInformationModified = "MODIFIED"
    elif options.retain_long_full_dates:
        out.LongitudinalTemporalInformationModified = "UNMODIFIED"
    else:
        out.LongitudinalTemporalInformationModified = "REMOVED"

    for tag in _META_REMOVED:
        if tag in meta:
            del meta[tag]
    if "SOPInstanceUID" in out:
        meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    if "SOPClassUID" in out:
        meta.MediaStorageSOPClassUID = out.SOPClassUID
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out.file_meta = meta
    if hasattr(out, "preamble"):
        out.preamble = b"\0" * 128
    return out, dict(ctx.mapping)


def to_part10(ds: Dataset) -> bytes:
    """``ds`` as a Part-10 file (PS3.10 7.1) with a 128-byte zero preamble."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = bytearray(buf.getvalue())
    data[:128] = b"\0" * 128
    return bytes(data)


# --------------------------------------------------------------------------------------------
# The pseudonym map
# --------------------------------------------------------------------------------------------


class PseudonymMap:
    """Original value -> pseudonym (Patient IDs, names, UIDs), kept apart from the data.

    It is what lets authorised staff re-identify a de-identified object (PS3.15 E.1: "a means
    of recovering identity"), so it is as sensitive as the originals: :meth:`save` writes it
    encrypted and authenticated with AES-256-GCM under a 32-byte key the caller keeps (a key
    file or KMS, never next to the map). File layout: ``VSPSMAP1`` (8 bytes, also the
    associated data), a 12-byte random nonce, then the ciphertext of a JSON document
    ``{"version": 1, "entries": {...}}`` with its 16-byte tag. A wrong key or any changed
    byte fails :meth:`load` with :class:`~vesalius.errors.StorageError`.
    """

    MAGIC = b"VSPSMAP1"

    def __init__(self, entries: Mapping[str, str] | None = None) -> None:
        self._entries: dict[str, str] = {}
        if entries:
            self.update(entries)

    @staticmethod
    def generate_key() -> bytes:
        """A fresh random 256-bit key."""
        return AESGCM.generate_key(bit_length=256)

    def add(self, original: str, replacement: str) -> None:
        """Record one pseudonym; an original already mapped elsewhere is refused (ValueError)."""
        known = self._entries.get(original)
        if known is not None and known != replacement:
            raise ValueError(
                f"a value is already mapped to {known!r}, not {replacement!r}: use the same "
                "uid_salt and patient_pseudonym for every run that shares this map"
            )
        self._entries[original] = replacement

    def update(self, entries: Mapping[str, str]) -> None:
        """Record every pseudonym of ``entries`` (the map :func:`deidentify` returns)."""
        for original, replacement in entries.items():
            self.add(original, replacement)

    def get(self, original: str) -> str | None:
        """The pseudonym of ``original``, or ``None``."""
        return self._entries.get(original)

    def original_of(self, replacement: str) -> str | None:
        """Re-identification: the original behind ``replacement`` (the first, if several)."""
        return next((o for o, r in self._entries.items() if r == replacement), None)

    def items(self) -> list[tuple[str, str]]:
        return list(self._entries.items())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, original: object) -> bool:
        return original in self._entries

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PseudonymMap) and other._entries == self._entries

    def __repr__(self) -> str:  # never the entries: they are identifying
        return f"PseudonymMap({len(self._entries)} entries)"

    @staticmethod
    def _aead(key: bytes) -> AESGCM:
        if not isinstance(key, bytes) or len(key) != 32:
            raise ValueError("the pseudonym map key must be 32 bytes (AES-256); see generate_key()")
        return AESGCM(key)

    def to_bytes(self, key: bytes) -> bytes:
        """The encrypted map (see the class docstring for the layout)."""
        plain = json.dumps({"version": 1, "entries": self._entries}, sort_keys=True).encode()
        nonce = os.urandom(12)
        return self.MAGIC + nonce + self._aead(key).encrypt(nonce, plain, self.MAGIC)

    @classmethod
    def from_bytes(cls, blob: bytes, key: bytes) -> PseudonymMap:
        """Decrypt and verify a map made by :meth:`to_bytes`."""
        aead = cls._aead(key)
        if len(blob) < len(cls.MAGIC) + 12 + 16 or not blob.startswith(cls.MAGIC):
            raise StorageError("not a Vesalius pseudonym map (bad header or truncated)")
        nonce = blob[len(cls.MAGIC) : len(cls.MAGIC) + 12]
        try:
            plain = aead.decrypt(nonce, blob[len(cls.MAGIC) + 12 :], cls.MAGIC)
        except InvalidTag:
            raise StorageError(
                "the pseudonym map failed authentication: wrong key, or the file was altered"
            ) from None
        doc = json.loads(plain)
        if doc.get("version") != 1 or not isinstance(doc.get("entries"), dict):
            raise StorageError(f"unsupported pseudonym map version {doc.get('version')!r}")
        return cls({str(k): str(v) for k, v in doc["entries"].items()})

    def save(self, path: str | os.PathLike[str], key: bytes) -> None:
        """Write the encrypted map atomically (temporary file, fsync, rename), mode 0600."""
        target = Path(path)
        blob = self.to_bytes(key)
        fd, tmp = tempfile.mkstemp(prefix=".pseudonyms.", dir=target.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str], key: bytes) -> PseudonymMap:
        """Read and verify a map written by :meth:`save`."""
        try:
            blob = Path(path).read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read the pseudonym map {path}: {exc}") from exc
        return cls.from_bytes(blob, key)

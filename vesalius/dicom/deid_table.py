"""PS3.15 Annex E Table E.1-1, the Application Level Confidentiality Profile Attributes, as data.

One :class:`Rule` per attribute: the action of the Basic Application Level Confidentiality
Profile and, where the standard gives one, the action of each option (PS3.15 E.3):

=====  =========================================================================================
code   meaning (PS3.15 Table E.1-1 legend)
=====  =========================================================================================
D      replace with a non-zero length value consistent with the VR (may be a dummy value)
Z      replace with a zero length value, or a non-zero length dummy value consistent with the VR
X      remove
K      keep (unchanged for non-sequence attributes, cleaned for sequences)
C      clean: replace with values of similar meaning known not to contain identifying information
U      replace with a non-zero length UID that is internally consistent within a set of instances
Z/D    Z unless D is required to maintain IOD conformance (Type 2 versus Type 1)
X/Z    X unless Z is required to maintain IOD conformance (Type 3 versus Type 2)
X/D    X unless D is required to maintain IOD conformance (Type 3 versus Type 1)
X/Z/D  X unless Z or D is required to maintain IOD conformance (Type 3 versus Type 2 versus Type 1)
X/Z/U* X unless Z or U is required to maintain IOD conformance (sequences of references whose
       instance UIDs are replaced)
=====  =========================================================================================

Coverage and sources. 617 tagged rows: every attribute Table E.1-1 of the 2024b edition lists by
tag, plus its three pattern rows (curve data (50xx,xxxx), overlay data and comments
(60xx,3000) and (60xx,4000), private attributes), kept apart below. The basic actions were
checked against two public machine-readable transcriptions of the table: the 2024b one in
KitwareMedical ``dicom-anonymizer`` (``dicomfields_2024b.py``, basic actions only) and the
innolitics ``dicom-standard`` one (``confidentiality_profile_attributes.json``, an older edition
with every option column); where they differ the 2024b action is used (Patient ID Z/D,
Structure Set Time Z, Treatment Machine Name X/Z, Treatment Site X/D). The option columns are
innolitics' where it has the row; for rows added to the standard since, they follow the
table's own pattern for each column: every DA/DT/TM attribute is K under Retain Longitudinal
Temporal Information with Full Dates and C under ... with Modified Dates, every instance UID
is K under Retain UIDs, device and station identifiers are K under Retain Device Identity, and
free-text descriptions and labels are C under Clean Descriptors. The names in the comments are
pydicom's data dictionary names. ``SUPPLEMENTARY`` lists a few identifying attributes the
table does not list (after dcm4che's ``DeIdentifier``), removed by default.

The table is data only; :mod:`vesalius.dicom.deidentify` applies it.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "CURVE_RULE",
    "OPTION_FIELDS",
    "OVERLAY_RULES",
    "PRIVATE_RULE",
    "SAFE_PRIVATE",
    "SUPPLEMENTARY",
    "TABLE",
    "Rule",
    "rule_for",
]


class Rule(NamedTuple):
    """The actions of one row of Table E.1-1; an empty string means the option says nothing."""

    basic: str
    safe_private: str = ""  # Retain Safe Private Option
    uids: str = ""  # Retain UIDs Option
    device: str = ""  # Retain Device Identity Option
    institution: str = ""  # Retain Institution Identity Option
    patient_chars: str = ""  # Retain Patient Characteristics Option
    full_dates: str = ""  # Retain Longitudinal Temporal Information with Full Dates Option
    modified_dates: str = ""  # Retain Longitudinal Temporal Information with Modified Dates Option
    clean_descriptors: str = ""  # Clean Descriptors Option
    clean_structured: str = ""  # Clean Structured Content Option
    clean_graphics: str = ""  # Clean Graphics Option


#: The option columns of :class:`Rule`, in the table's order.
OPTION_FIELDS: tuple[str, ...] = Rule._fields[1:]

#: Table E.1-1 keyed by tag (group << 16 | element), in tag order.
TABLE: dict[int, Rule] = {
    0x00001000: Rule("X", uids="K"),  # Affected SOP Instance UID
    0x00001001: Rule("U", uids="K"),  # Requested SOP Instance UID
    0x00020003: Rule("U", uids="K"),  # Media Storage SOP Instance UID
    0x00041511: Rule("U", uids="K"),  # Referenced SOP Instance UID in File
    0x00080012: Rule("X/D", full_dates="K", modified_dates="C"),  # Instance Creation Date
    0x00080013: Rule("X/Z/D", full_dates="K", modified_dates="C"),  # Instance Creation Time
    0x00080014: Rule("U", uids="K"),  # Instance Creator UID
    0x00080015: Rule("X", full_dates="K", modified_dates="C"),  # Instance Coercion DateTime
    0x00080017: Rule("U", uids="K"),  # Acquisition UID
    0x00080018: Rule("U", uids="K"),  # SOP Instance UID
    0x00080019: Rule("U", uids="K"),  # Pyramid UID
    0x00080020: Rule("Z", full_dates="K", modified_dates="C"),  # Study Date
    0x00080021: Rule("X/D", full_dates="K", modified_dates="C"),  # Series Date
    0x00080022: Rule("X/Z", full_dates="K", modified_dates="C"),  # Acquisition Date
    0x00080023: Rule("Z/D", full_dates="K", modified_dates="C"),  # Content Date
    0x00080024: Rule("X", full_dates="K", modified_dates="C"),  # Overlay Date
    0x00080025: Rule("X", full_dates="K", modified_dates="C"),  # Curve Date
    0x0008002A: Rule("X/Z/D", full_dates="K", modified_dates="C"),  # Acquisition DateTime
    0x00080030: Rule("Z", full_dates="K", modified_dates="C"),  # Study Time
    0x00080031: Rule("X/D", full_dates="K", modified_dates="C"),  # Series Time
    0x00080032: Rule("X/Z", full_dates="K", modified_dates="C"),  # Acquisition Time
    0x00080033: Rule("Z/D", full_dates="K", modified_dates="C"),  # Content Time
    0x00080034: Rule("X", full_dates="K", modified_dates="C"),  # Overlay Time
    0x00080035: Rule("X", full_dates="K", modified_dates="C"),  # Curve Time
    0x00080050: Rule("Z"),  # Accession Number
    0x00080054: Rule("X"),  # Retrieve AE Title
    0x00080055: Rule("X", device="K"),  # Station AE Title
    0x00080058: Rule("U", uids="K"),  # Failed SOP Instance UID List
    0x00080080: Rule("X/Z/D", institution="K"),  # Institution Name
    0x00080081: Rule("X", institution="K"),  # Institution Address
    0x00080082: Rule("X/Z/D", institution="K"),  # Institution Code Sequence
    0x00080090: Rule("Z"),  # Referring Physician's Name
    0x00080092: Rule("X"),  # Referring Physician's Address
    0x00080094: Rule("X"),  # Referring Physician's Telephone Numbers
    0x00080096: Rule("X"),  # Referring Physician Identification Sequence
    0x0008009C: Rule("Z"),  # Consulting Physician's Name
    0x0008009D: Rule("X"),  # Consulting Physician Identification Sequence
    0x00080106: Rule("D", full_dates="K", modified_dates="C"),  # Context Group Version
    0x00080107: Rule("D", full_dates="K", modified_dates="C"),  # Context Group Local Version
    0x00080201: Rule("X", full_dates="K", modified_dates="C"),  # Timezone Offset From UTC
    0x00081000: Rule("X"),  # Network ID
    0x00081010: Rule("X/Z/D", device="K"),  # Station Name
    0x00081030: Rule("X", clean_descriptors="C"),  # Study Description
    0x0008103E: Rule("X", clean_descriptors="C"),  # Series Description
    0x00081040: Rule("X", institution="K"),  # Institutional Department Name
    0x00081041: Rule("X", institution="K"),  # Institutional Department Type Code Sequence
    0x00081048: Rule("X"),  # Physician(s) of Record
    0x00081049: Rule("X"),  # Physician(s) of Record Identification Sequence
    0x00081050: Rule("X"),  # Performing Physician's Name
    0x00081052: Rule("X"),  # Performing Physician Identification Sequence
    0x00081060: Rule("X"),  # Name of Physician(s) Reading Study
    0x00081062: Rule("X"),  # Physician(s) Reading Study Identification Sequence
    0x00081070: Rule("X/Z/D"),  # Operators' Name
    0x00081072: Rule("X/D"),  # Operator Identification Sequence
    0x00081080: Rule("X", clean_descriptors="C"),  # Admitting Diagnoses Description
    0x00081084: Rule("X", clean_descriptors="C"),  # Admitting Diagnoses Code Sequence
    0x00081088: Rule("X", clean_descriptors="C"),  # Pyramid Description
    0x00081110: Rule("X/Z", uids="K"),  # Referenced Study Sequence
    0x00081111: Rule("X/Z/D", uids="K"),  # Referenced Performed Procedure Step Sequence
    0x00081120: Rule("X", uids="X"),  # Referenced Patient Sequence
    0x00081140: Rule("X/Z/U*", uids="K"),  # Referenced Image Sequence
    0x00081155: Rule("U", uids="K"),  # Referenced SOP Instance UID
    0x00081195: Rule("U", uids="K"),  # Transaction UID
    0x00082111: Rule("X", clean_descriptors="C"),  # Derivation Description
    0x00082112: Rule("X/Z/U*", uids="K"),  # Source Image Sequence
    0x00083010: Rule("U", uids="K"),  # Irradiation Event UID
    0x00084000: Rule("X", clean_descriptors="C"),  # Identifying Comments
    0x00100010: Rule("Z"),  # Patient's Name
    0x00100020: Rule("Z/D"),  # Patient ID
    0x00100021: Rule("X"),  # Issuer of Patient ID
    0x00100030: Rule("Z"),  # Patient's Birth Date
    0x00100032: Rule("X"),  # Patient's Birth Time
    0x00100040: Rule("Z", patient_chars="K"),  # Patient's Sex
    0x00100050: Rule("X"),  # Patient's Insurance Plan Code Sequence
    0x00100101: Rule("X"),  # Patient's Primary Language Code Sequence
    0x00100102: Rule("X"),  # Patient's Primary Language Modifier Code Sequence
    0x00101000: Rule("X"),  # Other Patient IDs
    0x00101001: Rule("X"),  # Other Patient Names
    0x00101002: Rule("X"),  # Other Patient IDs Sequence
    0x00101005: Rule("X"),  # Patient's Birth Name
    0x00101010: Rule("X", patient_chars="K"),  # Patient's Age
    0x00101020: Rule("X", patient_chars="K"),  # Patient's Size
    0x00101030: Rule("X", patient_chars="K"),  # Patient's Weight
    0x00101040: Rule("X"),  # Patient's Address
    0x00101050: Rule("X"),  # Insurance Plan Identification
    0x00101060: Rule("X"),  # Patient's Mother's Birth Name
    0x00101080: Rule("X"),  # Military Rank
    0x00101081: Rule("X"),  # Branch of Service
    0x00101090: Rule("X"),  # Medical Record Locator
    0x00101100: Rule("X"),  # Referenced Patient Photo Sequence
    0x00102000: Rule("X", clean_descriptors="C"),  # Medical Alerts
    0x00102110: Rule("X", patient_chars="C", clean_descriptors="C"),  # Allergies
    0x00102150: Rule("X"),  # Country of Residence
    0x00102152: Rule("X"),  # Region of Residence
    0x00102154: Rule("X"),  # Patient's Telephone Numbers
    0x00102155: Rule("X"),  # Patient's Telecom Information
    0x00102160: Rule("X", patient_chars="K"),  # Ethnic Group
    0x00102180: Rule("X", clean_descriptors="C"),  # Occupation
    0x001021A0: Rule("X", patient_chars="K"),  # Smoking Status
    0x001021B0: Rule("X", clean_descriptors="C"),  # Additional Patient History
    0x001021C0: Rule("X", patient_chars="K"),  # Pregnancy Status
    0x001021D0: Rule("X", full_dates="K", modified_dates="C"),  # Last Menstrual Date
    0x001021F0: Rule("X"),  # Patient's Religious Preference
    0x00102203: Rule("X/Z", patient_chars="K"),  # Patient's Sex Neutered
    0x00102297: Rule("X"),  # Responsible Person
    0x00102299: Rule("X"),  # Responsible Organization
    0x00104000: Rule("X", clean_descriptors="C"),  # Patient Comments
    0x00120010: Rule("D"),  # Clinical Trial Sponsor Name
    0x00120020: Rule("D"),  # Clinical Trial Protocol ID
    0x00120021: Rule("Z"),  # Clinical Trial Protocol Name
    0x00120022: Rule("X"),  # Issuer of Clinical Trial Protocol ID
    0x00120023: Rule("X"),  # Other Clinical Trial Protocol IDs Sequence
    0x00120030: Rule("Z", institution="K"),  # Clinical Trial Site ID
    0x00120031: Rule("Z", institution="K"),  # Clinical Trial Site Name
    0x00120032: Rule("X"),  # Issuer of Clinical Trial Site ID
    0x00120040: Rule("D"),  # Clinical Trial Subject ID
    0x00120041: Rule("X"),  # Issuer of Clinical Trial Subject ID
    0x00120042: Rule("D"),  # Clinical Trial Subject Reading ID
    0x00120043: Rule("X"),  # Issuer of Clinical Trial Subject Reading ID
    0x00120050: Rule("Z"),  # Clinical Trial Time Point ID
    0x00120051: Rule("X", clean_descriptors="C"),  # Clinical Trial Time Point Description
    0x00120055: Rule("X"),  # Issuer of Clinical Trial Time Point ID
    0x00120060: Rule("Z", institution="K"),  # Clinical Trial Coordinating Center Name
    0x00120071: Rule("X"),  # Clinical Trial Series ID
    0x00120072: Rule("X", clean_descriptors="C"),  # Clinical Trial Series Description
    0x00120073: Rule("X"),  # Issuer of Clinical Trial Series ID
    0x00120081: Rule("D", institution="K"),  # Clinical Trial Protocol Ethics Committee Name
    0x00120082: Rule("X"),  # Clinical Trial Protocol Ethics Committee Approval Number
    0x00120086: Rule("X", full_dates="K", modified_dates="C"),  # Ethics Committee Approval Effectiveness Start Date
    0x00120087: Rule("X", full_dates="K", modified_dates="C"),  # Ethics Committee Approval Effectiveness End Date
    0x0014407C: Rule("X", full_dates="K", modified_dates="C"),  # Calibration Time
    0x0014407E: Rule("X", full_dates="K", modified_dates="C"),  # Calibration Date
    0x0016002B: Rule("X", clean_descriptors="C"),  # Maker Note
    0x0016004B: Rule("X", clean_descriptors="C"),  # Device Setting Description
    0x0016004D: Rule("X"),  # Camera Owner Name
    0x0016004E: Rule("X", device="K"),  # Lens Specification
    0x0016004F: Rule("X", device="K"),  # Lens Make
    0x00160050: Rule("X", device="K"),  # Lens Model
    0x00160051: Rule("X", device="K"),  # Lens Serial Number
    0x00160070: Rule("X"),  # GPS Version ID
    0x00160071: Rule("X"),  # GPS Latitude Ref
    0x00160072: Rule("X"),  # GPS Latitude
    0x00160073: Rule("X"),  # GPS Longitude Ref
    0x00160074: Rule("X"),  # GPS Longitude
    0x00160075: Rule("X"),  # GPS Altitude Ref
    0x00160076: Rule("X"),  # GPS Altitude
    0x00160077: Rule("X"),  # GPS Time Stamp
    0x00160078: Rule("X"),  # GPS Satellites
    0x00160079: Rule("X"),  # GPS Status
    0x0016007A: Rule("X"),  # GPS Measure Mode
    0x0016007B: Rule("X"),  # GPS DOP
    0x0016007C: Rule("X"),  # GPS Speed Ref
    0x0016007D: Rule("X"),  # GPS Speed
    0x0016007E: Rule("X"),  # GPS Track Ref
    0x0016007F: Rule("X"),  # GPS Track
    0x00160080: Rule("X"),  # GPS Img Direction Ref
    0x00160081: Rule("X"),  # GPS Img Direction
    0x00160082: Rule("X"),  # GPS Map Datum
    0x00160083: Rule("X"),  # GPS Dest Latitude Ref
    0x00160084: Rule("X"),  # GPS Dest Latitude
    0x00160085: Rule("X"),  # GPS Dest Longitude Ref
    0x00160086: Rule("X"),  # GPS Dest Longitude
    0x00160087: Rule("X"),  # GPS Dest Bearing Ref
    0x00160088: Rule("X"),  # GPS Dest Bearing
    0x00160089: Rule("X"),  # GPS Dest Distance Ref
    0x0016008A: Rule("X"),  # GPS Dest Distance
    0x0016008B: Rule("X"),  # GPS Processing Method
    0x0016008C: Rule("X"),  # GPS Area Information
    0x0016008D: Rule("X", full_dates="K", modified_dates="C"),  # GPS Date Stamp
    0x0016008E: Rule("X"),  # GPS Differential
    0x00180010: Rule("Z/D", clean_descriptors="C"),  # Contrast/Bolus Agent
    0x00180027: Rule("X", full_dates="K", modified_dates="C"),  # Intervention Drug Stop Time
    0x00180035: Rule("X", full_dates="K", modified_dates="C"),  # Intervention Drug Start Time
    0x00181000: Rule("X/Z/D", device="K"),  # Device Serial Number
    0x00181002: Rule("U", uids="K", device="K"),  # Device UID
    0x00181004: Rule("X", device="K"),  # Plate ID
    0x00181005: Rule("X", device="K"),  # Generator ID
    0x00181007: Rule("X", device="K"),  # Cassette ID
    0x00181008: Rule("X", device="K"),  # Gantry ID
    0x00181009: Rule("X", device="K"),  # Unique Device Identifier
    0x0018100A: Rule("X", device="K"),  # UDI Sequence
    0x0018100B: Rule("U", uids="K", device="K"),  # Manufacturer's Device Class UID
    0x00181012: Rule("X", full_dates="K", modified_dates="C"),  # Date of Secondary Capture
    0x00181014: Rule("X", full_dates="K", modified_dates="C"),  # Time of Secondary Capture
    0x00181030: Rule("X/D", clean_descriptors="C"),  # Protocol Name
    0x00181042: Rule("X", full_dates="K", modified_dates="C"),  # Contrast/Bolus Start Time
    0x00181043: Rule("X", full_dates="K", modified_dates="C"),  # Contrast/Bolus Stop Time
    0x00181072: Rule("X", full_dates="K", modified_dates="C"),  # Radiopharmaceutical Start Time
    0x00181073: Rule("X", full_dates="K", modified_dates="C"),  # Radiopharmaceutical Stop Time
    0x00181078: Rule("X", full_dates="K", modified_dates="C"),  # Radiopharmaceutical Start DateTime
    0x00181079: Rule("X", full_dates="K", modified_dates="C"),  # Radiopharmaceutical Stop DateTime
    0x001811BB: Rule("D", clean_descriptors="C"),  # Acquisition Field of View Label
    0x00181200: Rule("X", full_dates="K", modified_dates="C"),  # Date of Last Calibration
    0x00181201: Rule("X", full_dates="K", modified_dates="C"),  # Time of Last Calibration
    0x00181202: Rule("X", full_dates="K", modified_dates="C"),  # DateTime of Last Calibration
    0x00181203: Rule("Z", full_dates="K", modified_dates="C"),  # Calibration DateTime
    0x00181204: Rule("X", full_dates="K", modified_dates="C"),  # Date of Manufacture
    0x00181205: Rule("X", full_dates="K", modified_dates="C"),  # Date of Installation
    0x00181400: Rule("X/D", clean_descriptors="C"),  # Acquisition Device Processing Description
    0x00182042: Rule("U", uids="K"),  # Target UID
    0x00184000: Rule("X", clean_descriptors="C"),  # Acquisition Comments
    0x00185011: Rule("X", device="K"),  # Transducer Identification Sequence
    0x0018700A: Rule("X/D", device="K"),  # Detector ID
    0x0018700C: Rule("X/D", full_dates="K", modified_dates="C"),  # Date of Last Detector Calibration
    0x0018700E: Rule("X/D", full_dates="K", modified_dates="C"),  # Time of Last Detector Calibration
    0x00189074: Rule("D", full_dates="K", modified_dates="C"),  # Frame Acquisition DateTime
    0x00189151: Rule("D", full_dates="K", modified_dates="C"),  # Frame Reference DateTime
    0x00189185: Rule("X", clean_descriptors="C"),  # Respiratory Motion Compensation Technique Description
    0x00189367: Rule("D", device="K"),  # X-Ray Source ID
    0x00189369: Rule("D", full_dates="K", modified_dates="C"),  # Source Start DateTime
    0x0018936A: Rule("D", full_dates="K", modified_dates="C"),  # Source End DateTime
    0x00189371: Rule("D", device="K"),  # X-Ray Detector ID
    0x00189373: Rule("X", device="K"),  # X-Ray Detector Label
    0x0018937B: Rule("X", clean_descriptors="C"),  # Multi-energy Acquisition Description
    0x0018937F: Rule("X", clean_descriptors="C"),  # Decomposition Description
    0x00189424: Rule("X", clean_descriptors="C"),  # Acquisition Protocol Description
    0x00189516: Rule("X/D", full_dates="K", modified_dates="C"),  # Start Acquisition DateTime
    0x00189517: Rule("X/D", full_dates="K", modified_dates="C"),  # End Acquisition DateTime
    0x00189623: Rule("D", full_dates="K", modified_dates="C"),  # Functional Sync Pulse
    0x00189701: Rule("D", full_dates="K", modified_dates="C"),  # Decay Correction DateTime
    0x00189804: Rule("D", full_dates="K", modified_dates="C"),  # Exclusion Start DateTime
    0x00189919: Rule("Z/D", full_dates="K", modified_dates="C"),  # Instruction Performed DateTime
    0x00189937: Rule("X", clean_descriptors="C"),  # Requested Series Description
    0x0018A002: Rule("X", full_dates="K", modified_dates="C"),  # Contribution DateTime
    0x0018A003: Rule("X", clean_descriptors="C"),  # Contribution Description
    0x0020000D: Rule("U", uids="K"),  # Study Instance UID
    0x0020000E: Rule("U", uids="K"),  # Series Instance UID
    0x00200010: Rule("Z"),  # Study ID
    0x00200027: Rule("X", clean_descriptors="C"),  # Pyramid Label
    0x00200052: Rule("U", uids="K"),  # Frame of Reference UID
    0x00200200: Rule("U", uids="K"),  # Synchronization Frame of Reference UID
    0x00203401: Rule("X"),  # Modifying Device ID
    0x00203403: Rule("X", full_dates="K", modified_dates="C"),  # Modified Image Date
    0x00203405: Rule("X", full_dates="K", modified_dates="C"),  # Modified Image Time
    0x00203406: Rule("X"),  # Modified Image Description
    0x00204000: Rule("X", clean_descriptors="C"),  # Image Comments
    0x00209158: Rule("X", clean_descriptors="C"),  # Frame Comments
    0x00209161: Rule("U", uids="K"),  # Concatenation UID
    0x00209164: Rule("U", uids="K"),  # Dimension Organization UID
    0x00281199: Rule("U", uids="K"),  # Palette Color Lookup Table UID
    0x00281214: Rule("U", uids="K"),  # Large Palette Color Lookup Table UID
    0x00284000: Rule("X"),  # Image Presentation Comments
    0x00320012: Rule("X"),  # Study ID Issuer
    0x00320032: Rule("X", full_dates="K", modified_dates="C"),  # Study Verified Date
    0x00320033: Rule("X", full_dates="K", modified_dates="C"),  # Study Verified Time
    0x00320034: Rule("X", full_dates="K", modified_dates="C"),  # Study Read Date
    0x00320035: Rule("X", full_dates="K", modified_dates="C"),  # Study Read Time
    0x00321000: Rule("X", full_dates="K", modified_dates="C"),  # Scheduled Study Start Date
    0x00321001: Rule("X", full_dates="K", modified_dates="C"),  # Scheduled Study Start Time
    0x00321010: Rule("X", full_dates="K", modified_dates="C"),  # Scheduled Study Stop Date
    0x00321011: Rule("X", full_dates="K", modified_dates="C"),  # Scheduled Study Stop Time
    0x00321020: Rule("X", device="K"),  # Scheduled Study Location
    0x00321021: Rule("X", device="K"),  # Scheduled Study Location AE Title
    0x00321030: Rule("X", clean_descriptors="C"),  # Reason for Study
    0x00321032: Rule("X"),  # Requesting Physician
    0x00321033: Rule("X"),  # Requesting Service
    0x00321040: Rule("X", full_dates="K", modified_dates="C"),  # Study Arrival Date
    0x00321041: Rule("X", full_dates="K", modified_dates="C"),  # Study Arrival Time
    0x00321050: Rule("X", full_dates="K", modified_dates="C"),  # Study Completion Date
    0x00321051: Rule("X", full_dates="K", modified_dates="C"),  # Study Completion Time
    0x00321060: Rule("X/Z", clean_descriptors="C"),  # Requested Procedure Description
    0x00321066: Rule("X", clean_descriptors="C"),  # Reason for Visit
    0x00321067: Rule("X", clean_descriptors="C"),  # Reason for Visit Code Sequence
    0x00321070: Rule("X", clean_descriptors="C"),  # Requested Contrast Agent
    0x00324000: Rule("X", clean_descriptors="C"),  # Study Comments
    0x00340001: Rule("D"),  # Flow Identifier Sequence
    0x00340002: Rule("D"),  # Flow Identifier
    0x00340005: Rule("D"),  # Source Identifier
    0x00340007: Rule("D", full_dates="K", modified_dates="C"),  # Frame Origin Timestamp
    0x00380004: Rule("X"),  # Referenced Patient Alias Sequence
    0x00380010: Rule("X"),  # Admission ID
    0x00380011: Rule("X"),  # Issuer of Admission ID
    0x00380014: Rule("X"),  # Issuer of Admission ID Sequence
    0x0038001A: Rule("X", full_dates="K", modified_dates="C"),  # Scheduled Admission Date
    0x0038001B: Rule("X", full_dates="K", modified_dates="C"),  # Scheduled Admission Time
    0x0038001C: Rule("X", full_dates="K", modified_dates="C"),  # Scheduled Discharge Date
    0x0038001D: Rule("X", full_dates="K", modified_dates="C"),  # Scheduled Discharge Time
    0x0038001E: Rule("X"),  # Scheduled Patient Institution Residence
    0x00380020: Rule("X", full_dates="K", modified_dates="C"),  # Admitting Date
    0x00380021: Rule("X", full_dates="K", modified_dates="C"),  # Admitting Time
    0x00380030: Rule("X", full_dates="K", modified_dates="C"),  # Discharge Date
    0x00380032: Rule("X", full_dates="K", modified_dates="C"),  # Discharge Time
    0x00380040: Rule("X", clean_descriptors="C"),  # Discharge Diagnosis Description
    0x00380050: Rule("X", patient_chars="C"),  # Special Needs
    0x00380060: Rule("X"),  # Service Episode ID
    0x00380061: Rule("X"),  # Issuer of Service Episode ID
    0x00380062: Rule("X", clean_descriptors="C"),  # Service Episode Description
    0x00380064: Rule("X"),  # Issuer of Service Episode ID Sequence
    0x00380300: Rule("X"),  # Current Patient Location
    0x00380400: Rule("X"),  # Patient's Institution Residence
    0x00380500: Rule("X", patient_chars="C", clean_descriptors="C"),  # Patient State
    0x00384000: Rule("X", clean_descriptors="C"),  # Visit Comments
    0x003A0310: Rule("U", uids="K"),  # Multiplex Group UID
    0x003A0314: Rule("D", full_dates="K", modified_dates="C"),  # Impedance Measurement DateTime
    0x003A0329: Rule("X", clean_descriptors="C"),  # Waveform Filter Description
    0x003A032B: Rule("X", clean_descriptors="C"),  # Filter Lookup Table Description
    0x00400001: Rule("X", device="K"),  # Scheduled Station AE Title
    0x00400002: Rule("X", full_dates="K", modified_dates="C"),  # Scheduled Procedure Step Start Date
    0x00400003: Rule("X", full_dates="K", modified_dates="C"),  # Scheduled Procedure Step Start Time
    0x00400004: Rule("X", full_dates="K", modified_dates="C"),  # Scheduled Procedure Step End Date
    0x00400005: Rule("X", full_dates="K", modified_dates="C"),  # Scheduled Procedure Step End Time
    0x00400006: Rule("X"),  # Scheduled Performing Physician's Name
    0x00400007: Rule("X", clean_descriptors="C"),  # Scheduled Procedure Step Description
    0x00400009: Rule("X"),  # Scheduled Procedure Step ID
    0x0040000B: Rule("X"),  # Scheduled Performing Physician Identification Sequence
    0x00400010: Rule("X", device="K"),  # Scheduled Station Name
    0x00400011: Rule("X", device="K"),  # Scheduled Procedure Step Location
    0x00400012: Rule("X", patient_chars="C"),  # Pre-Medication
    0x00400241: Rule("X", device="K"),  # Performed Station AE Title
    0x00400242: Rule("X", device="K"),  # Performed Station Name
    0x00400243: Rule("X"),  # Performed Location
    0x00400244: Rule("X", full_dates="K", modified_dates="C"),  # Performed Procedure Step Start Date
    0x00400245: Rule("X", full_dates="K", modified_dates="C"),  # Performed Procedure Step Start Time
    0x00400250: Rule("X", full_dates="K", modified_dates="C"),  # Performed Procedure Step End Date
    0x00400251: Rule("X", full_dates="K", modified_dates="C"),  # Performed Procedure Step End Time
    0x00400253: Rule("X"),  # Performed Procedure Step ID
    0x00400254: Rule("X", clean_descriptors="C"),  # Performed Procedure Step Description
    0x00400275: Rule("X", clean_descriptors="C"),  # Request Attributes Sequence
    0x00400280: Rule("X", clean_descriptors="C"),  # Comments on the Performed Procedure Step
    0x00400310: Rule("X", clean_descriptors="C"),  # Comments on Radiation Dose
    0x0040050A: Rule("X"),  # Specimen Accession Number
    0x00400512: Rule("D"),  # Container Identifier
    0x00400513: Rule("Z"),  # Issuer of the Container Identifier Sequence
    0x0040051A: Rule("X", clean_descriptors="C"),  # Container Description
    0x00400551: Rule("D"),  # Specimen Identifier
    0x00400554: Rule("U", uids="K"),  # Specimen UID
    0x00400555: Rule("X/Z", clean_structured="C"),  # Acquisition Context Sequence
    0x00400562: Rule("Z"),  # Issuer of the Specimen Identifier Sequence
    0x00400600: Rule("X", clean_descriptors="C"),  # Specimen Short Description
    0x00400602: Rule("X", clean_descriptors="C"),  # Specimen Detailed Description
    0x00400610: Rule("Z", clean_structured="C"),  # Specimen Preparation Sequence
    0x004006FA: Rule("X"),  # Slide Identifier
    0x00401001: Rule("X"),  # Requested Procedure ID
    0x00401002: Rule("X", clean_descriptors="C"),  # Reason for the Requested Procedure
    0x00401004: Rule("X"),  # Patient Transport Arrangements
    0x00401005: Rule("X"),  # Requested Procedure Location
    0x0040100A: Rule("X", clean_descriptors="C"),  # Reason for Requested Procedure Code Sequence
    0x00401010: Rule("X"),  # Names of Intended Recipients of Results
    0x00401011: Rule("X"),  # Intended Recipients of Results Identification Sequence
    0x00401101: Rule("D"),  # Person Identification Code Sequence
    0x00401102: Rule("X"),  # Person's Address
    0x00401103: Rule("X"),  # Person's Telephone Numbers
    0x00401104: Rule("X"),  # Person's Telecom Information
    0x00401400: Rule("X", clean_descriptors="C"),  # Requested Procedure Comments
    0x00402001: Rule("X", clean_descriptors="C"),  # Reason for the Imaging Service Request
    0x00402004: Rule("X", full_dates="K", modified_dates="C"),  # Issue Date of Imaging Service Request
    0x00402005: Rule("X", full_dates="K", modified_dates="C"),  # Issue Time of Imaging Service Request
    0x00402008: Rule("X"),  # Order Entered By
    0x00402009: Rule("X"),  # Order Enterer's Location
    0x00402010: Rule("X"),  # Order Callback Phone Number
    0x00402011: Rule("X"),  # Order Callback Telecom Information
    0x00402016: Rule("Z"),  # Placer Order Number / Imaging Service Request
    0x00402017: Rule("Z"),  # Filler Order Number / Imaging Service Request
    0x00402400: Rule("X", clean_descriptors="C"),  # Imaging Service Request Comments
    0x00403001: Rule("X"),  # Confidentiality Constraint on Patient Data Description
    0x00404005: Rule("X", full_dates="K", modified_dates="C"),  # Scheduled Procedure Step Start DateTime
    0x00404008: Rule("X", full_dates="K", modified_dates="C"),  # Scheduled Procedure Step Expiration DateTime
    0x00404010: Rule("X", full_dates="K", modified_dates="C"),  # Scheduled Procedure Step Modification DateTime
    0x00404011: Rule("X", full_dates="K", modified_dates="C"),  # Expected Completion DateTime
    0x00404023: Rule("U", uids="K"),  # Referenced General Purpose Scheduled Procedure Step Transaction UID
    0x00404025: Rule("X", device="K"),  # Scheduled Station Name Code Sequence
    0x00404027: Rule("X", device="K"),  # Scheduled Station Geographic Location Code Sequence
    0x00404028: Rule("X", device="K"),  # Performed Station Name Code Sequence
    0x00404030: Rule("X", device="K"),  # Performed Station Geographic Location Code Sequence
    0x00404034: Rule("X"),  # Scheduled Human Performers Sequence
    0x00404035: Rule("X"),  # Actual Human Performers Sequence
    0x00404036: Rule("X"),  # Human Performer's Organization
    0x00404037: Rule("X"),  # Human Performer's Name
    0x00404050: Rule("X", full_dates="K", modified_dates="C"),  # Performed Procedure Step Start DateTime
    0x00404051: Rule("X", full_dates="K", modified_dates="C"),  # Performed Procedure Step End DateTime
    0x00404052: Rule("X", full_dates="K", modified_dates="C"),  # Procedure Step Cancellation DateTime
    0x0040A023: Rule("X", full_dates="K", modified_dates="C"),  # Findings Group Recording Date (Trial)
    0x0040A024: Rule("X", full_dates="K", modified_dates="C"),  # Findings Group Recording Time (Trial)
    0x0040A027: Rule("D"),  # Verifying Organization
    0x0040A030: Rule("D", full_dates="K", modified_dates="C"),  # Verification DateTime
    0x0040A032: Rule("X/D", full_dates="K", modified_dates="C"),  # Observation DateTime
    0x0040A033: Rule("X", full_dates="K", modified_dates="C"),  # Observation Start DateTime
    0x0040A073: Rule("D"),  # Verifying Observer Sequence
    0x0040A075: Rule("D"),  # Verifying Observer Name
    0x0040A078: Rule("X"),  # Author Observer Sequence
    0x0040A07A: Rule("X"),  # Participant Sequence
    0x0040A07C: Rule("X"),  # Custodial Organization Sequence
    0x0040A082: Rule("Z", full_dates="K", modified_dates="C"),  # Participation DateTime
    0x0040A088: Rule("Z"),  # Verifying Observer Identification Code Sequence
    0x0040A110: Rule("X", full_dates="K", modified_dates="C"),  # Date of Document or Verbal Transaction (Trial)
    0x0040A112: Rule("X", full_dates="K", modified_dates="C"),  # Time of Document Creation or Verbal Transaction (Trial)
    0x0040A120: Rule("D", full_dates="K", modified_dates="C"),  # DateTime
    0x0040A121: Rule("D", full_dates="K", modified_dates="C"),  # Date
    0x0040A122: Rule("D", full_dates="K", modified_dates="C"),  # Time
    0x0040A123: Rule("D"),  # Person Name
    0x0040A124: Rule("U"),  # UID
    0x0040A13A: Rule("D", full_dates="K", modified_dates="C"),  # Referenced DateTime
    0x0040A171: Rule("U", uids="K"),  # Observation UID
    0x0040A172: Rule("U", uids="K"),  # Referenced Observation UID (Trial)
    0x0040A192: Rule("X", full_dates="K", modified_dates="C"),  # Observation Date (Trial)
    0x0040A193: Rule("X", full_dates="K", modified_dates="C"),  # Observation Time (Trial)
    0x0040A307: Rule("X"),  # Current Observer (Trial)
    0x0040A352: Rule("X"),  # Verbal Source (Trial)
    0x0040A353: Rule("X"),  # Address (Trial)
    0x0040A354: Rule("X"),  # Telephone Number (Trial)
    0x0040A358: Rule("X"),  # Verbal Source Identifier Code Sequence (Trial)
    0x0040A402: Rule("U", uids="K"),  # Observation Subject UID (Trial)
    0x0040A730: Rule("D", clean_structured="C"),  # Content Sequence
    0x0040DB06: Rule("X", full_dates="K", modified_dates="C"),  # Template Version
    0x0040DB07: Rule("X", full_dates="K", modified_dates="C"),  # Template Local Version
    0x0040DB0C: Rule("U", uids="K"),  # Template Extension Organization UID
    0x0040DB0D: Rule("U", uids="K"),  # Template Extension Creator UID
    0x0040E004: Rule("X", full_dates="K", modified_dates="C"),  # HL7 Document Effective Time
    0x00420011: Rule("D"),  # Encapsulated Document
    0x00440004: Rule("X", full_dates="K", modified_dates="C"),  # Approval Status DateTime
    0x0044000B: Rule("X", full_dates="K", modified_dates="C"),  # Product Expiration DateTime
    0x00440010: Rule("X", full_dates="K", modified_dates="C"),  # Substance Administration DateTime
    0x00440104: Rule("D", full_dates="K", modified_dates="C"),  # Assertion DateTime
    0x00440105: Rule("X", full_dates="K", modified_dates="C"),  # Assertion Expiration DateTime
    0x0050001B: Rule("X"),  # Container Component ID
    0x00500020: Rule("X", device="K"),  # Device Description
    0x00500021: Rule("X", clean_descriptors="C"),  # Long Device Description
    0x00620021: Rule("U", uids="K"),  # Tracking UID
    0x00640003: Rule("U", uids="K"),  # Source Frame of Reference UID
    0x00686226: Rule("D", full_dates="K", modified_dates="C"),  # Effective DateTime
    0x00686270: Rule("D", full_dates="K", modified_dates="C"),  # Information Issue DateTime
    0x006A0003: Rule("D", uids="K"),  # Annotation Group UID
    0x006A0005: Rule("D", clean_descriptors="C"),  # Annotation Group Label
    0x006A0006: Rule("X", clean_descriptors="C"),  # Annotation Group Description
    0x00700001: Rule("D", clean_graphics="C"),  # Graphic Annotation Sequence
    0x00700082: Rule("X", full_dates="K", modified_dates="C"),  # Presentation Creation Date
    0x00700083: Rule("X", full_dates="K", modified_dates="C"),  # Presentation Creation Time
    0x00700084: Rule("Z/D"),  # Content Creator's Name
    0x00700086: Rule("X"),  # Content Creator's Identification Code Sequence
    0x0070031A: Rule("U", uids="K"),  # Fiducial UID
    0x00701101: Rule("U", uids="K"),  # Presentation Display Collection UID
    0x00701102: Rule("U", uids="K"),  # Presentation Sequence Collection UID
    0x0072000A: Rule("D", full_dates="K", modified_dates="C"),  # Hanging Protocol Creation DateTime
    0x0072005E: Rule("D"),  # Selector AE Value
    0x0072005F: Rule("D"),  # Selector AS Value
    0x00720061: Rule("D", full_dates="K", modified_dates="C"),  # Selector DA Value
    0x00720063: Rule("D", full_dates="K", modified_dates="C"),  # Selector DT Value
    0x00720065: Rule("D"),  # Selector OB Value
    0x00720066: Rule("D"),  # Selector LO Value
    0x00720068: Rule("D"),  # Selector LT Value
    0x0072006A: Rule("D"),  # Selector PN Value
    0x0072006B: Rule("D", full_dates="K", modified_dates="C"),  # Selector TM Value
    0x0072006C: Rule("D"),  # Selector SH Value
    0x0072006D: Rule("D"),  # Selector UN Value
    0x0072006E: Rule("D"),  # Selector ST Value
    0x00720070: Rule("D"),  # Selector UT Value
    0x00720071: Rule("D"),  # Selector UR Value
    0x00741234: Rule("X"),  # Receiving AE
    0x00741236: Rule("X"),  # Requesting AE
    0x00880140: Rule("U", uids="K"),  # Storage Media File-set UID
    0x00880200: Rule("X"),  # Icon Image Sequence
    0x00880904: Rule("X"),  # Topic Title
    0x00880906: Rule("X"),  # Topic Subject
    0x00880910: Rule("X"),  # Topic Author
    0x00880912: Rule("X"),  # Topic Keywords
    0x01000420: Rule("X", full_dates="K", modified_dates="C"),  # SOP Authorization DateTime
    0x04000100: Rule("U"),  # Digital Signature UID
    0x04000105: Rule("D", full_dates="K", modified_dates="C"),  # Digital Signature DateTime
    0x04000115: Rule("D"),  # Certificate of Signer
    0x04000310: Rule("X"),  # Certified Timestamp
    0x04000402: Rule("X"),  # Referenced Digital Signature Sequence
    0x04000403: Rule("X"),  # Referenced SOP Instance MAC Sequence
    0x04000404: Rule("X"),  # MAC
    0x04000550: Rule("X"),  # Modified Attributes Sequence
    0x04000551: Rule("X"),  # Nonconforming Modified Attributes Sequence
    0x04000552: Rule("X"),  # Nonconforming Data Element Value
    0x04000561: Rule("X"),  # Original Attributes Sequence
    0x04000562: Rule("D", full_dates="K", modified_dates="C"),  # Attribute Modification DateTime
    0x04000563: Rule("D"),  # Modifying System
    0x04000564: Rule("Z"),  # Source of Previous Values
    0x04000565: Rule("D"),  # Reason for the Attribute Modification
    0x04000600: Rule("X"),  # Instance Origin Status
    0x20300020: Rule("X"),  # Text String
    0x21000040: Rule("X", full_dates="K", modified_dates="C"),  # Creation Date
    0x21000050: Rule("X", full_dates="K", modified_dates="C"),  # Creation Time
    0x21000070: Rule("X"),  # Originator
    0x21000140: Rule("D"),  # Destination AE
    0x22000002: Rule("X/Z", clean_descriptors="C"),  # Label Text
    0x22000005: Rule("X/Z"),  # Barcode Value
    0x30020121: Rule("X", clean_descriptors="C"),  # Position Acquisition Template Name
    0x30020123: Rule("X", clean_descriptors="C"),  # Position Acquisition Template Description
    0x30060002: Rule("D", clean_descriptors="C"),  # Structure Set Label
    0x30060004: Rule("X", clean_descriptors="C"),  # Structure Set Name
    0x30060006: Rule("X", clean_descriptors="C"),  # Structure Set Description
    0x30060008: Rule("Z", full_dates="K", modified_dates="C"),  # Structure Set Date
    0x30060009: Rule("Z", full_dates="K", modified_dates="C"),  # Structure Set Time
    0x30060024: Rule("U", uids="K"),  # Referenced Frame of Reference UID
    0x30060026: Rule("Z", clean_descriptors="C"),  # ROI Name
    0x30060028: Rule("X", clean_descriptors="C"),  # ROI Description
    0x3006002D: Rule("X", full_dates="K", modified_dates="C"),  # ROI DateTime
    0x3006002E: Rule("X", full_dates="K", modified_dates="C"),  # ROI Observation DateTime
    0x30060038: Rule("X", clean_descriptors="C"),  # ROI Generation Description
    0x3006004D: Rule("X"),  # ROI Creator Sequence
    0x3006004E: Rule("X"),  # ROI Interpreter Sequence
    0x30060085: Rule("X", clean_descriptors="C"),  # ROI Observation Label
    0x30060088: Rule("X", clean_descriptors="C"),  # ROI Observation Description
    0x300600A6: Rule("Z"),  # ROI Interpreter
    0x300600C2: Rule("U", uids="K"),  # Related Frame of Reference UID
    0x30080024: Rule("D", full_dates="K", modified_dates="C"),  # Treatment Control Point Date
    0x30080025: Rule("D", full_dates="K", modified_dates="C"),  # Treatment Control Point Time
    0x30080054: Rule("X/D", full_dates="K", modified_dates="C"),  # First Treatment Date
    0x30080056: Rule("X/D", full_dates="K", modified_dates="C"),  # Most Recent Treatment Date
    0x30080105: Rule("X/Z", device="K"),  # Source Serial Number
    0x30080162: Rule("D", full_dates="K", modified_dates="C"),  # Safe Position Exit Date
    0x30080164: Rule("D", full_dates="K", modified_dates="C"),  # Safe Position Exit Time
    0x30080166: Rule("D", full_dates="K", modified_dates="C"),  # Safe Position Return Date
    0x30080168: Rule("D", full_dates="K", modified_dates="C"),  # Safe Position Return Time
    0x30080250: Rule("X/D", full_dates="K", modified_dates="C"),  # Treatment Date
    0x30080251: Rule("X/D", full_dates="K", modified_dates="C"),  # Treatment Time
    0x300A0002: Rule("D", clean_descriptors="C"),  # RT Plan Label
    0x300A0003: Rule("X", clean_descriptors="C"),  # RT Plan Name
    0x300A0004: Rule("X", clean_descriptors="C"),  # RT Plan Description
    0x300A0006: Rule("X/D", full_dates="K", modified_dates="C"),  # RT Plan Date
    0x300A0007: Rule("X/D", full_dates="K", modified_dates="C"),  # RT Plan Time
    0x300A000B: Rule("X", clean_descriptors="C"),  # Treatment Sites
    0x300A000E: Rule("X", clean_descriptors="C"),  # Prescription Description
    0x300A0013: Rule("U", uids="K"),  # Dose Reference UID
    0x300A0016: Rule("X", clean_descriptors="C"),  # Dose Reference Description
    0x300A0072: Rule("X", clean_descriptors="C"),  # Fraction Group Description
    0x300A0083: Rule("U", uids="K"),  # Referenced Dose Reference UID
    0x300A00B2: Rule("X/Z", device="K"),  # Treatment Machine Name
    0x300A00C3: Rule("X", clean_descriptors="C"),  # Beam Description
    0x300A00DD: Rule("X", clean_descriptors="C"),  # Bolus Description
    0x300A0196: Rule("X", clean_descriptors="C"),  # Fixation Device Description
    0x300A01A6: Rule("X", clean_descriptors="C"),  # Shielding Device Description
    0x300A01B2: Rule("X", clean_descriptors="C"),  # Setup Technique Description
    0x300A0216: Rule("X", device="K"),  # Source Manufacturer
    0x300A022C: Rule("D", full_dates="K", modified_dates="C"),  # Source Strength Reference Date
    0x300A022E: Rule("D", full_dates="K", modified_dates="C"),  # Source Strength Reference Time
    0x300A02EB: Rule("X", clean_descriptors="C"),  # Compensator Description
    0x300A0608: Rule("D", clean_descriptors="C"),  # Treatment Position Group Label
    0x300A0609: Rule("U", uids="K"),  # Treatment Position Group UID
    0x300A0611: Rule("Z"),  # RT Accessory Holder Slot ID
    0x300A0615: Rule("Z"),  # RT Accessory Device Slot ID
    0x300A0619: Rule("D", clean_descriptors="C"),  # Radiation Dose Identification Label
    0x300A0623: Rule("D", clean_descriptors="C"),  # Radiation Dose In-Vivo Measurement Label
    0x300A062A: Rule("D", clean_descriptors="C"),  # RT Tolerance Set Label
    0x300A0650: Rule("U", uids="K"),  # Patient Setup UID
    0x300A0676: Rule("X", clean_descriptors="C"),  # Equipment Frame of Reference Description
    0x300A067C: Rule("D", clean_descriptors="C"),  # Radiation GenerationMode Label
    0x300A067D: Rule("Z", clean_descriptors="C"),  # Radiation GenerationMode Description
    0x300A0700: Rule("U", uids="K"),  # Treatment Session UID
    0x300A0734: Rule("D", clean_descriptors="C"),  # Treatment Tolerance Violation Description
    0x300A0736: Rule("D", full_dates="K", modified_dates="C"),  # Treatment Tolerance Violation DateTime
    0x300A073A: Rule("D", full_dates="K", modified_dates="C"),  # Recorded RT Control Point DateTime
    0x300A0741: Rule("D", full_dates="K", modified_dates="C"),  # Interlock DateTime
    0x300A0742: Rule("D", clean_descriptors="C"),  # Interlock Description
    0x300A0760: Rule("D", full_dates="K", modified_dates="C"),  # Override DateTime
    0x300A0783: Rule("D", clean_descriptors="C"),  # Interlock Origin Description
    0x300A0785: Rule("U", uids="K"),  # Referenced Treatment Position Group UID
    0x300A078E: Rule("X", clean_descriptors="C"),  # Patient Treatment Preparation Procedure Parameter Description
    0x300A0792: Rule("X", clean_descriptors="C"),  # Patient Treatment Preparation Method Description
    0x300A0794: Rule("X", clean_descriptors="C"),  # Patient Setup Photo Description
    0x300A079A: Rule("X", clean_descriptors="C"),  # Displacement Reference Label
    0x300C0113: Rule("X", clean_descriptors="C"),  # Reason for Omission Description
    0x300C0127: Rule("D", full_dates="K", modified_dates="C"),  # Beam Hold Transition DateTime
    0x300E0004: Rule("Z", full_dates="K", modified_dates="C"),  # Review Date
    0x300E0005: Rule("Z", full_dates="K", modified_dates="C"),  # Review Time
    0x300E0008: Rule("X/Z"),  # Reviewer Name
    0x30100006: Rule("U", uids="K"),  # Conceptual Volume UID
    0x3010000B: Rule("U", uids="K"),  # Referenced Conceptual Volume UID
    0x3010000F: Rule("Z", clean_descriptors="C"),  # Conceptual Volume Combination Description
    0x30100013: Rule("U", uids="K"),  # Constituent Conceptual Volume UID
    0x30100015: Rule("U", uids="K"),  # Source Conceptual Volume UID
    0x30100017: Rule("Z", clean_descriptors="C"),  # Conceptual Volume Description
    0x3010001B: Rule("Z"),  # Device Alternate Identifier
    0x3010002D: Rule("D", device="K"),  # Device Label
    0x30100031: Rule("U", uids="K"),  # Referenced Fiducials UID
    0x30100033: Rule("D", clean_descriptors="C"),  # User Content Label
    0x30100034: Rule("D", clean_descriptors="C"),  # User Content Long Label
    0x30100035: Rule("D", clean_descriptors="C"),  # Entity Label
    0x30100036: Rule("X", clean_descriptors="C"),  # Entity Name
    0x30100037: Rule("X", clean_descriptors="C"),  # Entity Description
    0x30100038: Rule("D", clean_descriptors="C"),  # Entity Long Label
    0x3010003B: Rule("U", uids="K"),  # RT Treatment Phase UID
    0x30100043: Rule("Z", device="K"),  # Manufacturer's Device Identifier
    0x3010004C: Rule("X/D", full_dates="K", modified_dates="C"),  # Intended Phase Start Date
    0x3010004D: Rule("X/D", full_dates="K", modified_dates="C"),  # Intended Phase End Date
    0x30100054: Rule("D", clean_descriptors="C"),  # RT Prescription Label
    0x30100056: Rule("X/D", clean_descriptors="C"),  # RT Treatment Approach Label
    0x3010005A: Rule("Z", clean_descriptors="C"),  # RT Physician Intent Narrative
    0x3010005C: Rule("Z", clean_descriptors="C"),  # Reason for Superseding
    0x30100061: Rule("X", clean_descriptors="C"),  # Prior Treatment Dose Description
    0x3010006E: Rule("U", uids="K"),  # Dosimetric Objective UID
    0x3010006F: Rule("U", uids="K"),  # Referenced Dosimetric Objective UID
    0x30100077: Rule("X/D", clean_descriptors="C"),  # Treatment Site
    0x3010007A: Rule("Z", clean_descriptors="C"),  # Treatment Technique Notes
    0x3010007B: Rule("Z", clean_descriptors="C"),  # Prescription Notes
    0x3010007F: Rule("Z", clean_descriptors="C"),  # Fractionation Notes
    0x30100081: Rule("Z", clean_descriptors="C"),  # Prescription Notes Sequence
    0x30100085: Rule("X", full_dates="K", modified_dates="C"),  # Intended Fraction Start Time
    0x40000010: Rule("X"),  # Arbitrary
    0x40004000: Rule("X"),  # Text Comments
    0x40080040: Rule("X"),  # Results ID
    0x40080042: Rule("X"),  # Results ID Issuer
    0x40080100: Rule("X", full_dates="K", modified_dates="C"),  # Interpretation Recorded Date
    0x40080101: Rule("X", full_dates="K", modified_dates="C"),  # Interpretation Recorded Time
    0x40080102: Rule("X"),  # Interpretation Recorder
    0x40080108: Rule("X", full_dates="K", modified_dates="C"),  # Interpretation Transcription Date
    0x40080109: Rule("X", full_dates="K", modified_dates="C"),  # Interpretation Transcription Time
    0x4008010A: Rule("X"),  # Interpretation Transcriber
    0x4008010B: Rule("X", clean_descriptors="C"),  # Interpretation Text
    0x4008010C: Rule("X"),  # Interpretation Author
    0x40080111: Rule("X"),  # Interpretation Approver Sequence
    0x40080112: Rule("X", full_dates="K", modified_dates="C"),  # Interpretation Approval Date
    0x40080113: Rule("X", full_dates="K", modified_dates="C"),  # Interpretation Approval Time
    0x40080114: Rule("X"),  # Physician Approving Interpretation
    0x40080115: Rule("X", clean_descriptors="C"),  # Interpretation Diagnosis Description
    0x40080118: Rule("X"),  # Results Distribution List Sequence
    0x40080119: Rule("X"),  # Distribution Name
    0x4008011A: Rule("X"),  # Distribution Address
    0x40080200: Rule("X"),  # Interpretation ID
    0x40080202: Rule("X"),  # Interpretation ID Issuer
    0x40080300: Rule("X", clean_descriptors="C"),  # Impressions
    0x40084000: Rule("X", clean_descriptors="C"),  # Results Comments
    0xFFFAFFFA: Rule("X"),  # Digital Signatures Sequence
    0xFFFCFFFC: Rule("X"),  # Data Set Trailing Padding
}

#: (50xx,xxxx) Curve Data: every element of the retired curve groups.
CURVE_RULE = Rule("X", clean_graphics="C")

#: (60xx,3000) Overlay Data and (60xx,4000) Overlay Comments, keyed by the element number.
OVERLAY_RULES: dict[int, Rule] = {
    0x3000: Rule("X", clean_graphics="C"),  # Overlay Data
    0x4000: Rule("X", clean_graphics="C"),  # Overlay Comments
}

#: (gggg,eeee) where gggg is odd: private attributes.
PRIVATE_RULE = Rule("X", safe_private="C")

#: Identifying attributes that Table E.1-1 does not list, removed like their listed
#: neighbours (the same gaps dcm4che's ``DeIdentifier`` marks "missing in Part 15").
SUPPLEMENTARY: dict[int, Rule] = {
    0x00080051: Rule("X"),  # Issuer of Accession Number Sequence
    0x0008103F: Rule("X", clean_descriptors="C"),  # Series Description Code Sequence
    0x00100024: Rule("X"),  # Issuer of Patient ID Qualifiers Sequence
    0x00100033: Rule("X", full_dates="K", modified_dates="C"),  # Patient's Birth Date in Alternative Calendar
    0x00100034: Rule("X", full_dates="K", modified_dates="C"),  # Patient's Death Date in Alternative Calendar
    0x00321031: Rule("X"),  # Requesting Physician Identification Sequence
    0x00321034: Rule("X"),  # Requesting Service Code Sequence
    0x00404009: Rule("X"),  # Human Performer Code Sequence
}

#: Retain Safe Private Option (PS3.15 E.3.10): the private attributes kept, as
#: (group, private creator) -> element offsets within the creator's block (the low byte of
#: the element number). A small allow-list after the exemplary safe attributes of PS3.15
#: Table E.3.10-1: numeric acquisition parameters (diffusion b-values and directions, mosaic
#: layout, PET quantitation factors) that carry no identity. Everything else private goes.
SAFE_PRIVATE: dict[tuple[int, str], frozenset[int]] = {
    # Siemens MR: mosaic, b-value, diffusion directionality / direction, b-matrix, timing
    (0x0019, "SIEMENS MR HEADER"): frozenset(
        {0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x11, 0x12, 0x13, 0x14, 0x15,
         0x16, 0x17, 0x18, 0x27, 0x28, 0x29}
    ),
    # GE MR: diffusion direction (user data 20-22) and b-value (slop_int_6..9)
    (0x0019, "GEMS_ACQU_01"): frozenset({0xBB, 0xBC, 0xBD}),
    (0x0043, "GEMS_PARM_01"): frozenset({0x39}),
    # Philips MR: diffusion b-factor and direction
    (0x2001, "Philips Imaging DD 001"): frozenset({0x03, 0x04}),
    (0x2005, "Philips MR Imaging DD 001"): frozenset({0xB0, 0xB1, 0xB2}),
    # Philips PET: SUV factor, activity concentration scale factor
    (0x7053, "Philips PET Private Group"): frozenset({0x00, 0x09}),
}


def rule_for(tag: int) -> Rule | None:
    """The rule of ``tag`` (an int), pattern rows included; ``None`` if the table is silent.

    Private tags (odd groups) answer :data:`PRIVATE_RULE`; (50xx,eeee) :data:`CURVE_RULE`;
    (60xx,3000) and (60xx,4000) the overlay rules (xx even, as PS3.5 7.6 repeating groups).
    """
    group, element = tag >> 16, tag & 0xFFFF
    if group & 1:
        return PRIVATE_RULE
    if 0x5000 <= group <= 0x50FF:
        return CURVE_RULE
    if 0x6000 <= group <= 0x60FF:
        return OVERLAY_RULES.get(element)
    return TABLE.get(tag) or SUPPLEMENTARY.get(tag)

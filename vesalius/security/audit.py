"""The audit trail: DICOM audit messages, an append-only hash-chained store, syslog forwarding.

After DICOM PS3.15 A.5 (the DICOM Audit Message, derived from RFC 3881) and IHE ATNA:

1. **Messages.** :class:`AuditEvent` is one audit message and :meth:`AuditEvent.to_xml` writes
   it as the ``<AuditMessage>`` of the PS3.15 A.5.1 schema (``EventIdentification``,
   ``ActiveParticipant``, ``AuditSourceIdentification``, ``ParticipantObjectIdentification``;
   coded values as ``csd-code`` / ``codeSystemName`` / ``originalText``). One builder per
   message of PS3.15 A.5.3 the archive emits: :func:`user_authentication` (110114),
   :func:`query` (110112), :func:`instances_accessed` (110103), :func:`begin_transferring`
   (110102), :func:`instances_transferred` (110104), :func:`data_export` (110106),
   :func:`data_import` (110107), :func:`study_deleted` (110105), :func:`security_alert`
   (110113), :func:`application_activity` (110100). :func:`parse_audit_message` reads one back.
2. **Store.** :class:`AuditLog` appends each message to ``audit_log`` (tables in
   :mod:`vesalius.index.models`, migration ``0002``). Records are hash-chained:
   ``hash = SHA-256(prev_hash || canonical record bytes)``; the chain's position and last hash
   are kept in the one-row ``audit_head``, whose row lock (PostgreSQL ``SELECT ... FOR UPDATE``;
   SQLite ``BEGIN IMMEDIATE``) keeps concurrent writers, threads or processes, on one line.
   :meth:`AuditLog.verify` walks the chain and finds any edited, inserted or deleted record,
   a deleted tail included. Triggers refuse UPDATE and DELETE on the audit tables.
3. **Forwarding.** :class:`SyslogForwarder` sends each message to a collector as RFC 5424
   syslog over TLS (RFC 5425, octet-counting framing), through a local spool of fsynced files,
   in order, so nothing is lost while the collector is down.

PHI. The audit trail holds PHI by design: patient IDs (names only when a caller passes them),
study UIDs, user names and network addresses; that is what makes "who saw this patient's
images" answerable. It is stored in the audit tables and sent to the configured collector,
nowhere else. Nothing in this module writes an audit message, a patient or study identifier,
a user name or a query to the ``logging`` module: log lines say what failed (exception class,
collector host:port, spool counts). Database errors are reported by class name only and
without their cause chained, because SQLAlchemy's messages repeat the statement's parameters.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import ipaddress
import json
import logging
import os
import random
import re
import socket
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from pathlib import Path
from select import select as io_select
from types import TracebackType
from typing import Any, Literal

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from vesalius.errors import VesaliusError
from vesalius.index.db import write_engine
from vesalius.index.models import audit_head, audit_log, audit_refs

log = logging.getLogger(__name__)

__all__ = [
    "GENESIS", "AccessEntry", "ActiveParticipant", "AuditError", "AuditEvent", "AuditLog",
    "AuditRecord", "AuditSource", "ChainProblem", "Code", "DataLifeCycle", "EventAction",
    "EventID", "EventType", "NetworkAccessPointType", "ObjectDescription", "ObjectIDType",
    "ObjectRole", "ObjectType", "Outcome", "Participant", "ParticipantObject", "Party",
    "PatientAccessReport", "PatientRef", "RoleID", "SOPClassCount", "StudyRef", "SyslogForwarder",
    "UserAccess", "VerifyReport", "application_activity", "begin_transferring", "chain_hash",
    "client_tls_context", "data_export", "data_import", "instances_accessed",
    "instances_transferred", "parse_audit_message", "query", "security_alert", "study_deleted",
    "user_authentication", "verify_cli_summary",
]


class AuditError(VesaliusError):
    """The audit trail could not be written or is damaged; the message says what to do."""


# ----------------------------------------------------------------------------- coded values


@dataclass(frozen=True)
class Code:
    """A coded value (PS3.15 A.5.1 ``CodedValueType``): ``csd-code``, ``codeSystemName``,
    ``originalText`` (the DICOM Code Meaning)."""

    code: str
    scheme: str
    meaning: str


DCM = "DCM"
RFC_3881 = "RFC-3881"


class EventID:
    """EventID of each audit message (PS3.15 A.5.3; PS3.16 CID 400)."""

    APPLICATION_ACTIVITY = Code("110100", DCM, "Application Activity")
    AUDIT_LOG_USED = Code("110101", DCM, "Audit Log Used")
    BEGIN_TRANSFERRING = Code("110102", DCM, "Begin Transferring DICOM Instances")
    INSTANCES_ACCESSED = Code("110103", DCM, "DICOM Instances Accessed")
    INSTANCES_TRANSFERRED = Code("110104", DCM, "DICOM Instances Transferred")
    STUDY_DELETED = Code("110105", DCM, "DICOM Study Deleted")
    EXPORT = Code("110106", DCM, "Export")
    IMPORT = Code("110107", DCM, "Import")
    NETWORK_ENTRY = Code("110108", DCM, "Network Entry")
    QUERY = Code("110112", DCM, "Query")
    SECURITY_ALERT = Code("110113", DCM, "Security Alert")
    USER_AUTHENTICATION = Code("110114", DCM, "User Authentication")


class EventType:
    """EventTypeCode values (PS3.16 CID 401, 402, 403 Security Alert Type)."""

    APPLICATION_START = Code("110120", DCM, "Application Start")
    APPLICATION_STOP = Code("110121", DCM, "Application Stop")
    LOGIN = Code("110122", DCM, "Login")
    LOGOUT = Code("110123", DCM, "Logout")
    NODE_AUTHENTICATION = Code("110126", DCM, "Node Authentication")
    EMERGENCY_OVERRIDE_STARTED = Code("110127", DCM, "Emergency Override Started")
    NETWORK_CONFIGURATION = Code("110128", DCM, "Network Configuration")
    SECURITY_CONFIGURATION = Code("110129", DCM, "Security Configuration")
    HARDWARE_CONFIGURATION = Code("110130", DCM, "Hardware Configuration")
    SOFTWARE_CONFIGURATION = Code("110131", DCM, "Software Configuration")
    USE_OF_RESTRICTED_FUNCTION = Code("110132", DCM, "Use of Restricted Function")
    AUDIT_RECORDING_STOPPED = Code("110133", DCM, "Audit Recording Stopped")
    AUDIT_RECORDING_STARTED = Code("110134", DCM, "Audit Recording Started")
    OBJECT_SECURITY_ATTRIBUTES_CHANGED = Code("110135", DCM, "Object Security Attributes Changed")
    SECURITY_ROLES_CHANGED = Code("110136", DCM, "Security Roles Changed")
    USER_SECURITY_ATTRIBUTES_CHANGED = Code("110137", DCM, "User security Attributes Changed")
    EMERGENCY_OVERRIDE_STOPPED = Code("110138", DCM, "Emergency Override Stopped")
    REMOTE_SERVICE_OPERATION_STARTED = Code("110139", DCM, "Remote Service Operation Started")
    REMOTE_SERVICE_OPERATION_STOPPED = Code("110140", DCM, "Remote Service Operation Stopped")
    LOCAL_SERVICE_OPERATION_STARTED = Code("110141", DCM, "Local Service Operation Started")
    LOCAL_SERVICE_OPERATION_STOPPED = Code("110142", DCM, "Local Service Operation Stopped")


class RoleID:
    """RoleIDCode of active participants (PS3.16 CID 402)."""

    APPLICATION = Code("110150", DCM, "Application")
    APPLICATION_LAUNCHER = Code("110151", DCM, "Application Launcher")
    DESTINATION = Code("110152", DCM, "Destination Role ID")
    SOURCE = Code("110153", DCM, "Source Role ID")
    DESTINATION_MEDIA = Code("110154", DCM, "Destination Media")
    SOURCE_MEDIA = Code("110155", DCM, "Source Media")


class ObjectIDType:
    """ParticipantObjectIDTypeCode values (PS3.15 A.5.1.2.4 / RFC 3881, PS3.16 CID 404)."""

    PATIENT_NUMBER = Code("2", RFC_3881, "Patient Number")
    URI = Code("12", RFC_3881, "URI")
    STUDY_INSTANCE_UID = Code("110180", DCM, "Study Instance UID")
    SOP_CLASS_UID = Code("110181", DCM, "SOP Class UID")
    NODE_ID = Code("110182", DCM, "Node ID")


class EventAction(StrEnum):
    """EventActionCode (PS3.15 A.5.1)."""

    CREATE = "C"
    READ = "R"
    UPDATE = "U"
    DELETE = "D"
    EXECUTE = "E"


class Outcome(IntEnum):
    """EventOutcomeIndicator (PS3.15 A.5.1)."""

    SUCCESS = 0
    MINOR_FAILURE = 4  # e.g. invalid password on a first try
    SERIOUS_FAILURE = 8  # e.g. invalid password with excess retries
    MAJOR_FAILURE = 12  # e.g. account disabled after excessive failed log-ons


class NetworkAccessPointType(IntEnum):
    MACHINE_NAME = 1
    IP_ADDRESS = 2
    TELEPHONE = 3
    EMAIL = 4
    URI = 5


class ObjectType(IntEnum):
    """ParticipantObjectTypeCode."""

    PERSON = 1
    SYSTEM_OBJECT = 2
    ORGANIZATION = 3
    OTHER = 4


class ObjectRole(IntEnum):
    """ParticipantObjectTypeCodeRole (PS3.15 A.5.1.2.2), the values the archive uses."""

    PATIENT = 1
    LOCATION = 2
    REPORT = 3
    RESOURCE = 4
    MASTER_FILE = 5
    USER = 6
    LIST = 7
    SECURITY_USER_ENTITY = 11
    SECURITY_RESOURCE = 13
    DATA_DESTINATION = 16
    DATA_REPOSITORY = 17
    QUERY = 24


class DataLifeCycle(IntEnum):
    """ParticipantObjectDataLifeCycle (PS3.15 A.5.1.2.3)."""

    ORIGINATION = 1
    IMPORT = 2
    AMENDMENT = 3
    VERIFICATION = 4
    TRANSLATION = 5
    ACCESS = 6
    DEIDENTIFICATION = 7
    AGGREGATION = 8
    REPORT = 9
    EXPORT = 10
    DISCLOSURE = 11
    RECEIPT_OF_DISCLOSURE = 12
    ARCHIVING = 13
    LOGICAL_DELETION = 14
    PERMANENT_ERASURE = 15


#: Study Root Query/Retrieve Information Model - FIND: the SOP Class of a study-level query.
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"

_EVENT_NAMES = {c.code: c.meaning for c in vars(EventID).values() if isinstance(c, Code)}
_ACTION_NAMES = {"C": "Create", "R": "Read", "U": "Update", "D": "Delete", "E": "Execute"}
_KNOWN_CODES = {(c.code, c.scheme): c for k in (EventID, EventType, RoleID, ObjectIDType)
                for c in vars(k).values() if isinstance(c, Code)}


def event_name(code: str) -> str:
    """The EventID's meaning for ``code`` (``"110112"`` -> ``"Query"``), or the code itself."""
    return _EVENT_NAMES.get(code, code)


# ----------------------------------------------------------------------------- text helpers

# Characters XML 1.0 cannot carry (controls, lone surrogates, U+FFFE/FFFF) and PostgreSQL text
# refuses (NUL): replaced, so hostile input (a user name, an AE title) never breaks a record.
_XML_BAD = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: str) -> str:
    return _XML_BAD.sub("\ufffd", text)


def _utc(dt: datetime) -> datetime:
    """``dt`` in UTC; a naive value (SQLite returns those) is taken as UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _iso(dt: datetime) -> str:
    """xsd:dateTime / RFC 3339 in UTC with microseconds: ``2026-01-02T03:04:05.123456Z``."""
    return _utc(dt).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _parse_iso(text: str) -> datetime:
    return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


@functools.cache
def _hostname() -> str:
    return socket.gethostname() or "localhost"


# ----------------------------------------------------------------------------- message model


@dataclass(frozen=True)
class ActiveParticipant:
    """One ``ActiveParticipant``: a user or process taking part in the event."""

    user_id: str
    user_is_requestor: bool
    roles: tuple[Code, ...] = ()
    alternative_user_id: str | None = None
    user_name: str | None = None
    network_access_point_id: str | None = None
    network_access_point_type: NetworkAccessPointType | None = None
    media_type: Code | None = None  # MediaIdentifier/MediaType, for export and import media


def _access_point_type(address: str) -> NetworkAccessPointType:
    try:
        ipaddress.ip_address(address.strip("[]"))
        return NetworkAccessPointType.IP_ADDRESS
    except ValueError:
        pass
    return NetworkAccessPointType.URI if "://" in address else NetworkAccessPointType.MACHINE_NAME


@dataclass(frozen=True)
class Party:
    """Who took part, as the builders take it: a person (user name) or an application (AE
    title, URL), where from (IP address or host name), and its process ID or other alias."""

    user_id: str
    address: str | None = None
    alternative_user_id: str | None = None
    user_name: str | None = None

    @classmethod
    def application(cls, name: str = "VESALIUS", address: str | None = None) -> Party:
        """This process: ``name`` (the AE title), this host, the PID as AlternativeUserID."""
        return cls(name, address=address or _hostname(), alternative_user_id=str(os.getpid()))

    def as_participant(self, *, requestor: bool, roles: Sequence[Code] = (),
                       media_type: Code | None = None) -> ActiveParticipant:
        return ActiveParticipant(
            user_id=self.user_id, user_is_requestor=requestor, roles=tuple(roles),
            alternative_user_id=self.alternative_user_id, user_name=self.user_name,
            network_access_point_id=self.address or None,
            network_access_point_type=_access_point_type(self.address) if self.address else None,
            media_type=media_type)


@dataclass(frozen=True)
class SOPClassCount:
    """A ``SOPClass`` element: a SOP Class UID, how many instances of it, optionally which."""

    uid: str
    count: int
    instances: tuple[str, ...] = ()


@dataclass(frozen=True)
class ObjectDescription:
    """The DICOM object description of a participant object (PS3.15 A.5.1
    ``DICOMObjectDescriptionContents``), written inside ``ParticipantObjectDescription``."""

    mpps: tuple[str, ...] = ()
    accessions: tuple[str, ...] = ()
    sop_classes: tuple[SOPClassCount, ...] = ()
    contains_studies: tuple[str, ...] = ()
    encrypted: bool | None = None
    anonymized: bool | None = None


@dataclass(frozen=True)
class ParticipantObject:
    """One ``ParticipantObjectIdentification``: a patient, study, query, alert subject ..."""

    object_id: str
    id_type: Code
    type_code: ObjectType | None = None
    role: ObjectRole | None = None
    life_cycle: DataLifeCycle | None = None
    sensitivity: str | None = None
    name: str | None = None
    query: bytes | None = None
    details: tuple[tuple[str, bytes], ...] = ()
    description: ObjectDescription | None = None


@dataclass(frozen=True)
class PatientRef:
    """A patient as an audit message names it: type 1 (person), role 1 (patient), ID type
    (2, RFC-3881, "Patient Number"); with an issuer the ID is written ``ID^^^Issuer`` (HL7 CX).
    ``name`` is written as ParticipantObjectName only when given (it is optional, and PHI)."""

    patient_id: str
    issuer: str = ""
    name: str | None = None

    @property
    def object_id(self) -> str:
        return f"{self.patient_id}^^^{self.issuer}" if self.issuer else self.patient_id

    def participant_object(self) -> ParticipantObject:
        return ParticipantObject(self.object_id, ObjectIDType.PATIENT_NUMBER, ObjectType.PERSON,
                                 ObjectRole.PATIENT, name=self.name)


@dataclass(frozen=True)
class StudyRef:
    """A study as an audit message names it: type 2, role 3 (report), ID type (110180, DCM,
    "Study Instance UID"), with the SOP classes and instance counts concerned."""

    study_uid: str
    sop_classes: tuple[SOPClassCount, ...] = ()
    accession_numbers: tuple[str, ...] = ()

    @classmethod
    def of(cls, study_uid: str, counts: Mapping[str, int] | None = None, accession: str = "") -> StudyRef:
        """``StudyRef.of(uid, {sop_class_uid: n_instances}, accession)``."""
        return cls(study_uid, tuple(SOPClassCount(uid, n) for uid, n in (counts or {}).items()),
                   (accession,) if accession else ())

    def participant_object(self, life_cycle: DataLifeCycle | None = None) -> ParticipantObject:
        desc = (ObjectDescription(accessions=self.accession_numbers, sop_classes=self.sop_classes)
                if self.sop_classes or self.accession_numbers else None)
        return ParticipantObject(self.study_uid, ObjectIDType.STUDY_INSTANCE_UID, ObjectType.SYSTEM_OBJECT,
                                 ObjectRole.REPORT, life_cycle=life_cycle, description=desc)


@dataclass(frozen=True)
class AuditSource:
    """``AuditSourceIdentification``: who reports. Type code 4: application server process."""

    source_id: str
    enterprise_site_id: str | None = None
    type_codes: tuple[str, ...] = ("4",)

    @classmethod
    def local(cls, site: str | None = None) -> AuditSource:
        return cls(f"vesalius@{_hostname()}", site)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AuditEvent:
    """One DICOM audit message (PS3.15 A.5.1). Build it with the functions below."""

    event_id: Code
    action: EventAction
    outcome: Outcome
    participants: tuple[ActiveParticipant, ...]
    source: AuditSource
    objects: tuple[ParticipantObject, ...] = ()
    event_types: tuple[Code, ...] = ()
    outcome_description: str | None = None
    at: datetime = field(default_factory=_now)

    def __post_init__(self) -> None:
        if not self.participants:
            raise ValueError("an audit message needs at least one ActiveParticipant (PS3.15 A.5.1)")
        object.__setattr__(self, "action", EventAction(self.action))
        object.__setattr__(self, "outcome", Outcome(self.outcome))
        object.__setattr__(self, "at", _utc(self.at))
        for name in ("participants", "objects", "event_types"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def requestor(self) -> ActiveParticipant:
        """The participant that asked for the event (UserIsRequestor), else the first."""
        return next((p for p in self.participants if p.user_is_requestor), self.participants[0])

    @property
    def patient_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(o.object_id for o in self.objects
                                   if o.type_code == ObjectType.PERSON and o.role == ObjectRole.PATIENT))

    @property
    def study_uids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(o.object_id for o in self.objects
                                   if o.id_type.code == ObjectIDType.STUDY_INSTANCE_UID.code))

    @property
    def msgid(self) -> str:
        """The syslog MSGID: the event's name without spaces (``DICOMInstancesAccessed``)."""
        return re.sub(r"[^A-Za-z0-9]", "", self.event_id.meaning)[:32] or self.event_id.code

    def to_xml(self) -> str:
        """The ``<AuditMessage>`` document (UTF-8 declaration, no pretty-printing)."""
        root = ET.Element("AuditMessage")
        ei = ET.SubElement(root, "EventIdentification", {
            "EventActionCode": self.action.value,
            "EventDateTime": _iso(self.at),
            "EventOutcomeIndicator": str(int(self.outcome)),
        })
        _code_element(ei, "EventID", self.event_id)
        for t in self.event_types:
            _code_element(ei, "EventTypeCode", t)
        if self.outcome_description:
            ET.SubElement(ei, "EventOutcomeDescription").text = _clean(self.outcome_description)
        for p in self.participants:
            attrs = {"UserID": p.user_id}
            if p.alternative_user_id:
                attrs["AlternativeUserID"] = p.alternative_user_id
            if p.user_name:
                attrs["UserName"] = p.user_name
            attrs["UserIsRequestor"] = "true" if p.user_is_requestor else "false"
            if p.network_access_point_id:
                attrs["NetworkAccessPointID"] = p.network_access_point_id
                kind = p.network_access_point_type or _access_point_type(p.network_access_point_id)
                attrs["NetworkAccessPointTypeCode"] = str(int(kind))
            ap = ET.SubElement(root, "ActiveParticipant", _clean_attrs(attrs))
            for r in p.roles:
                _code_element(ap, "RoleIDCode", r)
            if p.media_type is not None:
                _code_element(ET.SubElement(ap, "MediaIdentifier"), "MediaType", p.media_type)
        src: dict[str, str] = {}
        if self.source.enterprise_site_id:
            src["AuditEnterpriseSiteID"] = self.source.enterprise_site_id
        src["AuditSourceID"] = self.source.source_id
        asi = ET.SubElement(root, "AuditSourceIdentification", _clean_attrs(src))
        for type_code in self.source.type_codes:
            ET.SubElement(asi, "AuditSourceTypeCode", {"csd-code": _clean(type_code)})
        for o in self.objects:
            _object_element(root, o)
        return '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")


def _clean_attrs(attrs: Mapping[str, str]) -> dict[str, str]:
    return {k: _clean(v) for k, v in attrs.items()}


def _code_element(parent: ET.Element, tag: str, code: Code) -> ET.Element:
    return ET.SubElement(parent, tag, _clean_attrs(
        {"csd-code": code.code, "codeSystemName": code.scheme, "originalText": code.meaning}))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _object_element(root: ET.Element, o: ParticipantObject) -> None:
    attrs = {"ParticipantObjectID": o.object_id}
    if o.type_code is not None:
        attrs["ParticipantObjectTypeCode"] = str(int(o.type_code))
    if o.role is not None:
        attrs["ParticipantObjectTypeCodeRole"] = str(int(o.role))
    if o.life_cycle is not None:
        attrs["ParticipantObjectDataLifeCycle"] = str(int(o.life_cycle))
    if o.sensitivity:
        attrs["ParticipantObjectSensitivity"] = o.sensitivity
    po = ET.SubElement(root, "ParticipantObjectIdentification", _clean_attrs(attrs))
    _code_element(po, "ParticipantObjectIDTypeCode", o.id_type)
    if o.name:
        ET.SubElement(po, "ParticipantObjectName").text = _clean(o.name)
    elif o.query is not None:
        ET.SubElement(po, "ParticipantObjectQuery").text = _b64(o.query)
    for kind, value in o.details:
        ET.SubElement(po, "ParticipantObjectDetail", {"type": _clean(kind), "value": _b64(value)})
    d = o.description
    if d is None:
        return
    de = ET.SubElement(po, "ParticipantObjectDescription")
    for uid in d.mpps:
        ET.SubElement(de, "MPPS", {"UID": _clean(uid)})
    for number in d.accessions:
        ET.SubElement(de, "Accession", {"Number": _clean(number)})
    for sc in d.sop_classes:
        se = ET.SubElement(de, "SOPClass", {"UID": _clean(sc.uid), "NumberOfInstances": str(int(sc.count))})
        for uid in sc.instances:
            ET.SubElement(se, "Instance", {"UID": _clean(uid)})
    if d.contains_studies:
        cs = ET.SubElement(de, "ParticipantObjectContainsStudy")
        for uid in d.contains_studies:
            ET.SubElement(cs, "StudyIDs", {"UID": _clean(uid)})
    if d.encrypted is not None:
        ET.SubElement(de, "Encrypted").text = "true" if d.encrypted else "false"
    if d.anonymized is not None:
        ET.SubElement(de, "Anonymized").text = "true" if d.anonymized else "false"


def _read_code(el: ET.Element | None) -> Code:
    if el is None:
        raise ValueError("audit message lacks a required coded value")
    code = el.get("csd-code", "")
    scheme = el.get("codeSystemName", "")
    known = _KNOWN_CODES.get((code, scheme))
    return Code(code, scheme, el.get("originalText", known.meaning if known else ""))


def _opt_int(text: str | None) -> int | None:
    return int(text) if text not in (None, "") else None


def _bool(text: str | None) -> bool | None:
    return None if text is None else text.strip().lower() in ("true", "1")


def parse_audit_message(xml: str | bytes) -> AuditEvent:
    """Read an ``<AuditMessage>`` written by :meth:`AuditEvent.to_xml` (or another source
    following the same schema) back into an :class:`AuditEvent`."""
    root = ET.fromstring(xml)
    if root.tag != "AuditMessage":
        raise ValueError(f"not a DICOM audit message: root element <{root.tag}>")
    ei = root.find("EventIdentification")
    if ei is None:
        raise ValueError("audit message lacks EventIdentification")
    participants = []
    for ap in root.findall("ActiveParticipant"):
        media = ap.find("MediaIdentifier/MediaType")
        nap_type = _opt_int(ap.get("NetworkAccessPointTypeCode"))
        participants.append(ActiveParticipant(
            user_id=ap.get("UserID", ""), user_is_requestor=bool(_bool(ap.get("UserIsRequestor"))),
            roles=tuple(_read_code(r) for r in ap.findall("RoleIDCode")),
            alternative_user_id=ap.get("AlternativeUserID"), user_name=ap.get("UserName"),
            network_access_point_id=ap.get("NetworkAccessPointID"),
            network_access_point_type=NetworkAccessPointType(nap_type) if nap_type else None,
            media_type=_read_code(media) if media is not None else None))
    asi = root.find("AuditSourceIdentification")
    source = AuditSource(
        source_id=asi.get("AuditSourceID", "") if asi is not None else "",
        enterprise_site_id=asi.get("AuditEnterpriseSiteID") if asi is not None else None,
        type_codes=tuple(t.get("csd-code", "") for t in asi.findall("AuditSourceTypeCode"))
        if asi is not None else ())
    objects = []
    for po in root.findall("ParticipantObjectIdentification"):
        query = po.findtext("ParticipantObjectQuery")
        de = po.find("ParticipantObjectDescription")
        desc = None
        if de is not None:
            cs = de.find("ParticipantObjectContainsStudy")
            desc = ObjectDescription(
                mpps=tuple(e.get("UID", "") for e in de.findall("MPPS")),
                accessions=tuple(e.get("Number", "") for e in de.findall("Accession")),
                sop_classes=tuple(SOPClassCount(e.get("UID", ""), int(e.get("NumberOfInstances", "0")),
                                                tuple(i.get("UID", "") for i in e.findall("Instance")))
                                  for e in de.findall("SOPClass")),
                contains_studies=tuple(e.get("UID", "") for e in cs.findall("StudyIDs")) if cs is not None else (),
                encrypted=_bool(de.findtext("Encrypted")), anonymized=_bool(de.findtext("Anonymized")))
        type_code = _opt_int(po.get("ParticipantObjectTypeCode"))
        role = _opt_int(po.get("ParticipantObjectTypeCodeRole"))
        life = _opt_int(po.get("ParticipantObjectDataLifeCycle"))
        objects.append(ParticipantObject(
            object_id=po.get("ParticipantObjectID", ""), id_type=_read_code(po.find("ParticipantObjectIDTypeCode")),
            type_code=ObjectType(type_code) if type_code else None,
            role=ObjectRole(role) if role is not None and role in ObjectRole._value2member_map_ else None,
            life_cycle=DataLifeCycle(life) if life else None,
            sensitivity=po.get("ParticipantObjectSensitivity"), name=po.findtext("ParticipantObjectName"),
            query=base64.b64decode(query) if query is not None else None,
            details=tuple((d.get("type", ""), base64.b64decode(d.get("value", "")))
                          for d in po.findall("ParticipantObjectDetail")),
            description=desc))
    return AuditEvent(
        event_id=_read_code(ei.find("EventID")), action=EventAction(ei.get("EventActionCode", "E")),
        outcome=Outcome(int(ei.get("EventOutcomeIndicator", "0"))), participants=tuple(participants),
        source=source, objects=tuple(objects),
        event_types=tuple(_read_code(t) for t in ei.findall("EventTypeCode")),
        outcome_description=ei.findtext("EventOutcomeDescription"),
        at=_parse_iso(ei.get("EventDateTime", "")))


# ----------------------------------------------------------------------------- builders


def _event(event_id: Code, action: EventAction, participants: Sequence[ActiveParticipant],
           objects: Sequence[ParticipantObject] = (), *, event_types: Sequence[Code] = (),
           outcome: Outcome, description: str | None, source: AuditSource | None,
           at: datetime | None) -> AuditEvent:
    return AuditEvent(event_id=event_id, action=action, outcome=outcome, participants=tuple(participants),
                      source=source or AuditSource.local(), objects=tuple(objects),
                      event_types=tuple(event_types), outcome_description=description,
                      at=at or _now())


def _study_objects(patient: PatientRef, studies: Sequence[StudyRef],
                   life_cycle: DataLifeCycle | None = None) -> list[ParticipantObject]:
    return [s.participant_object(life_cycle) for s in studies] + [patient.participant_object()]


def user_authentication(user: Party, *, logout: bool = False, outcome: Outcome = Outcome.SUCCESS,
                        authenticator: Party | None = None, description: str | None = None,
                        source: AuditSource | None = None, at: datetime | None = None) -> AuditEvent:
    """User Authentication (PS3.15 A.5.3.13, 110114): a login or logout, successful or not.

    ``user`` is the person authenticated (or who tried: a failed login names the user name
    given); ``authenticator`` the node that authenticated them. A failed attempt is
    :attr:`Outcome.MINOR_FAILURE`; one that locks the account, a serious or major failure.
    """
    parts = [user.as_participant(requestor=True)]
    if authenticator is not None:
        parts.append(authenticator.as_participant(requestor=False))
    return _event(EventID.USER_AUTHENTICATION, EventAction.EXECUTE, parts,
                  event_types=(EventType.LOGOUT if logout else EventType.LOGIN,),
                  outcome=outcome, description=description, source=source, at=at)


def query(requestor: Party, responder: Party, query: bytes, *, sop_class_uid: str = STUDY_ROOT_FIND,
          transfer_syntax: str | None = EXPLICIT_VR_LITTLE_ENDIAN, details: Mapping[str, bytes] | None = None,
          outcome: Outcome = Outcome.SUCCESS, description: str | None = None,
          source: AuditSource | None = None, at: datetime | None = None) -> AuditEvent:
    """Query (PS3.15 A.5.3.10, 110112): a C-FIND or QIDO-RS search.

    The participant object is the SOP Class queried: type 2, role 3 ("Report", as PS3.15
    A.5.3.10 requires for the "SOP Queried and the Query"), ID type (110181, DCM, "SOP Class
    UID"), ``query`` (the C-FIND identifier as encoded in ``transfer_syntax``, or the QIDO-RS
    query string) in ParticipantObjectQuery, base64. ``details`` adds ParticipantObjectDetail
    entries (e.g. ``{"QueryEncoding": b"UTF-8"}`` for QIDO-RS with ``transfer_syntax=None``).
    """
    det: list[tuple[str, bytes]] = []
    if transfer_syntax:
        det.append(("TransferSyntax", transfer_syntax.encode("ascii")))
    det.extend((details or {}).items())
    obj = ParticipantObject(sop_class_uid, ObjectIDType.SOP_CLASS_UID, ObjectType.SYSTEM_OBJECT,
                            ObjectRole.REPORT, query=query, details=tuple(det))
    parts = [requestor.as_participant(requestor=True, roles=(RoleID.SOURCE,)),
             responder.as_participant(requestor=False, roles=(RoleID.DESTINATION,))]
    return _event(EventID.QUERY, EventAction.EXECUTE, parts, [obj], outcome=outcome,
                  description=description, source=source, at=at)


def instances_accessed(user: Party, action: EventAction | str, patient: PatientRef,
                       studies: Sequence[StudyRef] = (), *, archive: Party | None = None,
                       outcome: Outcome = Outcome.SUCCESS, description: str | None = None,
                       source: AuditSource | None = None, at: datetime | None = None) -> AuditEvent:
    """DICOM Instances Accessed (PS3.15 A.5.3.6, 110103): instances created, read (viewed),
    updated or deleted (``action`` C/R/U/D) by ``user``, for one patient."""
    act = EventAction(action)
    if act == EventAction.EXECUTE:
        raise ValueError("DICOM Instances Accessed takes action C, R, U or D (PS3.15 A.5.3.6)")
    parts = [user.as_participant(requestor=True)]
    if archive is not None:
        parts.append(archive.as_participant(requestor=False))
    return _event(EventID.INSTANCES_ACCESSED, act, parts, _study_objects(patient, studies), outcome=outcome,
                  description=description, source=source, at=at)


RequestedBy = Party | Literal["sender", "receiver"]


def _transfer_parts(sender: Party, receiver: Party, requested_by: RequestedBy) -> list[ActiveParticipant]:
    parts = [sender.as_participant(requestor=requested_by == "sender", roles=(RoleID.SOURCE,)),
             receiver.as_participant(requestor=requested_by == "receiver", roles=(RoleID.DESTINATION,))]
    if isinstance(requested_by, Party):
        parts.append(requested_by.as_participant(requestor=True))
    return parts


def begin_transferring(sender: Party, receiver: Party, patient: PatientRef, studies: Sequence[StudyRef], *,
                       requested_by: RequestedBy = "receiver", outcome: Outcome = Outcome.SUCCESS,
                       description: str | None = None, source: AuditSource | None = None,
                       at: datetime | None = None) -> AuditEvent:
    """Begin Transferring DICOM Instances (PS3.15 A.5.3.2, 110102), action E.

    ``sender`` gets RoleID Source (110153), ``receiver`` Destination (110152);
    ``requested_by`` is the requestor: ``"receiver"`` (C-GET, WADO-RS: the receiver asks),
    ``"sender"`` (C-STORE push), or a third :class:`Party` (the C-MOVE SCU).
    """
    return _event(EventID.BEGIN_TRANSFERRING, EventAction.EXECUTE, _transfer_parts(sender, receiver, requested_by),
                  _study_objects(patient, studies), outcome=outcome, description=description,
                  source=source, at=at)


def instances_transferred(sender: Party, receiver: Party, patient: PatientRef, studies: Sequence[StudyRef], *,
                          action: EventAction | str = EventAction.READ, requested_by: RequestedBy = "receiver",
                          outcome: Outcome = Outcome.SUCCESS, description: str | None = None,
                          source: AuditSource | None = None, at: datetime | None = None) -> AuditEvent:
    """DICOM Instances Transferred (PS3.15 A.5.3.7, 110104): action C (the receiver created
    instances, e.g. C-STORE into the archive), R (read: sent to the receiver) or U (updated).
    Participants as in :func:`begin_transferring`."""
    act = EventAction(action)
    if act not in (EventAction.CREATE, EventAction.READ, EventAction.UPDATE):
        raise ValueError("DICOM Instances Transferred takes action C, R or U (PS3.15 A.5.3.7)")
    life = DataLifeCycle.ORIGINATION if act == EventAction.CREATE else None
    return _event(EventID.INSTANCES_TRANSFERRED, act, _transfer_parts(sender, receiver, requested_by),
                  _study_objects(patient, studies, life), outcome=outcome, description=description,
                  source=source, at=at)


def data_export(user: Party, media: Party, patient: PatientRef, studies: Sequence[StudyRef], *,
                media_type: Code | None = None, outcome: Outcome = Outcome.SUCCESS,
                description: str | None = None, source: AuditSource | None = None,
                at: datetime | None = None) -> AuditEvent:
    """Export (PS3.15 A.5.3.8, 110106), action R: ``user`` wrote the studies to ``media``
    (RoleID Destination Media 110154: a folder, a URL, a removable medium)."""
    parts = [user.as_participant(requestor=True),
             media.as_participant(requestor=False, roles=(RoleID.DESTINATION_MEDIA,), media_type=media_type)]
    return _event(EventID.EXPORT, EventAction.READ, parts, _study_objects(patient, studies, DataLifeCycle.EXPORT),
                  outcome=outcome, description=description, source=source, at=at)


def data_import(user: Party, media: Party, patient: PatientRef, studies: Sequence[StudyRef], *,
                media_type: Code | None = None, outcome: Outcome = Outcome.SUCCESS,
                description: str | None = None, source: AuditSource | None = None,
                at: datetime | None = None) -> AuditEvent:
    """Import (PS3.15 A.5.3.9, 110107), action C: ``user`` read the studies from ``media``
    (RoleID Source Media 110155) into the archive."""
    parts = [user.as_participant(requestor=True),
             media.as_participant(requestor=False, roles=(RoleID.SOURCE_MEDIA,), media_type=media_type)]
    return _event(EventID.IMPORT, EventAction.CREATE, parts, _study_objects(patient, studies, DataLifeCycle.IMPORT),
                  outcome=outcome, description=description, source=source, at=at)


def study_deleted(user: Party, patient: PatientRef, studies: Sequence[StudyRef], *,
                  outcome: Outcome = Outcome.SUCCESS, description: str | None = None,
                  source: AuditSource | None = None, at: datetime | None = None) -> AuditEvent:
    """DICOM Study Deleted (PS3.15 A.5.3.5, 110105), action D."""
    if not studies:
        raise ValueError("DICOM Study Deleted names at least one study")
    return _event(EventID.STUDY_DELETED, EventAction.DELETE, [user.as_participant(requestor=True)],
                  _study_objects(patient, studies, DataLifeCycle.PERMANENT_ERASURE), outcome=outcome,
                  description=description, source=source, at=at)


def security_alert(reporter: Party, alert: Code, *, performer: Party | None = None, subject: str | None = None,
                   subject_type: Code = ObjectIDType.URI, outcome: Outcome = Outcome.SUCCESS,
                   description: str | None = None, source: AuditSource | None = None,
                   at: datetime | None = None) -> AuditEvent:
    """Security Alert (PS3.15 A.5.3.11, 110113), action E; ``alert`` is an
    :class:`EventType` of CID 403 (e.g. :attr:`EventType.NODE_AUTHENTICATION` for a refused
    peer, :attr:`EventType.SECURITY_CONFIGURATION` for a changed setting).

    ``performer`` (who did it, e.g. an unknown AE) is the requestor when given, else
    ``reporter``. ``subject`` (a URI, AE title or node) becomes a participant object with the
    description as its "Alert Description" detail.
    """
    if performer is not None:
        parts = [performer.as_participant(requestor=True), reporter.as_participant(requestor=False)]
    else:
        parts = [reporter.as_participant(requestor=True)]
    objects = []
    if subject is not None:
        det = (("Alert Description", description.encode("utf-8")),) if description else ()
        objects.append(ParticipantObject(subject, subject_type, ObjectType.SYSTEM_OBJECT,
                                         ObjectRole.SECURITY_RESOURCE, details=det))
    return _event(EventID.SECURITY_ALERT, EventAction.EXECUTE, parts, objects, event_types=(alert,),
                  outcome=outcome, description=description, source=source, at=at)


def application_activity(application: Party, *, stop: bool = False, launcher: Party | None = None,
                         outcome: Outcome = Outcome.SUCCESS, description: str | None = None,
                         source: AuditSource | None = None, at: datetime | None = None) -> AuditEvent:
    """Application Activity (PS3.15 A.5.3.1, 110100): the archive started or stopped.
    ``application`` has RoleID Application (110150); ``launcher`` (the person or process that
    started or stopped it) Application Launcher (110151) and is the requestor."""
    parts = [application.as_participant(requestor=launcher is None, roles=(RoleID.APPLICATION,))]
    if launcher is not None:
        parts.append(launcher.as_participant(requestor=True, roles=(RoleID.APPLICATION_LAUNCHER,)))
    return _event(EventID.APPLICATION_ACTIVITY, EventAction.EXECUTE, parts,
                  event_types=(EventType.APPLICATION_STOP if stop else EventType.APPLICATION_START,),
                  outcome=outcome, description=description, source=source, at=at)


# ----------------------------------------------------------------------------- the store

#: The ``prev_hash`` of the first record.
GENESIS = "0" * 64


def canonical_bytes(row: Mapping[str, Any], refs: Iterable[tuple[str, str]]) -> bytes:
    """The bytes a record's hash covers: every column but the hashes, and its references,
    as compact JSON with sorted keys (UTF-8; the time in UTC with microseconds)."""
    doc = {
        "pk": int(row["pk"]),
        "at": _iso(row["at"]),
        "event_id": row["event_id"],
        "action": row["action"],
        "outcome": int(row["outcome"]),
        "user_id": row["user_id"],
        "source_address": row["source_address"],
        "patient_id": row["patient_id"],
        "study_uid": row["study_uid"],
        "xml": row["xml"],
        "refs": sorted([k, v] for k, v in set(refs)),
    }
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    """``SHA-256(prev_hash || canonical)`` as hex; ``prev_hash`` as its 64 ASCII hex digits."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    """One stored audit message."""

    pk: int
    at: datetime
    event_id: str
    action: str
    outcome: int
    user_id: str
    source_address: str
    patient_id: str
    study_uid: str
    xml: str
    prev_hash: str
    hash: str

    @property
    def event_name(self) -> str:
        return event_name(self.event_id)

    def event(self) -> AuditEvent:
        return parse_audit_message(self.xml)


def _record(m: Mapping[Any, Any]) -> AuditRecord:
    return AuditRecord(pk=int(m["pk"]), at=_utc(m["at"]), event_id=m["event_id"], action=m["action"],
                       outcome=int(m["outcome"]), user_id=m["user_id"], source_address=m["source_address"],
                       patient_id=m["patient_id"], study_uid=m["study_uid"], xml=m["xml"],
                       prev_hash=m["prev_hash"], hash=m["hash"])


@dataclass(frozen=True)
class ChainProblem:
    """One finding of :meth:`AuditLog.verify`.

    ``kind``: ``edited`` (content differs from its hash), ``missing`` (positions absent:
    deleted), ``broken_link`` (prev_hash differs from the record before: deleted, inserted or
    replaced), ``truncated`` (the head names more records than there are: tail deleted),
    ``head_mismatch`` (the last record differs from the head's hash: replaced),
    ``past_head`` (records after the head: inserted outside the archive), ``head_missing``.
    """

    pk: int | None
    kind: str
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    """What :meth:`AuditLog.verify` found."""

    records: int
    head_seq: int | None
    head_hash: str | None
    problems: tuple[ChainProblem, ...]
    elapsed_s: float
    appended_during: int = 0  # records written while verify ran (not verified this time)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_cli_summary(report: VerifyReport, max_problems: int = 20) -> str:
    """The text ``vesalius audit verify`` prints (exit status: 0 if ``report.ok`` else 1)."""
    head = "none" if report.head_seq is None else f"#{report.head_seq}"
    if report.ok:
        digest = f" (sha256 {report.head_hash[:16]}...)" if report.head_hash else ""
        extra = (f"; {report.appended_during} records appended meanwhile, not verified this run"
                 if report.appended_during else "")
        return (f"OK: audit trail intact: {report.records:,} records, head {head}{digest}, "
                f"verified in {report.elapsed_s:.2f} s{extra}")
    lines = [f"TAMPERED: audit trail fails verification: {len(report.problems)} problem(s) in "
             f"{report.records:,} records (head {head})"]
    for p in report.problems[:max_problems]:
        where = f"#{p.pk}" if p.pk is not None else "-"
        lines.append(f"  {where:<10} {p.kind:<14} {p.detail}")
    if len(report.problems) > max_problems:
        lines.append(f"  ... and {len(report.problems) - max_problems} more")
    lines.append("The records named above cannot be trusted: compare them with the copies sent to the "
                 "syslog collector or a backup, and investigate who had write access to the database.")
    return "\n".join(lines)


@dataclass(frozen=True)
class Participant:
    """An active participant as a report shows it."""

    user_id: str
    is_requestor: bool
    roles: tuple[str, ...]
    address: str | None
    alternative_user_id: str | None


@dataclass(frozen=True)
class AccessEntry:
    """One event in a patient access report."""

    pk: int
    at: datetime
    event_id: str
    event_name: str
    action: str
    action_name: str
    outcome: int
    user_id: str
    source_address: str
    study_uids: tuple[str, ...]
    participants: tuple[Participant, ...]


@dataclass(frozen=True)
class UserAccess:
    """A summary per requesting user in a patient access report."""

    user_id: str
    events: int
    failures: int
    first_at: datetime
    last_at: datetime
    event_names: tuple[str, ...]


@dataclass(frozen=True)
class PatientAccessReport:
    """"Who saw this patient's images": every audit record naming the patient, oldest first,
    and a summary per user."""

    patient_id: str
    entries: tuple[AccessEntry, ...]
    users: tuple[UserAccess, ...]


_REF_PATIENT = "patient"
_REF_STUDY = "study"


def _columns(event: AuditEvent) -> dict[str, Any]:
    req = event.requestor
    patients, studies = event.patient_ids, event.study_uids
    return {
        "at": event.at,
        "event_id": event.event_id.code,
        "action": event.action.value,
        "outcome": int(event.outcome),
        "user_id": _clean(req.user_id),
        "source_address": _clean(req.network_access_point_id or ""),
        "patient_id": _clean(patients[0]) if patients else "",
        "study_uid": _clean(studies[0]) if studies else "",
    }


def _refs(event: AuditEvent) -> list[tuple[str, str]]:
    refs = [(_REF_PATIENT, _clean(p)) for p in event.patient_ids]
    refs += [(_REF_STUDY, _clean(s)) for s in event.study_uids]
    return list(dict.fromkeys(refs))


class AuditLog:
    """The append-only, hash-chained audit trail in the index database.

    ``record`` is thread-safe and process-safe: the chain stays linear whatever the number of
    writers (an in-process lock, then the database lock on ``audit_head``). With a
    ``forwarder``, each committed record is also spooled for the syslog collector.
    """

    def __init__(self, engine: Engine, *, forwarder: SyslogForwarder | None = None,
                 lock_timeout: float = 30.0) -> None:
        self.engine = engine
        self.forwarder = forwarder
        self._lock_timeout = lock_timeout
        self._lock = threading.Lock()
        self._sqlite = engine.dialect.name == "sqlite"
        database = engine.url.database
        # SQLite: a write transaction must take the lock at BEGIN (IMMEDIATE), or two writers
        # read the same head; the index's writer engine does that (and fails fast on a lock).
        self._own_writer = self._sqlite and bool(database) and database != ":memory:"
        self._writer = write_engine(engine) if self._own_writer else engine

    def close(self) -> None:
        if self._own_writer:
            self._writer.dispose()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing

    def record(self, event: AuditEvent) -> int:
        """Append ``event``; returns its position in the chain (the record's ``pk``).

        Raises :class:`AuditError` when the record cannot be written; callers on a
        request path decide whether to refuse the request (secure) or go on.
        """
        xml = event.to_xml()
        cols = _columns(event)
        refs = _refs(event)
        with self._lock:
            pk = self._append(cols, xml, refs)
        if self.forwarder is not None:
            try:
                self.forwarder.enqueue(event.msgid, xml, event.at)
            except Exception as exc:  # the record is committed; the collector misses it
                log.error("audit record #%d stored but not spooled for syslog: %s", pk, type(exc).__name__)
        return pk

    def _append(self, cols: dict[str, Any], xml: str, refs: list[tuple[str, str]]) -> int:
        deadline = time.monotonic() + self._lock_timeout
        while True:
            try:
                with self._writer.begin() as conn:
                    return self._append_in(conn, cols, xml, refs)
            except OperationalError as exc:
                text = str(exc.orig).lower() if exc.orig is not None else ""
                if ("locked" in text or "busy" in text) and time.monotonic() < deadline:
                    time.sleep(random.uniform(0.0005, 0.003))
                    continue
                cause = type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
                raise AuditError(f"could not append to the audit trail ({cause}); check the "
                                 "database connection and disk space") from None
            except IntegrityError:
                raise AuditError("audit_log holds records past audit_head: the audit trail was "
                                 "tampered with; run `vesalius audit verify`") from None

    def _append_in(self, conn: Connection, cols: dict[str, Any], xml: str, refs: list[tuple[str, str]]) -> int:
        q = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
        if not self._sqlite:
            q = q.with_for_update()
        head = conn.execute(q).first()
        if head is None:
            raise AuditError("the audit_head row is missing: the audit trail was tampered with; "
                             "run `vesalius audit verify`")
        prev_seq, prev_hash = int(head[0]), str(head[1])
        pk = prev_seq + 1
        row = dict(cols, pk=pk, xml=xml)
        digest = chain_hash(prev_hash, canonical_bytes(row, refs))
        conn.execute(insert(audit_log).values(**row, prev_hash=prev_hash, hash=digest))
        if refs:
            conn.execute(insert(audit_refs), [{"audit_pk": pk, "kind": k, "value": v} for k, v in refs])
        conn.execute(update(audit_head).where(audit_head.c.id == 1)
                     .values(seq=pk, hash=digest, updated_at=_now()))
        return pk

    # -- reading

    def head(self) -> tuple[int, str] | None:
        """The chain's last position and hash (publish them elsewhere to anchor the chain)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).first()
        return (int(row[0]), str(row[1])) if row is not None else None

    def get(self, pk: int) -> AuditRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(audit_log).where(audit_log.c.pk == pk)).first()
        return _record(row._mapping) if row is not None else None

    def search(self, *, user: str | None = None, patient_id: str | None = None, study_uid: str | None = None,
               event_id: str | Code | None = None, since: datetime | None = None, until: datetime | None = None,
               limit: int = 100, before: int | None = None) -> list[AuditRecord]:
        """Records matching every criterion given, newest first.

        ``user``: the requesting participant's UserID; ``patient_id`` / ``study_uid``: any
        patient / study the message names (a patient with an issuer as ``ID^^^Issuer``);
        ``since`` inclusive, ``until`` exclusive; ``before``: only records with a smaller
        ``pk`` (to page on: pass the last ``pk`` seen).
        """
        if not 1 <= limit <= 10_000:
            raise ValueError("limit must be between 1 and 10000")
        q = select(audit_log)
        if user is not None:
            q = q.where(audit_log.c.user_id == user)
        if patient_id is not None:
            q = q.where(audit_log.c.pk.in_(select(audit_refs.c.audit_pk).where(
                audit_refs.c.kind == _REF_PATIENT, audit_refs.c.value == patient_id)))
        if study_uid is not None:
            q = q.where(audit_log.c.pk.in_(select(audit_refs.c.audit_pk).where(
                audit_refs.c.kind == _REF_STUDY, audit_refs.c.value == study_uid)))
        if event_id is not None:
            q = q.where(audit_log.c.event_id == (event_id.code if isinstance(event_id, Code) else event_id))
        if since is not None:
            q = q.where(audit_log.c.at >= _utc(since))
        if until is not None:
            q = q.where(audit_log.c.at < _utc(until))
        if before is not None:
            q = q.where(audit_log.c.pk < before)
        q = q.order_by(audit_log.c.pk.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_record(r._mapping) for r in conn.execute(q)]

    def patient_access_report(self, patient_id: str, issuer: str = "") -> PatientAccessReport:
        """Who saw (accessed, received, exported, deleted ...) this patient's images: every
        record naming the patient, oldest first, with its participants and studies, and a
        summary per requesting user."""
        pid = PatientRef(patient_id, issuer).object_id
        of_patient = select(audit_refs.c.audit_pk).where(
            audit_refs.c.kind == _REF_PATIENT, audit_refs.c.value == pid)
        with self.engine.connect() as conn:
            rows = [_record(r._mapping) for r in conn.execute(
                select(audit_log).where(audit_log.c.pk.in_(of_patient)).order_by(audit_log.c.pk))]
            studies: dict[int, list[str]] = {}
            for audit_pk, value in conn.execute(
                    select(audit_refs.c.audit_pk, audit_refs.c.value)
                    .where(audit_refs.c.kind == _REF_STUDY, audit_refs.c.audit_pk.in_(of_patient))
                    .order_by(audit_refs.c.pk)):
                studies.setdefault(int(audit_pk), []).append(str(value))
        entries = []
        for r in rows:
            try:
                parts = tuple(Participant(p.user_id, p.user_is_requestor, tuple(c.meaning for c in p.roles),
                                          p.network_access_point_id, p.alternative_user_id)
                              for p in parse_audit_message(r.xml).participants)
            except (ET.ParseError, ValueError):
                parts = ()
            entries.append(AccessEntry(r.pk, r.at, r.event_id, r.event_name, r.action,
                                       _ACTION_NAMES.get(r.action, r.action), r.outcome, r.user_id,
                                       r.source_address, tuple(studies.get(r.pk, ())), parts))
        by_user: dict[str, list[AccessEntry]] = {}
        for e in entries:
            by_user.setdefault(e.user_id, []).append(e)
        users = tuple(UserAccess(user, len(es), sum(1 for e in es if e.outcome != Outcome.SUCCESS),
                                 es[0].at, es[-1].at, tuple(sorted({e.event_name for e in es})))
                      for user, es in sorted(by_user.items()))
        return PatientAccessReport(pid, tuple(entries), users)

    # -- verification

    def verify(self, *, batch: int = 2000) -> VerifyReport:
        """Walk the chain and report every edited, inserted or deleted record (see
        :class:`ChainProblem`). Records appended while it runs are left for the next run."""
        started = time.monotonic()
        problems: list[ChainProblem] = []
        with self.engine.connect() as conn:
            head = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).first()
            if head is None:
                problems.append(ChainProblem(None, "head_missing", "the audit_head row is missing: the chain's "
                                             "end cannot be checked (records may have been deleted from the end)"))
                limit_pk = None
            else:
                limit_pk = int(head[0])
            expected_pk, prev, count, last_pk, last_hash = 1, GENESIS, 0, 0, GENESIS
            after = 0
            while True:
                q = select(audit_log).where(audit_log.c.pk > after)
                if limit_pk is not None:
                    q = q.where(audit_log.c.pk <= limit_pk)
                rows = [dict(r._mapping) for r in conn.execute(q.order_by(audit_log.c.pk).limit(batch))]
                if not rows:
                    break
                refs: dict[int, list[tuple[str, str]]] = {}
                for audit_pk, kind, value in conn.execute(
                        select(audit_refs.c.audit_pk, audit_refs.c.kind, audit_refs.c.value)
                        .where(audit_refs.c.audit_pk >= rows[0]["pk"], audit_refs.c.audit_pk <= rows[-1]["pk"])):
                    refs.setdefault(int(audit_pk), []).append((str(kind), str(value)))
                for row in rows:
                    pk = int(row["pk"])
                    if pk != expected_pk:
                        span = f"#{expected_pk}" if pk == expected_pk + 1 else f"#{expected_pk}..#{pk - 1}"
                        problems.append(ChainProblem(pk, "missing", f"record(s) {span} are missing (deleted)"))
                    elif row["prev_hash"] != prev:
                        problems.append(ChainProblem(pk, "broken_link", "prev_hash differs from the hash of the "
                                                     "record before it (a record was deleted, inserted or replaced)"))
                    if chain_hash(row["prev_hash"], canonical_bytes(row, refs.get(pk, ()))) != row["hash"]:
                        problems.append(ChainProblem(pk, "edited", "the record's content does not match its hash "
                                                     "(edited after it was written)"))
                    prev, expected_pk, count = row["hash"], pk + 1, count + 1
                    last_pk, last_hash = pk, row["hash"]
                after = int(rows[-1]["pk"])
            appended = 0
            if head is not None:
                head_seq, head_hash = int(head[0]), str(head[1])
                if last_pk < head_seq:
                    problems.append(ChainProblem(None, "truncated", f"the head names {head_seq} records but the "
                                                 f"chain ends at #{last_pk}: records were deleted from the end"))
                elif last_hash != head_hash:
                    problems.append(ChainProblem(last_pk, "head_mismatch", "the last record's hash differs from the "
                                                 "head's: the last record was replaced"))
                now_head = conn.execute(select(audit_head.c.seq).where(audit_head.c.id == 1)).scalar()
                now_seq = int(now_head) if now_head is not None else head_seq
                appended = max(0, now_seq - head_seq)
                extra, first_extra = conn.execute(
                    select(func.count(), func.min(audit_log.c.pk)).where(audit_log.c.pk > now_seq)).one()
                if extra:
                    problems.append(ChainProblem(int(first_extra), "past_head", f"{extra} record(s) after the head "
                                                 f"(from #{first_extra}): inserted outside the archive"))
        return VerifyReport(count, None if head is None else int(head[0]), None if head is None else str(head[1]),
                            tuple(problems), time.monotonic() - started, appended)


# ----------------------------------------------------------------------------- syslog

_BOM = b"\xef\xbb\xbf"


def _syslog_token(text: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, ``-`` when empty."""
    token = "".join(c if 33 <= ord(c) <= 126 else "_" for c in text)[:limit]
    return token or "-"


def client_tls_context(cafile: str | Path | None = None, certfile: str | Path | None = None,
                       keyfile: str | Path | None = None) -> ssl.SSLContext:
    """A TLS client context for the collector: TLS 1.2 or later, the server's certificate
    and host name verified against ``cafile`` (or the system store), optionally our own
    certificate for mutual authentication (RFC 5425 section 5)."""
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile:
        ctx.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    return ctx


class SyslogForwarder:
    """Sends audit messages to a syslog collector: RFC 5424 messages over TLS (RFC 5425),
    octet-counting framing (``MSG-LEN SP SYSLOG-MSG``).

    Each message is first written to ``spool_dir`` (a file per message, fsynced, renamed into
    place, the folder fsynced), then a background thread sends the spool in order and
    removes each file once it is written to the connection. While the collector is down the
    files stay and are retried, oldest first, with back-off; after a restart the spool left
    behind is sent first. Give each process its own spool folder.

    Header: PRI = facility 10 (security/authorization) x 8 + severity 5 (notice), as IHE
    ATNA asks; APP-NAME ``vesalius``; PROCID the PID; MSGID the event type
    (:attr:`AuditEvent.msgid`); no structured data; MSG = BOM + the XML in UTF-8.
    """

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext, spool_dir: str | Path, *,
                 server_hostname: str | None = None, app_name: str = "vesalius", hostname: str | None = None,
                 facility: int = 10, severity: int = 5, connect_timeout: float = 5.0, send_timeout: float = 10.0,
                 retry_min: float = 0.2, retry_max: float = 30.0, start: bool = True) -> None:
        if not isinstance(ssl_context, ssl.SSLContext):
            raise TypeError("SyslogForwarder needs an ssl.SSLContext: audit messages carry PHI and "
                            "RFC 5425 sends them over TLS only (see client_tls_context())")
        if not (0 <= facility <= 23 and 0 <= severity <= 7):
            raise ValueError("syslog facility must be 0..23 and severity 0..7 (RFC 5424 6.2.1)")
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname or host
        self.app_name = _syslog_token(app_name, 48)
        self.hostname = _syslog_token(hostname or _hostname(), 255)
        self.pri = facility * 8 + severity
        self.connect_timeout, self.send_timeout = connect_timeout, send_timeout
        self.retry_min, self.retry_max = retry_min, retry_max
        self.spool = Path(spool_dir)
        self.spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        for leftover in self.spool.glob("*.tmp"):  # a crash mid-write: never acknowledged
            leftover.unlink(missing_ok=True)
        existing = [int(p.stem) for p in self.spool.glob("*.msg") if p.stem.isdigit()]
        self._seq = max(existing, default=0) + 1
        self._spool_lock = threading.Lock()
        self._wake = threading.Event()
        self._retry_now = threading.Event()
        self._stop = threading.Event()
        self._sock: ssl.SSLSocket | None = None
        self._thread: threading.Thread | None = None
        self._down = False
        self.sent = 0
        self.last_error: str | None = None
        if start:
            self.start()

    # -- the spool

    def format(self, msgid: str, message: str, timestamp: datetime | None = None) -> bytes:
        """One RFC 5424 SYSLOG-MSG (without the octet count)."""
        header = (f"<{self.pri}>1 {_iso(timestamp or _now())} {self.hostname} {self.app_name} "
                  f"{os.getpid()} {_syslog_token(msgid, 32)} -")
        return header.encode("ascii") + b" " + _BOM + message.encode("utf-8")

    def send(self, event: AuditEvent) -> Path:
        """Spool ``event`` for the collector."""
        return self.enqueue(event.msgid, event.to_xml(), event.at)

    def enqueue(self, msgid: str, message: str, timestamp: datetime | None = None) -> Path:
        """Spool one message (durably: it survives a crash once this returns)."""
        data = self.format(msgid, message, timestamp)
        with self._spool_lock:  # held while writing, so files appear in sequence order
            seq = self._seq
            self._seq += 1
            final = self.spool / f"{seq:020d}.msg"
            tmp = self.spool / f"{seq:020d}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
            _fsync_dir(self.spool)
        self._wake.set()
        return final

    def pending(self) -> int:
        """Messages in the spool, not yet sent."""
        return len(self._spool_files())

    def _spool_files(self) -> list[Path]:
        return sorted(self.spool.glob("*.msg"))

    # -- the sender thread

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="audit-syslog", daemon=True)
        self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Retry at once and wait until the spool is empty; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while True:
            if not self._spool_files():
                return True
            if time.monotonic() >= deadline:
                return False
            self._retry_now.set()
            self._wake.set()
            time.sleep(0.01)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the sender; unsent messages stay in the spool for the next start."""
        self._stop.set()
        self._wake.set()
        self._retry_now.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._disconnect()

    def __enter__(self) -> SyslogForwarder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _run(self) -> None:
        delay = self.retry_min
        while not self._stop.is_set():
            files = self._spool_files()
            if not files:
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            try:
                self._send_files(files)
                delay = self.retry_min
                if self._down:
                    log.info("syslog collector %s:%d reachable again; audit spool sent", self.host, self.port)
                    self._down = False
            except OSError as exc:  # ssl.SSLError, refused, reset, timeout; messages carry no PHI
                self._disconnect()
                self.last_error = f"{type(exc).__name__}: {exc}"
                if not self._down:
                    log.warning("syslog collector %s:%d unavailable (%s); %d audit message(s) kept in the spool",
                                self.host, self.port, type(exc).__name__, len(self._spool_files()))
                    self._down = True
                self._retry_now.wait(timeout=delay)
                self._retry_now.clear()
                delay = min(delay * 2, self.retry_max)

    def _send_files(self, files: list[Path]) -> None:
        for path in files:
            if self._stop.is_set():
                return
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            sock = self._connection()
            sock.sendall(str(len(data)).encode("ascii") + b" " + data)
            path.unlink(missing_ok=True)
            self.sent += 1

    def _connection(self) -> ssl.SSLSocket:
        if self._sock is not None and not self._peer_closed(self._sock):
            return self._sock
        self._disconnect()
        raw = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = self.ssl_context.wrap_socket(raw, server_hostname=self.server_hostname)
        except BaseException:
            raw.close()
            raise
        sock.settimeout(self.send_timeout)
        self._sock = sock
        return sock

    def _peer_closed(self, sock: ssl.SSLSocket) -> bool:
        """A collector never writes: a readable socket is a closed one (or TLS housekeeping,
        such as TLS 1.3 session tickets, which a non-blocking read consumes)."""
        try:
            readable, _, _ = io_select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        if not readable:
            return False
        sock.setblocking(False)
        try:
            return sock.recv(4096) == b""
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return False
        except OSError:
            return True
        finally:
            sock.settimeout(self.send_timeout)

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

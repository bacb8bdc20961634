"""The audit trail: PS3.15 A.5 messages, the hash chain (SQLite and PostgreSQL), syslog over TLS.

Messages are parsed with xml.etree and checked for event IDs, action codes, outcomes and
participants. The chain is attacked the way someone with database access would: triggers
dropped, then rows edited, deleted, replaced or forged. A local TLS collector (certificate made
here with ``cryptography``) checks RFC 5425 framing, order, and the spool while it is down.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import re
import socket
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import insert, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from vesalius.index.db import open_index
from vesalius.index.models import audit_head, audit_log, audit_refs
from vesalius.security.audit import (
    AuditError,
    AuditEvent,
    AuditLog,
    AuditSource,
    EventAction,
    EventID,
    EventType,
    ObjectIDType,
    Outcome,
    Party,
    PatientRef,
    StudyRef,
    SyslogForwarder,
    application_activity,
    begin_transferring,
    canonical_bytes,
    chain_hash,
    client_tls_context,
    data_export,
    data_import,
    instances_accessed,
    instances_transferred,
    parse_audit_message,
    query,
    security_alert,
    study_deleted,
    user_authentication,
    verify_cli_summary,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
SR = "1.2.840.10008.5.1.4.1.1.88.22"
ARCHIVE = Party("VESALIUS", address="10.0.0.1", alternative_user_id="4242")
ALICE = Party("alice", address="192.168.1.20", user_name="Alice Smith")
BOB = Party("bob", address="192.168.1.21")
WORKSTATION = Party("WS1", address="ws1.hospital.example")
MODALITY = Party("CT_SCANNER", address="ct1.hospital.example")
PATIENT = PatientRef("PID-001", issuer="HOSP")
OTHER_PATIENT = PatientRef("PID-999")
STUDY = StudyRef.of("1.2.3.4", {CT: 120, SR: 1}, accession="ACC1")
STUDY2 = StudyRef.of("1.2.3.5", {CT: 5})
SOURCE = AuditSource("vesalius@test", "SITE-A")
ZONE = timezone(timedelta(hours=-5))


# ----------------------------------------------------------------------------- messages


def _xml(event: AuditEvent) -> ET.Element:
    doc = event.to_xml()
    assert doc.startswith('<?xml version="1.0" encoding="UTF-8"?><AuditMessage>')
    root = ET.fromstring(doc)
    tags = [c.tag for c in root]
    # PS3.15 A.5.1: event, participants, source, objects, in this order
    assert tags[0] == "EventIdentification"
    n_ap = tags.count("ActiveParticipant")
    assert n_ap >= 1 and tags[1:1 + n_ap] == ["ActiveParticipant"] * n_ap
    assert tags[1 + n_ap] == "AuditSourceIdentification"
    assert set(tags[2 + n_ap:]) <= {"ParticipantObjectIdentification"}
    return root


def _participants(root: ET.Element) -> list[tuple[str, bool, tuple[str, ...]]]:
    return [(ap.attrib["UserID"], ap.attrib["UserIsRequestor"] == "true",
             tuple(r.attrib["csd-code"] for r in ap.findall("RoleIDCode")))
            for ap in root.findall("ActiveParticipant")]


def _objects(root: ET.Element, id_type: str) -> list[ET.Element]:
    return [po for po in root.findall("ParticipantObjectIdentification")
            if po.find("ParticipantObjectIDTypeCode").attrib["csd-code"] == id_type]  # type: ignore[union-attr]


def _check_patient_and_study(root: ET.Element, studies: int = 1) -> None:
    [patient] = _objects(root, "2")
    assert patient.attrib == {"ParticipantObjectID": "PID-001^^^HOSP", "ParticipantObjectTypeCode": "1",
                              "ParticipantObjectTypeCodeRole": "1"}
    assert patient.find("ParticipantObjectIDTypeCode").attrib == {  # type: ignore[union-attr]
        "csd-code": "2", "codeSystemName": "RFC-3881", "originalText": "Patient Number"}
    found = _objects(root, "110180")
    assert len(found) == studies
    study = found[0]
    assert study.attrib["ParticipantObjectID"] == "1.2.3.4"
    assert study.attrib["ParticipantObjectTypeCode"] == "2"
    assert study.attrib["ParticipantObjectTypeCodeRole"] == "3"
    assert study.find("ParticipantObjectIDTypeCode").attrib == {  # type: ignore[union-attr]
        "csd-code": "110180", "codeSystemName": "DCM", "originalText": "Study Instance UID"}
    desc = study.find("ParticipantObjectDescription")
    assert desc is not None
    assert {(s.attrib["UID"], s.attrib["NumberOfInstances"]) for s in desc.findall("SOPClass")} == {
        (CT, "120"), (SR, "1")}
    assert [a.attrib["Number"] for a in desc.findall("Accession")] == ["ACC1"]


#: builder, EventID, action, EventTypeCode, participants (UserID, requestor, roles), objects check
CASES: dict[str, tuple[Callable[[], AuditEvent], str, str, str | None,
                       list[tuple[str, bool, tuple[str, ...]]], str]] = {
    "login": (lambda: user_authentication(ALICE, authenticator=ARCHIVE, source=SOURCE),
              "110114", "E", "110122", [("alice", True, ()), ("VESALIUS", False, ())], "none"),
    "logout": (lambda: user_authentication(ALICE, logout=True),
               "110114", "E", "110123", [("alice", True, ())], "none"),
    "query": (lambda: query(WORKSTATION, ARCHIVE, b"\x08\x00\x52\x00STUDY"),
              "110112", "E", None, [("WS1", True, ("110153",)), ("VESALIUS", False, ("110152",))], "query"),
    "accessed": (lambda: instances_accessed(ALICE, "R", PATIENT, [STUDY], archive=ARCHIVE),
                 "110103", "R", None, [("alice", True, ()), ("VESALIUS", False, ())], "study"),
    "accessed-delete": (lambda: instances_accessed(ALICE, EventAction.DELETE, PATIENT, [STUDY]),
                        "110103", "D", None, [("alice", True, ())], "study"),
    "begin-move": (lambda: begin_transferring(ARCHIVE, WORKSTATION, PATIENT, [STUDY], requested_by=ALICE),
                   "110102", "E", None, [("VESALIUS", False, ("110153",)), ("WS1", False, ("110152",)),
                                         ("alice", True, ())], "study"),
    "transferred-store": (lambda: instances_transferred(MODALITY, ARCHIVE, PATIENT, [STUDY], action="C",
                                                        requested_by="sender"),
                          "110104", "C", None, [("CT_SCANNER", True, ("110153",)),
                                                ("VESALIUS", False, ("110152",))], "study"),
    "transferred-get": (lambda: instances_transferred(ARCHIVE, WORKSTATION, PATIENT, [STUDY, STUDY2]),
                        "110104", "R", None, [("VESALIUS", False, ("110153",)), ("WS1", True, ("110152",))],
                        "two-studies"),
    "export": (lambda: data_export(ALICE, Party("file:///media/usb0"), PATIENT, [STUDY]),
               "110106", "R", None, [("alice", True, ()), ("file:///media/usb0", False, ("110154",))], "study"),
    "import": (lambda: data_import(ALICE, Party("/import/cd"), PATIENT, [STUDY]),
               "110107", "C", None, [("alice", True, ()), ("/import/cd", False, ("110155",))], "study"),
    "deleted": (lambda: study_deleted(ALICE, PATIENT, [STUDY]),
                "110105", "D", None, [("alice", True, ())], "study"),
    "alert": (lambda: security_alert(ARCHIVE, EventType.NODE_AUTHENTICATION, performer=Party("EVIL", "203.0.113.9"),
                                     subject="dicom://EVIL@203.0.113.9", description="unknown calling AE title"),
              "110113", "E", "110126", [("EVIL", True, ()), ("VESALIUS", False, ())], "alert"),
    "app-start": (lambda: application_activity(ARCHIVE, launcher=Party("root")),
                  "110100", "E", "110120", [("VESALIUS", False, ("110150",)), ("root", True, ("110151",))], "none"),
    "app-stop": (lambda: application_activity(ARCHIVE, stop=True),
                 "110100", "E", "110121", [("VESALIUS", True, ("110150",))], "none"),
}

EVENT_NAMES = {"110100": "Application Activity", "110102": "Begin Transferring DICOM Instances",
               "110103": "DICOM Instances Accessed", "110104": "DICOM Instances Transferred",
               "110105": "DICOM Study Deleted", "110106": "Export", "110107": "Import", "110112": "Query",
               "110113": "Security Alert", "110114": "User Authentication"}


@pytest.mark.parametrize("case", list(CASES))
def test_message_xml(case: str) -> None:
    build, event_id, action, event_type, parts, objects = CASES[case]
    event = build()
    root = _xml(event)
    ei = root.find("EventIdentification")
    assert ei is not None
    assert ei.attrib["EventActionCode"] == action
    assert ei.attrib["EventOutcomeIndicator"] == "0"
    when = ei.attrib["EventDateTime"]
    assert when.endswith("Z") and abs(datetime.fromisoformat(when[:-1] + "+00:00") - datetime.now(UTC)) < timedelta(
        minutes=1)
    assert ei.find("EventID").attrib == {  # type: ignore[union-attr]
        "csd-code": event_id, "codeSystemName": "DCM", "originalText": EVENT_NAMES[event_id]}
    types = [t.attrib["csd-code"] for t in ei.findall("EventTypeCode")]
    assert types == ([event_type] if event_type else [])
    assert all(t.attrib["codeSystemName"] == "DCM" for t in ei.findall("EventTypeCode"))
    assert _participants(root) == parts
    for ap in root.findall("ActiveParticipant"):
        for role in ap.findall("RoleIDCode"):
            assert role.attrib["codeSystemName"] == "DCM" and role.attrib["originalText"]
    asi = root.find("AuditSourceIdentification")
    assert asi is not None and asi.attrib["AuditSourceID"]
    assert [t.attrib["csd-code"] for t in asi.findall("AuditSourceTypeCode")] == ["4"]
    if objects in ("study", "two-studies"):
        _check_patient_and_study(root, 2 if objects == "two-studies" else 1)
    elif objects == "query":
        [q] = root.findall("ParticipantObjectIdentification")
        assert q.attrib == {"ParticipantObjectID": "1.2.840.10008.5.1.4.1.2.2.1", "ParticipantObjectTypeCode": "2",
                            "ParticipantObjectTypeCodeRole": "3"}
        assert q.find("ParticipantObjectIDTypeCode").attrib["csd-code"] == "110181"  # type: ignore[union-attr]
        assert base64.b64decode(q.findtext("ParticipantObjectQuery") or "") == b"\x08\x00\x52\x00STUDY"
        [detail] = q.findall("ParticipantObjectDetail")
        assert detail.attrib["type"] == "TransferSyntax"
        assert base64.b64decode(detail.attrib["value"]) == b"1.2.840.10008.1.2.1"
    elif objects == "alert":
        [subject] = root.findall("ParticipantObjectIdentification")
        assert subject.attrib["ParticipantObjectID"] == "dicom://EVIL@203.0.113.9"
        [detail] = subject.findall("ParticipantObjectDetail")
        assert (detail.attrib["type"], base64.b64decode(detail.attrib["value"])) == (
            "Alert Description", b"unknown calling AE title")
    else:
        assert root.findall("ParticipantObjectIdentification") == []
    # every message reads back into the same event
    assert parse_audit_message(event.to_xml()) == event


def test_participant_details_and_source() -> None:
    root = _xml(user_authentication(ALICE, authenticator=ARCHIVE, source=SOURCE))
    alice, archive = root.findall("ActiveParticipant")
    assert alice.attrib == {"UserID": "alice", "UserName": "Alice Smith", "UserIsRequestor": "true",
                            "NetworkAccessPointID": "192.168.1.20", "NetworkAccessPointTypeCode": "2"}
    assert archive.attrib["AlternativeUserID"] == "4242"
    asi = root.find("AuditSourceIdentification")
    assert asi is not None and asi.attrib == {"AuditEnterpriseSiteID": "SITE-A", "AuditSourceID": "vesalius@test"}
    # a host name is NetworkAccessPointTypeCode 1, a URI 5
    root = _xml(query(WORKSTATION, Party("QIDO", "https://pacs.example/dicom-web"), b"PatientID=1"))
    assert [ap.attrib["NetworkAccessPointTypeCode"] for ap in root.findall("ActiveParticipant")] == ["1", "5"]
    assert Party.application().alternative_user_id is not None


@pytest.mark.parametrize("outcome", list(Outcome))
def test_outcomes(outcome: Outcome) -> None:
    event = user_authentication(Party("mallory", "203.0.113.9"), outcome=outcome,
                                description="invalid password" if outcome else None)
    ei = _xml(event).find("EventIdentification")
    assert ei is not None
    assert ei.attrib["EventOutcomeIndicator"] == str(int(outcome))
    assert ei.findtext("EventOutcomeDescription") == ("invalid password" if outcome else None)


def test_hostile_text_stays_well_formed() -> None:
    event = user_authentication(Party('<x a="1">&\x00\x1b\ud800', "evil host"), outcome=Outcome.MINOR_FAILURE,
                                description="]]></AuditMessage>")
    root = _xml(event)
    [ap] = root.findall("ActiveParticipant")
    assert ap.attrib["UserID"] == '<x a="1">&\ufffd\ufffd\ufffd'
    assert root.find("EventIdentification/EventOutcomeDescription").text == "]]></AuditMessage>"  # type: ignore[union-attr]


def test_builders_refuse_what_the_standard_does_not_allow() -> None:
    with pytest.raises(ValueError, match="C, R, U or D"):
        instances_accessed(ALICE, "E", PATIENT, [STUDY])
    with pytest.raises(ValueError, match="C, R or U"):
        instances_transferred(ARCHIVE, WORKSTATION, PATIENT, [STUDY], action="D")
    with pytest.raises(ValueError, match="at least one study"):
        study_deleted(ALICE, PATIENT, [])
    with pytest.raises(ValueError, match="ActiveParticipant"):
        AuditEvent(EventID.QUERY, EventAction.EXECUTE, Outcome.SUCCESS, (), SOURCE)


# ----------------------------------------------------------------------------- the store


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    e = open_index(db_url)  # runs the Alembic migrations, 0002_audit included
    yield e
    e.dispose()


@pytest.fixture
def trail(engine: Engine) -> Iterator[AuditLog]:
    t = AuditLog(engine)
    yield t
    t.close()


def _drop_guards(engine: Engine) -> None:
    """What an attacker with DDL rights does first: remove the append-only triggers."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            for table in ("audit_log", "audit_refs"):
                conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}"))
        else:
            for table in ("audit_log", "audit_refs"):
                for verb in ("update", "delete"):
                    conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{verb}"))


def _fill(trail: AuditLog, n: int = 6) -> list[int]:
    t0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    pks = []
    for i in range(n):
        user = ALICE if i % 2 == 0 else BOB
        pks.append(trail.record(instances_accessed(user, "R", PATIENT, [STUDY], at=t0 + timedelta(minutes=i))))
    return pks


def _problems(trail: AuditLog) -> list[tuple[str, int | None]]:
    return [(p.kind, p.pk) for p in trail.verify().problems]


def test_record_and_verify(trail: AuditLog) -> None:
    assert trail.verify().ok and trail.verify().records == 0
    assert _fill(trail) == [1, 2, 3, 4, 5, 6]
    report = trail.verify()
    assert report.ok and report.records == 6 and report.head_seq == 6
    rec = trail.get(6)
    assert rec is not None and trail.head() == (6, rec.hash) == (report.head_seq, report.head_hash)
    first = trail.get(1)
    assert first is not None and first.prev_hash == "0" * 64
    assert first.user_id == "alice" and first.source_address == "192.168.1.20"
    assert first.patient_id == "PID-001^^^HOSP" and first.study_uid == "1.2.3.4"
    assert first.event_name == "DICOM Instances Accessed" and first.action == "R" and first.outcome == 0
    assert first.event() == parse_audit_message(first.xml)
    assert verify_cli_summary(report).startswith("OK: audit trail intact: 6 records, head #6")


def test_triggers_refuse_update_and_delete(trail: AuditLog, engine: Engine) -> None:
    _fill(trail, 2)
    for sql in ("UPDATE audit_log SET xml = 'x' WHERE pk = 1", "DELETE FROM audit_log WHERE pk = 2",
                "UPDATE audit_refs SET value = 'x'", "DELETE FROM audit_refs"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(sql))
    assert trail.verify().ok


def test_verify_detects_an_edited_record(trail: AuditLog, engine: Engine) -> None:
    _fill(trail)
    _drop_guards(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET xml = replace(xml, 'alice', 'carol') WHERE pk = 3"))
    report = trail.verify()
    assert [(p.kind, p.pk) for p in report.problems] == [("edited", 3)]
    summary = verify_cli_summary(report)
    assert summary.startswith("TAMPERED") and "#3" in summary and "edited" in summary


def test_verify_detects_an_edit_whose_hash_was_recomputed(trail: AuditLog, engine: Engine) -> None:
    _fill(trail)
    _drop_guards(engine)
    with engine.begin() as conn:
        row = dict(conn.execute(select(audit_log).where(audit_log.c.pk == 3)).one()._mapping)
        refs = [(r.kind, r.value) for r in conn.execute(select(audit_refs).where(audit_refs.c.audit_pk == 3))]
        row["user_id"] = "carol"
        conn.execute(update(audit_log).where(audit_log.c.pk == 3).values(
            user_id="carol", hash=chain_hash(row["prev_hash"], canonical_bytes(row, refs))))
    assert _problems(trail) == [("broken_link", 4)]


def test_verify_detects_edited_references(trail: AuditLog, engine: Engine) -> None:
    """Removing a record's patient reference would hide it from the access report."""
    _fill(trail)
    _drop_guards(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_refs WHERE audit_pk = 2 AND kind = 'patient'"))
    assert _problems(trail) == [("edited", 2)]


def test_verify_detects_a_deleted_record(trail: AuditLog, engine: Engine) -> None:
    _fill(trail)
    _drop_guards(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_refs WHERE audit_pk = 3"))
        conn.execute(text("DELETE FROM audit_log WHERE pk = 3"))
    assert _problems(trail) == [("missing", 4)]


def test_verify_detects_a_deleted_tail(trail: AuditLog, engine: Engine) -> None:
    _fill(trail)
    _drop_guards(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_refs WHERE audit_pk >= 5"))
        conn.execute(text("DELETE FROM audit_log WHERE pk >= 5"))
    report = trail.verify()
    assert [(p.kind, p.pk) for p in report.problems] == [("truncated", None)]
    assert "deleted from the end" in verify_cli_summary(report)


def test_verify_detects_a_forged_insert(trail: AuditLog, engine: Engine) -> None:
    _fill(trail)
    forged = instances_accessed(Party("mallory"), "R", OTHER_PATIENT, [STUDY2]).to_xml()
    with engine.begin() as conn:  # appended with a correct link and hash, but past the head
        last = conn.execute(select(audit_log.c.hash).where(audit_log.c.pk == 6)).scalar_one()
        row = {"pk": 7, "at": datetime.now(UTC), "event_id": "110103", "action": "R", "outcome": 0,
               "user_id": "mallory", "source_address": "", "patient_id": "PID-999", "study_uid": "1.2.3.5",
               "xml": forged}
        conn.execute(insert(audit_log).values(**row, prev_hash=last, hash=chain_hash(last, canonical_bytes(row, []))))
    assert _problems(trail) == [("past_head", 7)]
    with pytest.raises(AuditError, match="tampered"):  # the archive will not write after forged rows
        trail.record(user_authentication(ALICE))


def test_verify_detects_a_replaced_record(trail: AuditLog, engine: Engine) -> None:
    """A record deleted and forged again in its place, linked and hashed correctly."""
    _fill(trail)
    _drop_guards(engine)
    with engine.begin() as conn:
        old = dict(conn.execute(select(audit_log).where(audit_log.c.pk == 3)).one()._mapping)
        conn.execute(text("DELETE FROM audit_refs WHERE audit_pk = 3"))
        conn.execute(text("DELETE FROM audit_log WHERE pk = 3"))
        row = {k: old[k] for k in ("pk", "at", "event_id", "action", "outcome", "source_address", "patient_id",
                                   "study_uid", "xml")}
        row["user_id"] = "nobody"
        conn.execute(insert(audit_log).values(**row, prev_hash=old["prev_hash"],
                                              hash=chain_hash(old["prev_hash"], canonical_bytes(row, []))))
    assert _problems(trail) == [("broken_link", 4)]


def test_missing_head_is_reported_and_stops_writing(trail: AuditLog, engine: Engine) -> None:
    _fill(trail, 2)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_head"))
    assert _problems(trail) == [("head_missing", None)]
    with pytest.raises(AuditError, match="audit_head"):
        trail.record(user_authentication(ALICE))


def test_concurrent_writers_keep_one_chain(engine: Engine, db_url: str) -> None:
    """8 threads over two AuditLogs with their own engines (as two processes would)."""
    other = open_index(db_url)
    logs = [AuditLog(engine), AuditLog(other)]
    threads, per_thread = 8, 25
    errors: list[BaseException] = []
    got: list[list[int]] = [[] for _ in range(threads)]

    def work(t: int) -> None:
        try:
            for n in range(per_thread):
                got[t].append(logs[t % 2].record(user_authentication(Party(f"user{t}-{n}", "10.1.1.1"))))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    try:
        assert not errors
        assert sorted(pk for pks in got for pk in pks) == list(range(1, threads * per_thread + 1))
        assert all(pks == sorted(pks) for pks in got)
        report = logs[0].verify()
        assert report.ok and report.records == threads * per_thread
        users = {r.user_id for r in logs[1].search(limit=1000)}
        assert users == {f"user{t}-{n}" for t in range(threads) for n in range(per_thread)}
    finally:
        for lg in logs:
            lg.close()
        other.dispose()


def test_search(trail: AuditLog) -> None:
    t0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    trail.record(user_authentication(ALICE, at=t0))
    trail.record(instances_accessed(ALICE, "R", PATIENT, [STUDY], at=t0 + timedelta(hours=1)))
    trail.record(instances_transferred(ARCHIVE, BOB, PATIENT, [STUDY, STUDY2], at=t0 + timedelta(hours=2)))
    trail.record(instances_accessed(BOB, "R", OTHER_PATIENT, [StudyRef("9.9.9")], at=t0 + timedelta(hours=3)))
    trail.record(query(BOB, ARCHIVE, b"PatientID=PID-999", at=t0 + timedelta(hours=4)))

    def pks(**kw: object) -> list[int]:
        return [r.pk for r in trail.search(**kw)]  # type: ignore[arg-type]

    assert pks() == [5, 4, 3, 2, 1]
    assert pks(user="alice") == [2, 1]
    assert pks(user="bob") == [5, 4, 3]
    assert pks(patient_id="PID-001^^^HOSP") == [3, 2]
    assert pks(patient_id="PID-001") == []  # a patient is named with its issuer
    assert pks(study_uid="1.2.3.5") == [3]  # the second study of a transfer
    assert pks(event_id=EventID.QUERY) == [5]
    assert pks(event_id="110103", user="bob") == [4]
    assert pks(since=t0 + timedelta(hours=1), until=t0 + timedelta(hours=3)) == [3, 2]
    assert pks(since=(t0 + timedelta(hours=3)).astimezone(ZONE)) == [5, 4]  # any time zone
    assert pks(limit=2) == [5, 4] and pks(limit=2, before=4) == [3, 2]
    with pytest.raises(ValueError):
        trail.search(limit=0)


def test_patient_access_report(trail: AuditLog) -> None:
    t0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    trail.record(instances_transferred(MODALITY, ARCHIVE, PATIENT, [STUDY], action="C", requested_by="sender", at=t0))
    trail.record(instances_accessed(ALICE, "R", PATIENT, [STUDY], at=t0 + timedelta(minutes=5)))
    trail.record(instances_accessed(BOB, "R", PATIENT, [STUDY], outcome=Outcome.MINOR_FAILURE,
                                    description="access denied", at=t0 + timedelta(minutes=6)))
    trail.record(begin_transferring(ARCHIVE, WORKSTATION, PATIENT, [STUDY, STUDY2], requested_by=ALICE,
                                    at=t0 + timedelta(minutes=7)))
    trail.record(instances_accessed(ALICE, "R", OTHER_PATIENT, [StudyRef("9.9.9")], at=t0 + timedelta(minutes=8)))
    trail.record(data_export(ALICE, Party("file:///media/usb0"), PATIENT, [STUDY], at=t0 + timedelta(minutes=9)))

    report = trail.patient_access_report("PID-001", issuer="HOSP")
    assert report.patient_id == "PID-001^^^HOSP"
    assert [(e.pk, e.user_id, e.event_name, e.action_name, e.outcome) for e in report.entries] == [
        (1, "CT_SCANNER", "DICOM Instances Transferred", "Create", 0),
        (2, "alice", "DICOM Instances Accessed", "Read", 0),
        (3, "bob", "DICOM Instances Accessed", "Read", 4),
        (4, "alice", "Begin Transferring DICOM Instances", "Execute", 0),
        (6, "alice", "Export", "Read", 0),
    ]
    move = report.entries[3]
    assert move.study_uids == ("1.2.3.4", "1.2.3.5") and move.source_address == "192.168.1.20"
    assert [(p.user_id, p.roles, p.is_requestor) for p in move.participants] == [
        ("VESALIUS", ("Source Role ID",), False), ("WS1", ("Destination Role ID",), False), ("alice", (), True)]
    assert [(u.user_id, u.events, u.failures) for u in report.users] == [
        ("CT_SCANNER", 1, 0), ("alice", 3, 0), ("bob", 1, 1)]
    alice = report.users[1]
    assert alice.first_at == t0 + timedelta(minutes=5) and alice.last_at == t0 + timedelta(minutes=9)
    assert alice.event_names == ("Begin Transferring DICOM Instances", "DICOM Instances Accessed", "Export")
    assert trail.patient_access_report("nobody").entries == ()


# ----------------------------------------------------------------------------- syslog over TLS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1, made now."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class Collector:
    """A minimal RFC 5425 syslog collector: TLS, octet-counting frames, kept in order."""

    def __init__(self, tls_files: tuple[Path, Path], port: int = 0) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ctx.load_cert_chain(str(tls_files[0]), str(tls_files[1]))
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(8)
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.frames: list[bytes] = []
        self.errors: list[str] = []
        self.connections = 0
        self._conns: list[ssl.SSLSocket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(5)
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except OSError:
            raw.close()
            return
        self.connections += 1
        self._conns.append(conn)
        buf = b""
        while not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            while (sp := buf.find(b" ")) >= 0:
                digits = buf[:sp]
                if not digits.isdigit() or digits.startswith(b"0"):
                    self.errors.append(f"bad MSG-LEN {digits[:20]!r}")
                    return
                end = sp + 1 + int(digits)
                if len(buf) < end:
                    break
                self.frames.append(buf[sp + 1:end])
                buf = buf[end:]
        if buf:
            self.errors.append(f"{len(buf)} bytes of an incomplete frame")

    def wait(self, n: int, timeout: float = 10.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.frames) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.frames) >= n, f"collector got {len(self.frames)} of {n} messages"
        return self.frames[:n]

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        self._thread.join(2)


@pytest.fixture
def collector(tls_files: tuple[Path, Path]) -> Iterator[Collector]:
    c = Collector(tls_files)
    yield c
    c.stop()


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def _forwarder(tls_files: tuple[Path, Path], port: int, spool: Path) -> SyslogForwarder:
    return SyslogForwarder("127.0.0.1", port, client_tls_context(cafile=tls_files[0]), spool,
                           server_hostname="localhost", hostname="pacs1.example", retry_min=0.05, retry_max=0.2)


HEADER = re.compile(rb"^<85>1 (\S+) pacs1\.example vesalius (\d+) (\S+) - \xef\xbb\xbf(.*)$", re.S)


def _parse_frame(frame: bytes) -> tuple[str, str, ET.Element]:
    m = HEADER.match(frame)
    assert m, frame[:120]
    stamp, msgid, xml = m.group(1).decode(), m.group(3).decode(), m.group(4)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
    return stamp, msgid, ET.fromstring(xml)


def _user(root: ET.Element) -> str:
    return root.find("ActiveParticipant").attrib["UserID"]  # type: ignore[union-attr]


def test_syslog_framing_and_order(collector: Collector, tls_files: tuple[Path, Path], tmp_path: Path) -> None:
    with _forwarder(tls_files, collector.port, tmp_path / "spool") as fwd:
        events = [user_authentication(Party(f"Zoë Müller {i:02d}", "10.0.0.9")) for i in range(20)]
        events.append(instances_accessed(ALICE, "R", PATIENT, [STUDY]))
        for e in events:
            fwd.send(e)
        assert fwd.flush(10)
        frames = collector.wait(len(events))
    assert not collector.errors
    parsed = [_parse_frame(f) for f in frames]
    assert [_user(root) for _, _, root in parsed[:20]] == [f"Zoë Müller {i:02d}" for i in range(20)]
    assert [msgid for _, msgid, _ in parsed] == ["UserAuthentication"] * 20 + ["DICOMInstancesAccessed"]
    last = parsed[-1][2]
    assert last.find("EventIdentification/EventID").attrib["csd-code"] == "110103"  # type: ignore[union-attr]
    assert collector.connections == 1  # one connection carries the stream
    assert not list((tmp_path / "spool").iterdir())


def test_syslog_spools_while_the_collector_is_down(tls_files: tuple[Path, Path], tmp_path: Path) -> None:
    port = _free_port()
    spool = tmp_path / "spool"
    with _forwarder(tls_files, port, spool) as fwd:
        for i in range(3):
            fwd.send(user_authentication(Party(f"early{i}")))
        assert not fwd.flush(0.3)  # nobody listening: kept
        assert fwd.pending() == 3 and len(list(spool.glob("*.msg"))) == 3
        assert fwd.last_error is not None
        late = Collector(tls_files, port)
        try:
            assert fwd.flush(10)
            fwd.send(user_authentication(Party("late")))
            assert fwd.flush(10)
            frames = late.wait(4)
            assert [_user(_parse_frame(f)[2]) for f in frames] == ["early0", "early1", "early2", "late"]
            assert not late.errors
        finally:
            late.stop()


def test_syslog_spool_survives_a_restart(tls_files: tuple[Path, Path], tmp_path: Path) -> None:
    port = _free_port()
    spool = tmp_path / "spool"
    with _forwarder(tls_files, port, spool) as fwd:
        fwd.send(user_authentication(Party("before-restart-1")))
        fwd.send(user_authentication(Party("before-restart-2")))
    (spool / "00000000000000000099.tmp").write_bytes(b"half written")  # a crash mid-write
    c = Collector(tls_files, port)
    try:
        with _forwarder(tls_files, port, spool) as fwd:
            assert not (spool / "00000000000000000099.tmp").exists()
            fwd.send(user_authentication(Party("after-restart")))
            assert fwd.flush(10)
        frames = c.wait(3)
        assert [_user(_parse_frame(f)[2]) for f in frames] == ["before-restart-1", "before-restart-2", "after-restart"]
    finally:
        c.stop()


def test_syslog_reconnects_when_the_collector_restarts(tls_files: tuple[Path, Path], tmp_path: Path) -> None:
    first = Collector(tls_files)
    port = first.port
    with _forwarder(tls_files, port, tmp_path / "spool") as fwd:
        for i in range(3):
            fwd.send(user_authentication(Party(f"a{i}")))
        assert fwd.flush(10)
        first.wait(3)
        first.stop()
        time.sleep(0.1)
        second = Collector(tls_files, port)
        try:
            for i in range(3):
                fwd.send(user_authentication(Party(f"b{i}")))
            assert fwd.flush(10)
            frames = second.wait(3)
            assert [_user(_parse_frame(f)[2]) for f in frames] == ["b0", "b1", "b2"]
        finally:
            second.stop()


def test_audit_log_forwards_what_it_records(collector: Collector, tls_files: tuple[Path, Path],
                                            tmp_path: Path) -> None:
    engine = open_index(f"sqlite:///{tmp_path / 'index.sqlite'}")
    with _forwarder(tls_files, collector.port, tmp_path / "spool") as fwd, AuditLog(engine, forwarder=fwd) as trail:
        pk = trail.record(instances_accessed(ALICE, "R", PATIENT, [STUDY]))
        assert fwd.flush(10)
        [frame] = collector.wait(1)
        rec = trail.get(pk)
        assert rec is not None
        assert frame.endswith(rec.xml.encode("utf-8"))  # the collector holds the same message
    engine.dispose()


def test_syslog_requires_tls(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="SSLContext"):
        SyslogForwarder("127.0.0.1", 6514, None, tmp_path)  # type: ignore[arg-type]


def test_record_survives_an_unknown_object_type(trail: AuditLog) -> None:
    """A security alert about a node (ID type Node ID) is stored and verified like any other."""
    pk = trail.record(security_alert(ARCHIVE, EventType.SECURITY_CONFIGURATION, subject="node-7",
                                     subject_type=ObjectIDType.NODE_ID, description="TLS disabled"))
    rec = trail.get(pk)
    assert rec is not None and rec.patient_id == "" and rec.study_uid == ""
    assert trail.verify().ok
    with trail.engine.connect() as conn:
        assert conn.execute(select(audit_head.c.seq)).scalar_one() == pk

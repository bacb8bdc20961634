"""The interfaces' side of the audit trail: one call per audited action, written off the
request path (HIPAA 164.312(b) audit controls; PS3.15 A.5 messages via
:mod:`vesalius.security.audit`).

Events are queued and written by one background thread, so recording adds no database
commit to a request. Reads of one study by one user from one address (a viewer fetching
hundreds of frames) are aggregated into one DICOM Instances Accessed message per
``aggregate_seconds``. A crash can lose the events of the last second; ``close`` writes
everything still queued.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from vesalius.security import audit as A

log = logging.getLogger("vesalius.audit")

Facts = Callable[[str], "dict[str, str] | None"]


@dataclass
class _Aggregate:
    first: float
    count: int
    action: str


class Auditor:
    """Records what users and peers do, as PS3.15 audit messages."""

    def __init__(self, audit_log: A.AuditLog, facts: Facts, *, app_name: str = "VESALIUS",
                 aggregate_seconds: float = 60.0) -> None:
        self.log = audit_log
        self.facts = facts
        self.app = A.Party.application(app_name)
        self.aggregate_seconds = aggregate_seconds
        self._queue: queue.Queue[A.AuditEvent | None] = queue.Queue()
        self._pending: dict[tuple[str, str, str, str], _Aggregate] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vesalius-audit", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ events
    def emit(self, event: A.AuditEvent) -> None:
        self._queue.put(event)

    def login(self, user: str, address: str, ok: bool, *, logout: bool = False, detail: str = "") -> None:
        self.emit(A.user_authentication(A.Party(user or "unknown", address or None), logout=logout,
                                        outcome=A.Outcome.SUCCESS if ok else A.Outcome.MINOR_FAILURE,
                                        authenticator=self.app, description=detail or None))

    def query(self, user: str, address: str, query: str, ok: bool = True) -> None:
        self.emit(A.query(A.Party(user, address or None), self.app, query.encode("utf-8", "replace"),
                          transfer_syntax=None, details={"QueryEncoding": b"UTF-8"},
                          outcome=A.Outcome.SUCCESS if ok else A.Outcome.MINOR_FAILURE))

    def accessed(self, user: str, address: str, study_uid: str, action: str = "R") -> None:
        """A read (R) or store (C) of a study's instances; aggregated per user, address, study."""
        key = (user, address, study_uid, action)
        with self._lock:
            agg = self._pending.get(key)
            if agg is None:
                self._pending[key] = _Aggregate(time.monotonic(), 1, action)
            else:
                agg.count += 1

    def deleted(self, user: str, address: str, facts: dict[str, str], instances: int) -> None:
        self.emit(A.study_deleted(A.Party(user, address or None), _patient(facts),
                                  [A.StudyRef.of(facts.get("StudyInstanceUID", ""))],
                                  description=f"{instances} instance(s) deleted"))

    def alert(self, user: str, address: str, what: str, subject: str = "") -> None:
        """A Security Alert: a refused request (use of a restricted function) or bad credentials."""
        self.emit(A.security_alert(self.app, A.EventType.USE_OF_RESTRICTED_FUNCTION,
                                   performer=A.Party(user or "unknown", address or None),
                                   subject=subject or None, outcome=A.Outcome.MINOR_FAILURE,
                                   description=what))

    # ------------------------------------------------------------------ writing
    def _flush_aggregates(self, everything: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            due = [(k, v) for k, v in self._pending.items() if everything or now - v.first >= self.aggregate_seconds]
            for k, _ in due:
                del self._pending[k]
        for (user, address, study_uid, action), agg in due:
            facts = self.facts(study_uid) or {"StudyInstanceUID": study_uid}
            try:
                self._write(A.instances_accessed(A.Party(user, address or None), action, _patient(facts),
                                                 [A.StudyRef.of(study_uid)], archive=self.app,
                                                 description=f"{agg.count} request(s)"))
            except Exception as exc:  # pragma: no cover - reported, never raised into requests
                log.error("audit event not written (%s)", type(exc).__name__)

    def _write(self, event: A.AuditEvent) -> None:
        self.log.record(event)

    def _run(self) -> None:
        while True:
            try:
                event = self._queue.get(timeout=1.0)
            except queue.Empty:
                event = None
            if event is not None:
                try:
                    self._write(event)
                except Exception as exc:
                    log.error("audit event not written (%s)", type(exc).__name__)
            self._flush_aggregates()
            if self._stop.is_set() and self._queue.empty():
                return

    def flush(self, timeout: float = 10.0) -> None:
        """Write everything queued and aggregated (tests, shutdown)."""
        self._flush_aggregates(everything=True)
        deadline = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)

    def close(self) -> None:
        self._flush_aggregates(everything=True)
        self._stop.set()
        self._thread.join(timeout=15)


def _patient(facts: dict[str, str]) -> A.PatientRef:
    return A.PatientRef(facts.get("PatientID", "") or "unknown", facts.get("IssuerOfPatientID", ""))

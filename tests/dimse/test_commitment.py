"""Storage Commitment Push Model, the archive as SCP (PS3.4 Annex J), with a pynetdicom SCU.

The SCU asks with N-ACTION (Request Storage Commitment, action type 1); the archive answers
at once and reports with N-EVENT-REPORT: event type 1 when every instance is committed,
2 when some are not, each failed one with its Failure Reason (J.3.3.1.2: 0x0112 no such
object instance, 0x0119 class / instance conflict). The report comes on the same
association while the SCU keeps it open, otherwise on a new association to the SCU's AE,
which must be a configured remote.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import MRImageStorage, generate_uid
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import N_EVENT_REPORT
from pynetdicom.events import Event
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from tests import peers
from tests.factory import instance, uid
from vesalius.archive import Archive
from vesalius.config import Remote
from vesalius.dimse.server import DimseServer

AET = "VESALIUS"
SCU_AET = "COMMITSCU"
INSTANCE_UID = "1.2.840.10008.1.20.1.1"  # the well-known Storage Commitment SOP Instance
CT = "1.2.840.10008.5.1.4.1.1.2"
NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119


@dataclass
class Report:
    """The N-EVENT-REPORT the SCU got."""

    event_type: int
    info: Dataset
    calling_ae: str  # who opened the association it came on
    same_association: bool


@dataclass
class CommitSCU:
    """Collects N-EVENT-REPORTs, whichever association they come on."""

    reports: list[Report] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    assoc: Association | None = None

    def handle_n_event_report(self, event: Event) -> tuple[int, Dataset | None]:
        req = cast(N_EVENT_REPORT, event.request)
        info = event.event_information
        self.reports.append(Report(int(cast(int, req.EventTypeID)), info,
                                   str(event.assoc.requestor.ae_title).strip(),
                                   event.assoc is self.assoc))
        self.arrived.set()
        return 0x0000, None

    def wait(self, timeout: float = 10.0) -> Report:
        assert self.arrived.wait(timeout), "no N-EVENT-REPORT arrived"
        (report,) = self.reports
        return report


@pytest.fixture
def stored(archive: Archive) -> list[tuple[str, str]]:
    """Three archived CT instances, as (SOP Class UID, SOP Instance UID)."""
    for n in range(3):
        assert archive.store_bytes(instance("COMMIT", "SE1", n)).ok
    return [(CT, uid("COMMIT", "SE1", n)) for n in range(3)]


def _request(items: list[tuple[str, str]], transaction: str) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction
    seq = []
    for sop_class, sop_uid in items:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_uid
        seq.append(item)
    ds.ReferencedSOPSequence = seq
    return ds


def _associate(server: DimseServer, scu: CommitSCU) -> Association:
    ae = AE(SCU_AET)
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate("127.0.0.1", server.port, ae_title=AET,
                         evt_handlers=[(evt.EVT_N_EVENT_REPORT, scu.handle_n_event_report)])
    assert assoc.is_established
    scu.assoc = assoc
    return assoc


def _n_action(assoc: Association, items: list[tuple[str, str]], transaction: str,
              action_type: int = 1) -> int:
    status, _ = assoc.send_n_action(_request(items, transaction), action_type,
                                    StorageCommitmentPushModel, INSTANCE_UID)
    assert "Status" in status, "no N-ACTION response"
    return int(status.Status)


def _refs(info: Dataset, keyword: str) -> dict[str, tuple[str, int | None]]:
    """SOP Instance UID -> (SOP Class UID, Failure Reason) of a report sequence."""
    out: dict[str, tuple[str, int | None]] = {}
    for item in info.get(keyword, []):
        reason = item.get("FailureReason")
        out[str(item.ReferencedSOPInstanceUID)] = (str(item.ReferencedSOPClassUID),
                                                   None if reason is None else int(reason))
    return out


@pytest.fixture
def listener() -> Iterator[tuple[CommitSCU, int]]:
    """The SCU's own listener, for reports that come on a new association."""
    scu = CommitSCU()
    ae = AE(SCU_AET)
    ae.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
    port = peers.free_port()
    srv = ae.start_server(("127.0.0.1", port), block=False,
                          evt_handlers=[(evt.EVT_N_EVENT_REPORT, scu.handle_n_event_report)])
    assert srv is not None
    yield scu, port
    srv.shutdown()


# ------------------------------------------------------------------------------ same association


def test_all_committed_on_the_same_association(server: DimseServer,
                                               stored: list[tuple[str, str]]) -> None:
    scu = CommitSCU()
    assoc = _associate(server, scu)
    transaction = generate_uid()
    try:
        assert _n_action(assoc, stored, transaction) == 0x0000
        report = scu.wait()
    finally:
        assoc.release()
    assert report.same_association
    assert report.event_type == 1
    assert report.info.TransactionUID == transaction
    assert _refs(report.info, "ReferencedSOPSequence") == {u: (c, None) for c, u in stored}
    assert "FailedSOPSequence" not in report.info


def test_some_failed_on_the_same_association(server: DimseServer,
                                             stored: list[tuple[str, str]]) -> None:
    unknown = (CT, generate_uid())
    wrong_class = (str(MRImageStorage), stored[0][1])  # archived, but as a CT image
    scu = CommitSCU()
    assoc = _associate(server, scu)
    transaction = generate_uid()
    try:
        assert _n_action(assoc, [*stored, unknown, wrong_class], transaction) == 0x0000
        report = scu.wait()
    finally:
        assoc.release()
    assert report.same_association
    assert report.event_type == 2
    assert report.info.TransactionUID == transaction
    assert _refs(report.info, "ReferencedSOPSequence") == {u: (c, None) for c, u in stored}
    failed = _refs(report.info, "FailedSOPSequence")
    assert set(failed) == {unknown[1], wrong_class[1]}
    assert failed[unknown[1]] == (CT, NO_SUCH_OBJECT_INSTANCE)
    assert failed[wrong_class[1]][0] == MRImageStorage
    assert failed[wrong_class[1]][1] in (NO_SUCH_OBJECT_INSTANCE, CLASS_INSTANCE_CONFLICT)


def test_wrong_sop_class_is_a_class_instance_conflict(server: DimseServer,
                                                      stored: list[tuple[str, str]]) -> None:
    wrong_class = (str(MRImageStorage), stored[0][1])
    scu = CommitSCU()
    assoc = _associate(server, scu)
    try:
        assert _n_action(assoc, [wrong_class], generate_uid()) == 0x0000
        report = scu.wait()
    finally:
        assoc.release()
    assert report.event_type == 2
    failed = _refs(report.info, "FailedSOPSequence")
    assert failed == {wrong_class[1]: (MRImageStorage, CLASS_INSTANCE_CONFLICT)}


# ------------------------------------------------------------------------------ new association


def test_report_on_a_new_association_to_the_scu(server: DimseServer, archive: Archive,
                                                stored: list[tuple[str, str]],
                                                listener: tuple[CommitSCU, int]) -> None:
    scu, port = listener
    archive.add_remote(Remote("commit-scu", SCU_AET, "127.0.0.1", port))
    unknown = (CT, generate_uid())
    ae = AE(SCU_AET)
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate("127.0.0.1", server.port, ae_title=AET)
    assert assoc.is_established
    transaction = generate_uid()
    try:
        assert _n_action(assoc, [*stored, unknown], transaction) == 0x0000
    finally:
        assoc.release()  # at once: the report must come on a new association
    report = scu.wait()
    assert not report.same_association
    assert report.calling_ae == AET  # the archive opened it
    assert report.event_type == 2
    assert report.info.TransactionUID == transaction
    assert _refs(report.info, "ReferencedSOPSequence") == {u: (c, None) for c, u in stored}
    assert _refs(report.info, "FailedSOPSequence") == {unknown[1]: (CT, NO_SUCH_OBJECT_INSTANCE)}


def test_all_committed_on_a_new_association(server: DimseServer, archive: Archive,
                                            stored: list[tuple[str, str]],
                                            listener: tuple[CommitSCU, int]) -> None:
    scu, port = listener
    archive.add_remote(Remote("commit-scu", SCU_AET, "127.0.0.1", port))
    ae = AE(SCU_AET)
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate("127.0.0.1", server.port, ae_title=AET)
    assert assoc.is_established
    transaction = generate_uid()
    try:
        assert _n_action(assoc, stored, transaction) == 0x0000
    finally:
        assoc.release()
    report = scu.wait()
    assert not report.same_association
    assert report.event_type == 1
    assert report.info.TransactionUID == transaction
    assert "FailedSOPSequence" not in report.info


# ------------------------------------------------------------------------------ bad requests


def test_bad_n_action_requests_get_failure_statuses(server: DimseServer,
                                                    stored: list[tuple[str, str]]) -> None:
    scu = CommitSCU()
    assoc = _associate(server, scu)
    try:
        # Action Type 2 does not exist for this SOP Class (PS3.7 C.5: 0x0123 No such action).
        assert _n_action(assoc, stored, generate_uid(), action_type=2) == 0x0123
        # No Transaction UID: the request cannot be answered (0x0106 invalid argument value
        # or 0x0120 missing attribute).
        status, _ = assoc.send_n_action(_without_transaction(stored), 1,
                                        StorageCommitmentPushModel, INSTANCE_UID)
        assert int(status.Status) in (0x0106, 0x0120)
        # The association still serves a good request.
        assert _n_action(assoc, stored, generate_uid()) == 0x0000
        assert scu.wait().event_type == 1
    finally:
        assoc.release()


def _without_transaction(items: list[tuple[str, str]]) -> Dataset:
    ds = _request(items, generate_uid())
    del ds.TransactionUID
    return ds

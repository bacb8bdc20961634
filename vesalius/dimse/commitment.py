"""Storage Commitment Push Model SOP Class, SCP role (PS3.4 Annex J).

N-ACTION (Request Storage Commitment) is answered at once; the result follows as an
N-EVENT-REPORT (event type 1: all committed, 2: some failed), on the same association if
the requestor keeps it open, otherwise on a new association to the requestor's configured
remote. An instance is committed only when its object is fsynced and indexed with the
same SOP Class.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, cast

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import N_ACTION
from pynetdicom.events import Event

from vesalius.archive import Archive
from vesalius.dicom.uids import STORAGE_COMMITMENT_PUSH
from vesalius.errors import NotFound

log = logging.getLogger("vesalius.commitment")

NO_SUCH_OBJECT_INSTANCE = 0x0112  # Failure Reason (PS3.4 J.3.3.1.2)
CLASS_INSTANCE_CONFLICT = 0x0119
INSTANCE_UID = "1.2.840.10008.1.20.1.1"  # Storage Commitment Push Model SOP Instance


class StorageCommitment:
    """Answers N-ACTION and sends the N-EVENT-REPORT with the outcome."""

    def __init__(self, archive: Archive, ae_title: str) -> None:
        self.archive = archive
        self.ae_title = ae_title
        self._threads: list[threading.Thread] = []

    def handle_n_action(self, event: Event) -> tuple[int, Dataset | None]:
        req = cast(N_ACTION, event.request)
        if str(req.RequestedSOPClassUID) != str(STORAGE_COMMITMENT_PUSH) or req.ActionTypeID != 1:
            return 0x0123, None  # No such action type / class (PS3.7 C.5)
        try:
            info = event.action_information
            transaction = str(info.TransactionUID)
            items = [(str(i.ReferencedSOPClassUID), str(i.ReferencedSOPInstanceUID))
                     for i in info.ReferencedSOPSequence]
        except Exception:
            return 0x0106, None  # Invalid argument value
        assoc = event.assoc
        calling = str(assoc.requestor.ae_title).strip()
        t = threading.Thread(target=self._report, args=(assoc, calling, transaction, items),
                             name="storage-commitment", daemon=True)
        self._threads.append(t)
        t.start()
        return 0x0000, None

    def outcome(self, transaction: str, items: list[tuple[str, str]]) -> tuple[int, Dataset]:
        ds = Dataset()
        ds.TransactionUID = transaction
        ok, failed = [], []
        for sop_class, sop_uid in items:
            item = Dataset()
            item.ReferencedSOPClassUID = sop_class
            item.ReferencedSOPInstanceUID = sop_uid
            if self.archive.is_committed(sop_class, sop_uid):
                ok.append(item)
            else:
                known = self.archive.retrieval.instances_of(sop_uid=sop_uid)
                item.FailureReason = (CLASS_INSTANCE_CONFLICT
                                      if any(r.sop_class_uid != sop_class for r in known)
                                      else NO_SUCH_OBJECT_INSTANCE)
                failed.append(item)
        if ok:
            ds.ReferencedSOPSequence = ok
        if failed:
            ds.FailedSOPSequence = failed
        return (2 if failed else 1), ds

    def _report(self, assoc: Any, calling: str, transaction: str, items: list[tuple[str, str]]) -> None:
        event_type, ds = self.outcome(transaction, items)
        time.sleep(0.05)  # let the N-ACTION response go first
        if assoc.is_established:
            try:
                status, _ = assoc.send_n_event_report(ds, event_type, STORAGE_COMMITMENT_PUSH, INSTANCE_UID)
                if status and status.Status == 0x0000:
                    return
            except Exception as exc:
                log.info("commitment report on the same association failed: %s", type(exc).__name__)
        try:
            remote = self.archive.remote_by_ae(calling)
        except NotFound:
            log.warning("storage commitment result for %s cannot be sent: not a configured remote", calling)
            return
        ae = AE(self.ae_title)
        ae.add_requested_context(STORAGE_COMMITMENT_PUSH)
        from pynetdicom import build_role

        role = build_role(STORAGE_COMMITMENT_PUSH, scp_role=True)
        new = ae.associate(remote.host, remote.port, ae_title=remote.ae_title, ext_neg=[role],
                           evt_handlers=[(evt.EVT_ABORTED, lambda e: None)])
        if not new.is_established:
            log.warning("storage commitment result: cannot associate with %s", remote.name)
            return
        try:
            new.send_n_event_report(ds, event_type, STORAGE_COMMITMENT_PUSH, INSTANCE_UID)
        finally:
            new.release()

    def join(self, timeout: float = 5.0) -> None:
        for t in list(self._threads):
            t.join(timeout)

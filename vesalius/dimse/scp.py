"""DIMSE service handlers: C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET, Storage Commitment.

Each handler turns archive errors into the service's own status (PS3.4 Annex B, C, J;
PS3.7 Annex C) at this boundary; pynetdicom turns an unexpected exception into a
failure status too, so the server never dies on bad input.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext, build_context

from vesalius.archive import Archive
from vesalius.archive.retrieve import InstanceRef
from vesalius.dicom.keys import Level
from vesalius.dicom.parse import build_part10
from vesalius.dicom.transcode import choose, transcode
from vesalius.dicom.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE, STUDY_ROOT_MODELS
from vesalius.dimse.commitment import StorageCommitment
from vesalius.errors import NotFound, QueryError, VesaliusError

log = logging.getLogger("vesalius.dimse")



def _status(code: int, comment: str = "") -> Dataset:
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:64]
    return ds


def _calling_ae(event: Event) -> str:
    return str(event.assoc.requestor.ae_title).strip()


def _check_model(event: Event, level: Level) -> None:
    model = str(event.context.abstract_syntax)
    if model in STUDY_ROOT_MODELS and level == Level.PATIENT:
        raise QueryError("PATIENT level is not part of the Study Root information model")


def response_dataset(doc: dict[str, Any], level: Level) -> Dataset:
    """A C-FIND response identifier from a DICOM JSON object."""
    ds = Dataset.from_json(doc)
    ds.QueryRetrieveLevel = level.value
    if "SpecificCharacterSet" not in ds and _has_non_ascii(doc):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def _has_non_ascii(doc: dict[str, Any]) -> bool:
    try:
        str(doc).encode("ascii")
        return False
    except UnicodeEncodeError:
        return True


class Handlers:
    """The SCP side of every DIMSE service the archive offers."""

    def __init__(self, archive: Archive, commitment: StorageCommitment) -> None:
        self.archive = archive
        self.commitment = commitment

    def bindings(self) -> list[tuple[Any, Any]]:
        return [
            (evt.EVT_C_ECHO, self.handle_c_echo),
            (evt.EVT_C_STORE, self.handle_c_store),
            (evt.EVT_C_FIND, self.handle_c_find),
            (evt.EVT_C_MOVE, self.handle_c_move),
            (evt.EVT_C_GET, self.handle_c_get),
            (evt.EVT_N_ACTION, self.commitment.handle_n_action),
        ]

    # ------------------------------------------------------------------ C-ECHO
    def handle_c_echo(self, event: Event) -> int:
        """Verification Service Class (PS3.4 Annex A)."""
        return 0x0000

    # ------------------------------------------------------------------ C-STORE
    def handle_c_store(self, event: Event) -> Dataset | int:
        """Storage Service Class SCP (PS3.4 Annex B): archived durably before Success."""
        req = cast(C_STORE, event.request)
        try:
            payload = event.encoded_dataset(include_meta=False)
            data = build_part10(payload, str(req.AffectedSOPClassUID), str(req.AffectedSOPInstanceUID),
                                str(event.context.transfer_syntax), _calling_ae(event))
        except Exception as exc:
            return _status(0xC000, f"cannot read data set: {type(exc).__name__}")
        report = self.archive.store_bytes(data, _calling_ae(event), str(req.AffectedSOPInstanceUID))
        if report.ok:
            return int(report.status)
        return _status(int(report.status), report.reason)

    # ------------------------------------------------------------------ C-FIND
    def handle_c_find(self, event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """Query/Retrieve C-FIND SCP (PS3.4 C.4.1), Patient and Study Root models."""
        try:
            q = self.archive.parse_query(event.identifier)
            _check_model(event, q.level)
        except QueryError as exc:
            yield _status(0xA900, str(exc)), None
            return
        except Exception as exc:
            yield _status(0xC000, f"cannot read identifier: {type(exc).__name__}"), None
            return
        cap = self.archive.settings.max_find_results
        try:
            docs = list(self.archive.find(q, limit=cap + 1 if cap else None))
            if cap and len(docs) > cap:
                # Refused: Out of Resources (PS3.4 C.4.1.1.4), before sending any match.
                yield _status(0xA700, f"more than {cap} matches: refine the query"), None
                return
            for doc in docs:
                if event.is_cancelled:
                    yield 0xFE00, None
                    return
                yield 0xFF00, response_dataset(doc, q.level)
        except QueryError as exc:
            yield _status(0xA900, str(exc)), None
            return
        except Exception as exc:
            log.exception("C-FIND failed")
            yield _status(0xC001, f"unable to process: {type(exc).__name__}"), None
            return
        yield 0x0000, None

    # ------------------------------------------------------------------ retrieve
    def _locate(self, event: Event) -> list[InstanceRef]:
        return self.archive.locate(event.identifier)

    def _sendable(self, ref: InstanceRef, accepted: dict[str, set[str]]) -> Dataset | Path:
        """The stored file as it is if the peer accepts its syntax, else a transcoded copy."""
        target = choose(ref.transfer_syntax, accepted.get(ref.sop_class_uid, set()))
        if target is None:
            raise VesaliusError("peer accepts no transfer syntax this object can be sent in")
        path = self.archive.retrieval.path(ref)
        if target == ref.transfer_syntax and path is not None:
            return _PathDataset.wrap(path, ref)
        return transcode(self.archive.read(ref), target)

    def _send_all(self, event: Event, refs: list[InstanceRef], assoc_holder: dict[str, Any]
                  ) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        for ref in refs:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            assoc = assoc_holder.get("assoc")
            accepted: dict[str, set[str]] = {}
            if assoc is not None:
                for cx in assoc.accepted_contexts:
                    accepted.setdefault(str(cx.abstract_syntax), set()).add(str(cx.transfer_syntax[0]))
            try:
                yield 0xFF00, self._sendable(ref, accepted)  # type: ignore[misc]
            except Exception as exc:
                log.warning("retrieve: cannot send one instance: %s", type(exc).__name__)
                failed = Dataset()
                failed.SOPInstanceUID = ref.sop_uid
                failed.SOPClassUID = ref.sop_class_uid
                yield 0xFF00, failed  # no pixel data/meta: pynetdicom counts it as failed

    def handle_c_get(self, event: Event) -> Iterator[Any]:
        """Query/Retrieve C-GET SCP (PS3.4 C.4.3): C-STORE on the same association."""
        try:
            refs = self._locate(event)
        except QueryError as exc:
            yield _status(0xA900, str(exc)), None
            return
        yield len(refs)
        yield from self._send_all(event, refs, {"assoc": event.assoc})

    def handle_c_move(self, event: Event) -> Iterator[Any]:
        """Query/Retrieve C-MOVE SCP (PS3.4 C.4.2): C-STORE to a configured remote."""
        try:
            remote = self.archive.remote_by_ae(str(event.move_destination, "ascii", "replace")
                                               if isinstance(event.move_destination, bytes)
                                               else str(event.move_destination))
        except NotFound:
            yield None, None  # 0xA801 Move Destination unknown
            return
        try:
            refs = self._locate(event)
        except QueryError as exc:
            yield remote.host, remote.port
            yield _status(0xA900, str(exc)), None
            return
        holder: dict[str, Any] = {}

        def on_established(ev: Event) -> None:
            holder["assoc"] = ev.assoc

        contexts: list[PresentationContext] = []
        seen: set[tuple[str, str]] = set()
        for ref in refs:
            for ts_list in ((ref.transfer_syntax,), (EXPLICIT_VR_LE, IMPLICIT_VR_LE)):
                k = (ref.sop_class_uid, ts_list[0])
                if k in seen or len(contexts) >= 128:
                    continue
                seen.add(k)
                contexts.append(build_context(ref.sop_class_uid, list(ts_list)))
        yield remote.host, remote.port, {"contexts": contexts,
                                         "evt_handlers": [(evt.EVT_ESTABLISHED, on_established)],
                                         "max_pdu": self.archive.settings.max_pdu_size}
        yield len(refs)
        yield from self._send_all(event, refs, holder)


class _PathDataset(Dataset):
    """A data set that stands for a stored file, sent as it is (no decode, no re-encode)."""

    path: Path

    @classmethod
    def wrap(cls, path: Path, ref: InstanceRef) -> _PathDataset:
        ds = cls()
        ds.SOPClassUID = ref.sop_class_uid
        ds.SOPInstanceUID = ref.sop_uid
        object.__setattr__(ds, "path", path)
        return ds


def install_path_send() -> None:
    """Let pynetdicom's C-STORE sub-operations send a :class:`_PathDataset` from its file."""
    from pynetdicom.association import Association

    if getattr(Association.send_c_store, "_vesalius", False):
        return
    orig = Association.send_c_store

    def send_c_store(self: Association, dataset: Any, *args: Any, **kwargs: Any) -> Dataset:
        if isinstance(dataset, _PathDataset):
            dataset = dataset.path
        return orig(self, dataset, *args, **kwargs)

    send_c_store._vesalius = True  # type: ignore[attr-defined]
    Association.send_c_store = send_c_store  # type: ignore[method-assign]


def install_invalid_request_abort() -> None:
    """Abort an association whose peer sends a malformed request (e.g. a C-STORE-RQ with an
    empty Affected SOP Instance UID): pynetdicom would drop it silently and the peer would
    wait for an answer that never comes (PS3.7 8.1.1: such a message is a protocol error)."""
    from pynetdicom.association import Association

    if getattr(Association._serve_request, "_vesalius", False):
        return
    orig = Association._serve_request

    def serve_request(self: Association, msg: Any, context_id: int) -> None:
        if not self._sent_release and not msg.is_valid_request:
            if getattr(msg, "is_valid_response", False):
                if not self._reactor_checkpoint.is_set():
                    # pynetdicom's reactor can wake just as a send_*() pauses it and take the
                    # response that send_*() waits for: hand it back instead of losing it.
                    self.dimse.msg_queue.put((context_id, msg))
                    return
                log.warning("unexpected %s response ignored", msg.msg_type)
                return
            log.warning("malformed %s request: aborting the association", msg.msg_type)
            self.abort()
            return
        orig(self, msg, context_id)

    serve_request._vesalius = True  # type: ignore[attr-defined]
    Association._serve_request = serve_request  # type: ignore[method-assign]

"""SCU helpers for the CLI: C-ECHO and C-STORE to a peer (PS3.4 Annex A and B)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.misc import is_dicom
from pynetdicom import AE, build_context
from pynetdicom.presentation import PresentationContext

from vesalius.config import check_ae_title
from vesalius.dicom.parse import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION
from vesalius.dicom.transcode import choose, transcode
from vesalius.dicom.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE, VERIFICATION
from vesalius.dimse import tuning
from vesalius.errors import ConfigError

_TARGET = re.compile(r"^(?P<ae>[^@]{1,16})@(?P<host>[^:@]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class Peer:
    ae_title: str
    host: str
    port: int


def parse_target(text: str) -> Peer:
    """Parse ``AE@HOST:PORT``."""
    m = _TARGET.match(text.strip())
    if not m:
        raise ConfigError(f"{text!r} is not AE@HOST:PORT (e.g. ORTHANC@127.0.0.1:4242)")
    port = int(m["port"])
    if not 0 < port < 65536:
        raise ConfigError(f"port {port} is out of range")
    return Peer(check_ae_title(m["ae"]), m["host"].strip("[]"), port)


def _ae(calling: str) -> AE:
    tuning.apply()
    ae = AE(ae_title=calling)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION
    ae.acse_timeout = 30
    ae.network_timeout = 60
    ae.dimse_timeout = 60
    return ae


def echo(peer: Peer, calling: str = "VESALIUS") -> int:
    """C-ECHO; returns the status (0 is success). Raises ConnectionError if no association."""
    ae = _ae(calling)
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        raise ConnectionError(f"association with {peer.ae_title}@{peer.host}:{peer.port} was rejected or failed")
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if "Status" in status else -1
    finally:
        assoc.release()


@dataclass
class SendReport:
    sent: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def send(peer: Peer, files: Iterable[Path], calling: str = "VESALIUS",
         progress: Callable[[int], None] | None = None) -> SendReport:
    """C-STORE every DICOM file to ``peer`` over one association, as stored when accepted."""
    report = SendReport()
    metas: list[tuple[Path, str, str]] = []
    for f in files:
        if not is_dicom(str(f)):
            report.skipped.append((str(f), "not a DICOM Part-10 file"))
            continue
        try:
            meta = dcmread(f, stop_before_pixels=True, specific_tags=["SOPClassUID"])
            metas.append((f, str(meta.file_meta.MediaStorageSOPClassUID), str(meta.file_meta.TransferSyntaxUID)))
        except Exception as exc:
            report.skipped.append((str(f), f"unreadable: {type(exc).__name__}"))
    if not metas:
        return report
    contexts: list[PresentationContext] = []
    seen: set[tuple[str, str]] = set()
    for _, sop, ts in metas:
        for tss in ((ts,), (EXPLICIT_VR_LE, IMPLICIT_VR_LE)):
            if (sop, tss[0]) not in seen and len(contexts) < 128:
                seen.add((sop, tss[0]))
                contexts.append(build_context(sop, list(tss)))
    ae = _ae(calling)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, contexts=contexts)
    if not assoc.is_established:
        raise ConnectionError(f"association with {peer.ae_title}@{peer.host}:{peer.port} was rejected or failed")
    accepted: dict[str, set[str]] = {}
    for cx in assoc.accepted_contexts:
        accepted.setdefault(str(cx.abstract_syntax), set()).add(str(cx.transfer_syntax[0]))
    try:
        for f, sop, ts in metas:
            target = choose(ts, accepted.get(sop, set()))
            try:
                if target is None:
                    raise ValueError("the peer accepts no transfer syntax for this SOP class")
                payload = f if target == ts else transcode(f.read_bytes(), target)
                status = assoc.send_c_store(payload)
                code = int(status.Status) if "Status" in status else -1
                if code in (0x0000, 0xB000, 0xB006, 0xB007):
                    report.sent += 1
                else:
                    report.failed.append((str(f), f"status 0x{code:04X}" if code >= 0 else "no response"))
            except Exception as exc:
                report.failed.append((str(f), str(exc) or type(exc).__name__))
            if progress:
                progress(1)
            if not assoc.is_established:
                break
    finally:
        if assoc.is_established:
            assoc.release()
    return report

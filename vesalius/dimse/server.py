"""The DICOM listener: one pynetdicom AE with every service the archive offers.

Association negotiation (PS3.7 D, PS3.8): the called AE title must be ours; storage is
unrestricted (every storage SOP class, every transfer syntax in
:data:`vesalius.dicom.uids.STORAGE_TRANSFER_SYNTAXES`); Query/Retrieve Patient and Study
Root FIND/MOVE/GET; Verification; Storage Commitment Push Model. Over the association
limit a peer gets a transient A-ASSOCIATE-RJ (PS3.8 9.3.4, reason 2 "local limit
exceeded"), not a hang.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from pynetdicom import AE, AllStoragePresentationContexts
from pynetdicom.transport import ThreadedAssociationServer
from pynetdicom.utils import make_target

from vesalius.archive import Archive
from vesalius.dicom.parse import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION
from vesalius.dicom.uids import (
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
    STORAGE_COMMITMENT_PUSH,
    STORAGE_TRANSFER_SYNTAXES,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    VERIFICATION,
)
from vesalius.dimse import tuning
from vesalius.dimse.commitment import StorageCommitment
from vesalius.dimse.scp import Handlers, install_invalid_request_abort, install_path_send

log = logging.getLogger("vesalius.dimse")

QR_MODELS = (PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET, STUDY_ROOT_FIND, STUDY_ROOT_MOVE,
             STUDY_ROOT_GET)


def build_ae(archive: Archive) -> AE:
    """The Application Entity with the archive's presentation contexts and limits."""
    tuning.apply()
    install_path_send()
    install_invalid_request_abort()
    s = archive.settings
    ae = AE(ae_title=s.ae_title)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION
    ae.require_called_aet = True
    ae.maximum_associations = s.max_associations
    ae.maximum_pdu_size = s.max_pdu_size
    ae.acse_timeout = s.acse_timeout
    ae.dimse_timeout = s.dimse_timeout
    ae.network_timeout = s.network_timeout
    ae.connection_timeout = s.network_timeout
    ae.add_supported_context(VERIFICATION)
    for cx in AllStoragePresentationContexts:
        # scu_role/scp_role True: accept C-GET requestors' role selection (PS3.7 D.3.3.4).
        assert cx.abstract_syntax is not None
        ae.add_supported_context(cx.abstract_syntax, list(STORAGE_TRANSFER_SYNTAXES),
                                 scu_role=True, scp_role=True)
    for model in QR_MODELS:
        ae.add_supported_context(model)
    ae.add_supported_context(STORAGE_COMMITMENT_PUSH)
    return ae


class ReusePortServer(ThreadedAssociationServer):
    """A listener that shares its port with the other worker processes (SO_REUSEPORT).

    The kernel spreads incoming associations over the workers' listening sockets.
    """

    def server_bind(self) -> None:
        import socket

        assert self.socket is not None
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class DimseServer:
    """Runs the listener in background threads; stops gracefully."""

    def __init__(self, archive: Archive, host: str | None = None, port: int | None = None,
                 reuse_port: bool = False) -> None:
        self.archive = archive
        self.host = host if host is not None else archive.settings.dicom_host
        self.port = port if port is not None else archive.settings.dicom_port
        self.ae = build_ae(archive)
        self.commitment = StorageCommitment(archive, archive.settings.ae_title)
        self.handlers = Handlers(archive, self.commitment)
        self.server: ThreadedAssociationServer | None = None
        self.reuse_port = reuse_port

    def start(self) -> None:
        if self.reuse_port:
            server = self.ae.make_server((self.host, self.port), evt_handlers=self.handlers.bindings(),  # type: ignore[arg-type]
                                         server_class=ReusePortServer)
            thread = threading.Thread(target=make_target(server.serve_forever), name="AcceptorServer",
                                      daemon=True)
            thread.start()
            self.ae._servers.append(server)
        else:
            started = self.ae.start_server((self.host, self.port), block=False,
                                           evt_handlers=self.handlers.bindings())  # type: ignore[arg-type]
            assert started is not None
            server = started
        self.server = server
        self.port = int(server.server_address[1])
        log.info("DICOM listener %s on %s:%d", self.archive.settings.ae_title, self.host, self.port)

    @property
    def active_associations(self) -> int:
        return len(self.server.active_associations) if self.server else 0

    def stop(self, grace: float = 30.0) -> None:
        """Stop accepting; let in-flight associations finish (up to ``grace`` s); close."""
        if self.server is None:
            return
        server = self.server
        # Stop the accept loop first so no new association starts.
        server.shutdown()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            # Connections that never became associations (probes) are not waited for.
            if not [a for a in server.active_associations if a.is_alive() and a.is_established]:
                break
            time.sleep(0.05)
        for assoc in server.active_associations:
            with contextlib.suppress(Exception):
                assoc.abort()
        server.server_close()
        self.commitment.join(2.0)
        self.server = None

    def __enter__(self) -> DimseServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop(grace=5.0)

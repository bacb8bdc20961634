"""pynetdicom settings the archive needs, and two latency fixes for its reactor loops.

pynetdicom 3.0 leaves Nagle's algorithm on: a response sent as two small PDUs (command, then
data set, as every C-FIND match is) waits ~40 ms for the peer's delayed ACK. Every socket the
archive accepts or opens gets TCP_NODELAY.

pynetdicom 3.0 also polls: the DUL thread and the association thread each sleep 1 ms between
checks, and sockets are read 4 KiB at a time. On loopback that caps C-STORE at a few
hundred objects per second whatever the handler does. While an association is busy (a
PDU moved in the last 50 ms) the patched loops sleep 50 us instead; idle associations keep
pynetdicom's 1 ms so they cost no CPU. Reads fill one buffer per PDU with ``recv_into``.
Behaviour is otherwise pynetdicom's own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
import types
from typing import Any

import pynetdicom.association as _association
import pynetdicom.dul as _dul
import pynetdicom.transport as _transport
from pynetdicom import _config

_BUSY_WINDOW = 0.05
_BUSY_SLEEP = 0.00005
_last_activity = [0.0]
_applied = [False]


def _recv(self: Any, nr_bytes: int) -> bytearray:
    buf = bytearray(nr_bytes)
    view = memoryview(buf)
    n = 0
    while n < nr_bytes:
        got = self.socket.recv_into(view[n:], nr_bytes - n)
        if not got:
            return buf[:n]
        n += got
    _last_activity[0] = time.monotonic()
    return buf


def _nodelay(sock: Any) -> None:
    with contextlib.suppress(OSError, AttributeError):  # not a TCP socket
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _sleep(seconds: float) -> None:
    if seconds <= 0.001 and time.monotonic() - _last_activity[0] < _BUSY_WINDOW:
        time.sleep(_BUSY_SLEEP)
    else:
        time.sleep(seconds)


def apply() -> None:
    """Configure pynetdicom for the archive (idempotent)."""
    # PS3.15 / house rule: no patient data in logs.
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    _config.LOG_HANDLER_LEVEL = "none"
    # Accept any storage SOP class, including private and future ones (PS3.4 B.5).
    _config.UNRESTRICTED_STORAGE_SERVICE = True
    # Send stored files as they are, without decoding them first.
    _config.STORE_SEND_CHUNKED_DATASET = True
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    if _applied[0]:
        return
    _applied[0] = True
    # The association thread (building responses) and the DUL thread (sending them) hand the
    # GIL back and forth for every message; Python's default 5 ms switch interval makes the
    # sender wait that long behind a busy producer.
    sys.setswitchinterval(float(os.environ.get("VESALIUS_SWITCH_INTERVAL", "0.001")))
    _transport.AssociationSocket.recv = _recv  # type: ignore[method-assign]
    fast_time = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("__")})
    fast_time.sleep = _sleep
    _association.time = fast_time  # type: ignore[attr-defined,assignment]
    _dul.time = fast_time  # type: ignore[attr-defined,assignment]

    orig_get_request = _transport.AssociationServer.get_request

    def get_request(self: Any) -> Any:
        sock, address = orig_get_request(self)
        _nodelay(sock)
        return sock, address

    _transport.AssociationServer.get_request = get_request  # type: ignore[method-assign]

    orig_create = _transport.AssociationSocket._create_socket

    def create_socket(self: Any, address: Any) -> Any:
        sock = orig_create(self, address)
        _nodelay(sock)
        return sock

    _transport.AssociationSocket._create_socket = create_socket  # type: ignore[method-assign]

    orig_send = _transport.AssociationSocket.send

    def send(self: Any, bytestream: bytes) -> None:
        _last_activity[0] = time.monotonic()
        orig_send(self, bytestream)

    _transport.AssociationSocket.send = send  # type: ignore[method-assign]

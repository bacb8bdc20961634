"""Extra DICOM listener processes sharing the port (SO_REUSEPORT), for parallel ingest.

Python runs one thread at a time per process; with ``dicom_workers = N`` the server runs N
listeners, each a process with its own index connections, and the kernel spreads
associations over them. SQLite serialises writers across processes (BEGIN IMMEDIATE with a
busy timeout); PostgreSQL takes them concurrently.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from multiprocessing.process import BaseProcess

from vesalius.config import Settings

log = logging.getLogger("vesalius.dimse")


def _worker_main(settings: Settings, index: int) -> None:
    from vesalius.archive import open_archive
    from vesalius.dimse.server import DimseServer

    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s %(levelname)s worker{index} %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    parent = multiprocessing.parent_process()
    if parent is not None:  # stop when the serving process dies, even by SIGKILL
        def watch_parent() -> None:
            parent.join()
            stop.set()

        threading.Thread(target=watch_parent, daemon=True).start()
    archive = open_archive(settings, recover=False)  # the parent recovered before starting us
    server = DimseServer(archive, reuse_port=True)
    server.start()
    stop.wait()
    server.stop(grace=30.0)
    archive.close()


def start_workers(settings: Settings, count: int) -> list[BaseProcess]:
    """Start ``count`` listener processes (spawned, not forked: no threads or sockets shared)."""
    ctx = multiprocessing.get_context("spawn")
    procs: list[BaseProcess] = []
    for i in range(count):
        p = ctx.Process(target=_worker_main, args=(settings, i + 1), name=f"vesalius-dicom-{i + 1}", daemon=False)
        p.start()
        procs.append(p)
    return procs


def stop_workers(procs: list[BaseProcess], grace: float = 35.0) -> None:
    """SIGTERM every worker; each finishes its in-flight associations; kill stragglers."""
    for p in procs:
        if p.is_alive() and p.pid:
            p.terminate()
    for p in procs:
        p.join(grace)
        if p.is_alive():
            p.kill()
            p.join(5)

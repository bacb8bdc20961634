"""``vesalius serve`` as an operator runs it: health endpoint, graceful stop, port clashes."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import peers
from tests.factory import instance, uid
from tests.test_cli import (
    HOST,
    Served,
    cli,
    cli_json,
    indexed,
    listeners,
    wait_for_listeners,
    write,
)

needs_dcmtk = pytest.mark.skipif(not peers.dcmtk_available("storescu", "echoscu"),
                                 reason="dcmtk is not installed (apt-get install dcmtk)")

#: Exit codes that count as a clean stop on SIGTERM: 0, or the conventional signal exit
#: (Popen reports death by SIGTERM as -15; a shell would say 128 + 15).
CLEAN_SIGTERM_EXITS = (0, -signal.SIGTERM, 128 + signal.SIGTERM)

_SENDING = re.compile(r"Sending file: (?P<file>.+?)\s*$")
_RESPONSE = re.compile(r"Received Store Response \((?P<status>[^)]*)\)")


@dataclass
class StoreLog:
    """What one ``storescu -v`` run said, file by file."""

    statuses: dict[str, str] = field(default_factory=dict)  # file -> status text
    lines: list[str] = field(default_factory=list)
    _current: str | None = None

    def feed(self, line: str) -> str | None:
        """Take one output line; return the status if it was a store response."""
        line = line.rstrip("\n")
        self.lines.append(line)
        if m := _SENDING.search(line):
            self._current = m["file"]
        elif (m := _RESPONSE.search(line)) and self._current is not None:
            self.statuses[self._current] = m["status"]
            self._current = None
            return m["status"]
        return None

    @property
    def succeeded(self) -> list[str]:
        """Files storescu was told were stored (status Success)."""
        return [f for f, s in self.statuses.items() if s == "Success"]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def start_storescu(files: Sequence[Path], aet: str, port: int,
                   calling_aet: str = "STORESCU") -> subprocess.Popen[str]:
    """``storescu -v`` in the background, its log on stdout (line by line)."""
    args = ["storescu", "-v", "-aet", calling_aet, "-aec", aet, "-ta", "30", "-td", "60",
            HOST, str(port), *(str(f) for f in files)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, env=peers.dcmtk_env(), bufsize=1)


def write_series(folder: Path, study: str, n: int, rows: int = 64) -> dict[Path, str]:
    """``n`` instances of one series as files; returns file -> SOP Instance UID."""
    return {write(folder / f"{study}_{i:04d}.dcm", instance(study, "SE1", i, rows=rows)):
            uid(study, "SE1", i) for i in range(n)}


def all_lines(proc: subprocess.Popen[str]) -> Iterable[str]:
    assert proc.stdout is not None
    yield from proc.stdout


# --------------------------------------------------------------------------------- /healthz
@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def running(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server to clash with: one listener, or two sharing the port (SO_REUSEPORT)."""
    srv = Served(tmp_path_factory.mktemp("running") / "data", workers=int(request.param))
    try:
        yield srv.start()
    finally:
        srv.kill()


def test_healthz(running: Served) -> None:
    status, ctype, body = running.healthz()
    assert status == 200
    assert ctype.startswith("application/json")
    assert body["status"] == "ok" and body["index"] == "ok"
    assert body["ae_title"] == "VESALIUS" and body["dicom_port"] == running.dicom_port


# --------------------------------------------------------------------------------- SIGTERM
@dataclass
class SigtermRun:
    files: dict[Path, str]
    log: StoreLog
    storescu_rc: int
    serve_rc: int
    successes_at_sigterm: int
    indexed: dict[str, str]
    instances: int
    serve_log: str


@pytest.fixture(scope="module")
def sigterm_run(tmp_path_factory: pytest.TempPathFactory) -> SigtermRun:
    """SIGTERM to ``serve`` while storescu is sending 200 instances on one association."""
    if not peers.dcmtk_available("storescu"):
        pytest.skip("dcmtk is not installed (apt-get install dcmtk)")
    root = tmp_path_factory.mktemp("sigterm")
    files = write_series(root / "in", "TERM", 200, rows=128)
    srv = Served(root / "data")
    scu: subprocess.Popen[str] | None = None
    try:
        srv.start()
        assert srv.proc is not None
        scu = start_storescu(list(files), srv.ae_title, srv.dicom_port)
        log, successes, at_sigterm = StoreLog(), 0, -1
        for line in all_lines(scu):
            if log.feed(line) == "Success":
                successes += 1
                if successes == 20:  # mid-association: 180 still to come
                    at_sigterm = successes
                    srv.proc.send_signal(signal.SIGTERM)
        storescu_rc = scu.wait(timeout=60)
        serve_rc = srv.proc.wait(timeout=60)
    finally:
        if scu is not None and scu.poll() is None:
            scu.kill()
            scu.wait()
        srv.kill()
    assert at_sigterm == 20, f"storescu never got 20 responses:\n{log.text}\n{srv.log}"
    counts = cli_json("stats", "--json", "--data-dir", srv.data_dir)
    return SigtermRun(files, log, storescu_rc, serve_rc, at_sigterm, indexed(srv.data_dir),
                      counts["instances"], srv.log)


def test_sigterm_keeps_every_acknowledged_instance(sigterm_run: SigtermRun) -> None:
    run = sigterm_run
    acknowledged = {run.files[Path(f)] for f in run.log.succeeded}
    assert len(acknowledged) >= run.successes_at_sigterm
    missing = acknowledged - set(run.indexed)
    assert not missing, f"{len(missing)} acknowledged instances are not in the index"
    assert run.instances == len(run.indexed) >= len(acknowledged)  # stats --json agrees
    assert set(run.indexed) <= set(run.files.values())


def test_sigterm_lets_the_association_finish(sigterm_run: SigtermRun) -> None:
    run = sigterm_run
    assert run.serve_rc in CLEAN_SIGTERM_EXITS, run.serve_log
    assert len(run.log.statuses) == 200, \
        f"storescu got {len(run.log.statuses)} of 200 responses:\n{run.log.text[-2000:]}"
    assert run.log.succeeded == [str(f) for f in run.files], "every store must succeed"
    assert run.storescu_rc == 0
    assert set(run.indexed) == set(run.files.values())
    assert "Traceback" not in run.serve_log


@needs_dcmtk
def test_sigterm_when_idle_exits_promptly(tmp_path: Path) -> None:
    """A finished association and a bare TCP probe (load balancer) must not delay the stop."""
    srv = Served(tmp_path / "data")
    try:
        srv.start()
        peers.echoscu(srv.ae_title, srv.dicom_port)
        with socket.create_connection((HOST, srv.dicom_port), timeout=5):
            pass  # connects and closes without an A-ASSOCIATE-RQ
        time.sleep(0.2)
        started = time.monotonic()
        rc = srv.terminate(timeout=15)
        assert rc in CLEAN_SIGTERM_EXITS, srv.log
        assert time.monotonic() - started < 10
    finally:
        srv.kill()


# --------------------------------------------------------------------------------- ports
@needs_dcmtk
def test_second_listener_on_the_same_dicom_port_is_refused(running: Served,
                                                           tmp_path: Path) -> None:
    seconds = [Served(tmp_path / f"second{w}", workers=w) for w in (1, 2)]
    try:
        for srv in seconds:
            srv.proc = srv.spawn(running.dicom_port, peers.free_port())
        for srv in seconds:
            assert srv.proc is not None
            assert srv.proc.wait(timeout=60) == 1, srv.log
            error = [line for line in srv.log.splitlines() if line.startswith("Error:")]
            assert len(error) == 1, srv.log
            assert f"DICOM port {running.dicom_port}" in error[0] and "in use" in error[0]
            assert "Traceback" not in srv.log
    finally:
        for srv in seconds:
            srv.kill()
    assert listeners(running.dicom_port) == running.workers  # nobody joined the port
    peers.echoscu(running.ae_title, running.dicom_port)  # the first one still answers
    assert running.healthz()[0] == 200


def test_second_listener_on_the_same_http_port_is_refused(running: Served,
                                                          tmp_path: Path) -> None:
    second = Served(tmp_path / "second")
    second.proc = second.spawn(peers.free_port(), running.http_port)
    try:
        rc = second.proc.wait(timeout=60)
    finally:
        second.kill()
    assert running.healthz()[0] == 200  # the first one is untouched
    error = [line for line in second.log.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and f"HTTP port {running.http_port}" in error[0], second.log
    assert rc == 1, second.log


# --------------------------------------------------------------------------------- workers
def test_sigterm_stops_the_dicom_workers(tmp_path: Path) -> None:
    srv = Served(tmp_path / "data", workers=2)
    try:
        srv.start()
        assert srv.terminate(timeout=60) in CLEAN_SIGTERM_EXITS, srv.log
        # serve waits for its workers before it exits: their sockets are closed by now
        assert wait_for_listeners(srv.dicom_port, 0, timeout=3), \
            f"{listeners(srv.dicom_port)} listeners left on the DICOM port after serve exited"
    finally:
        srv.kill()


def test_workers_end_when_serve_is_killed(tmp_path: Path) -> None:
    srv = Served(tmp_path / "data", workers=2)
    try:
        srv.start()
        assert srv.proc is not None
        srv.proc.kill()  # the main process only, as the OOM killer would
        srv.proc.wait(timeout=30)
        assert wait_for_listeners(srv.dicom_port, 0, timeout=3), \
            f"{listeners(srv.dicom_port)} orphaned listeners on the DICOM port"
    finally:
        srv.kill()


def test_serve_refuses_a_bad_setting(tmp_path: Path) -> None:
    proc = cli("serve", "--data-dir", tmp_path / "data", "--dicom-host", HOST, "--dicom-port",
               "70000", "--http-host", HOST, "--http-port", str(peers.free_port()), timeout=30)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "dicom_port 70000 is out of range" in proc.stderr
    assert not (tmp_path / "data").exists(), "nothing may be created before settings are valid"

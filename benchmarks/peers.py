"""Peers for the side-by-side benchmarks, all on loopback.

- :func:`storescp_floor`: dcmtk ``storescp`` writing what it receives (no fsync): the floor.
- :func:`orthanc`: Orthanc 1.10 with its own JSON config in a temporary folder.
- :func:`vesalius`: our server, ``<python> -m vesalius.cli serve ...``.
- dcmtk clients: :func:`run_storescu`, :func:`run_storescu_parallel`, :func:`run_movescu`,
  :func:`run_getscu`, :func:`count_instances_findscu`.
- Data: :func:`generate_ct` and :func:`cached_ct` (seeded 512x512 CT series).

Debian's dcmtk 3.6.7 and Orthanc (which uses dcmtk's network layer) disable Nagle only when the
environment has ``TCP_NODELAY=1``; without it every C-STORE waits ~40 ms for a delayed ACK on
loopback. Every dcmtk tool and Orthanc here runs with :func:`dicom_env`, which sets it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_OUT = REPO_ROOT / "bench-out"
ORTHANC_BIN = "/usr/sbin/Orthanc"
ORTHANC_DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
CLIENT_TIMEOUT_S = 1800.0
POLL_S = 0.05

GENERATOR_VERSION = 2


class PeerError(RuntimeError):
    """A peer or a client tool failed; the message says which and how to fix it."""


# --------------------------------------------------------------------------------------------
# Small helpers


def dicom_env() -> dict[str, str]:
    """The environment for dcmtk tools and Orthanc: ours plus ``TCP_NODELAY=1``."""
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    return env


def require_tool(name: str) -> str:
    """Absolute path of a command-line tool, or a :class:`PeerError` naming the fix."""
    path = shutil.which(name)
    if path is None:
        raise PeerError(
            f"{name!r} not found on PATH: install the Debian packages with `make sysdeps` "
            "(dcmtk, orthanc, orthanc-dicomweb)"
        )
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (sockets held together, so no duplicates)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def tcp_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url`` without any proxy from the environment; returns (status, body)."""
    try:
        with _NO_PROXY_OPENER.open(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), b""


def http_ok(url: str) -> bool:
    """True when ``GET url`` answers 200."""
    try:
        return http_get(url, timeout=1.0)[0] == 200
    except OSError:
        return False


def dicom_echo(aet: str, port: int, host: str = HOST, calling_aet: str = "BENCHECHO") -> bool:
    """True when a C-ECHO to ``aet@host:port`` succeeds."""
    cmd = [require_tool("echoscu"), "-to", "2", "-ta", "2", "-aet", calling_aet, "-aec", aet]
    try:
        proc = subprocess.run(
            [*cmd, host, str(port)], env=dicom_env(), capture_output=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def count_files(root: Path) -> int:
    """Number of regular files below ``root`` (0 when it does not exist)."""
    if not root.exists():
        return 0
    return sum(1 for p in root.rglob("*") if p.is_file())


def clear_dir(root: Path) -> None:
    """Empty ``root`` (keep the folder itself)."""
    if not root.exists():
        return
    for p in root.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def warm_page_cache(files: Sequence[Path]) -> int:
    """Read every file once so each timed run starts from the same (warm) page cache."""
    total = 0
    for f in files:
        total += len(f.read_bytes())
    return total


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    if not s:
        return math.nan
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


# --------------------------------------------------------------------------------------------
# Processes


def _spawn(
    cmd: Sequence[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(("$ " + shlex.join(cmd) + "\n").encode())
        log.flush()
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,  # its own process group: storescp --fork children included
        )


def _stop(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the process group we started, wait, then SIGKILL it if needed."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    # Forked children (storescp --fork) may outlive the leader for a moment.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def keep_logs(work_dir: Path, name: str | None = None) -> Path:
    """Copy the ``*.log`` files of a failed run to ``bench-out/logs/<name>/`` before cleanup."""
    dest = BENCH_OUT / "logs" / (name or work_dir.name)
    dest.mkdir(parents=True, exist_ok=True)
    for log in work_dir.glob("*.log"):
        shutil.copy2(log, dest / log.name)
    print(f"  logs kept in {dest}", file=sys.stderr, flush=True)
    return dest


def log_tail(log_path: Path, lines: int = 30) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _wait_ready(
    name: str,
    proc: subprocess.Popen[bytes],
    log_path: Path,
    ready: Callable[[], bool],
    timeout: float = READY_TIMEOUT_S,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PeerError(
                f"{name} exited with status {proc.returncode} before it was ready; "
                f"log {log_path}:\n{log_tail(log_path)}"
            )
        if ready():
            return
        time.sleep(POLL_S)
    raise PeerError(
        f"{name} not ready after {timeout:.0f} s; log {log_path}:\n{log_tail(log_path)}"
    )


# --------------------------------------------------------------------------------------------
# Running peers


@dataclass(frozen=True)
class DicomNode:
    """An application entity on the network."""

    aet: str
    host: str
    port: int


@dataclass(frozen=True)
class SeriesRef:
    """One generated series (each in its own study)."""

    patient_id: str
    study_uid: str
    series_uid: str
    count: int


@dataclass
class RunningPeer:
    """A started server. ``counter`` answers how many instances it holds (None: unknown)."""

    name: str
    node: DicomNode
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    counter: Callable[[Sequence[SeriesRef]], int | None]
    http_port: int | None = None
    info: dict[str, str] = field(default_factory=dict)

    def count_instances(self, series: Sequence[SeriesRef] = ()) -> int | None:
        return self.counter(series)

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)


@contextlib.contextmanager
def storescp_floor(
    work_dir: Path,
    *,
    aet: str = "STORESCP",
    port: int | None = None,
    fork: bool = True,
    out_dir: Path | None = None,
) -> Iterator[RunningPeer]:
    """dcmtk ``storescp -od DIR``: receives and writes each instance, no fsync, no index.

    ``fork`` gives one process per association, so parallel senders are served in parallel.
    """
    exe = require_tool("storescp")
    work_dir = work_dir.resolve()
    out_dir = out_dir.resolve() if out_dir else None
    port = port or free_port()
    data_dir = out_dir or work_dir / "storescp-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / "storescp.log"
    cmd = [exe, *(["--fork"] if fork else []), "-aet", aet, "-od", str(data_dir), str(port)]
    proc = _spawn(cmd, log_path, env=dicom_env(), cwd=work_dir)
    try:
        _wait_ready("storescp", proc, log_path, lambda: dicom_echo(aet, port))
        yield RunningPeer(
            name="storescp",
            node=DicomNode(aet, HOST, port),
            data_dir=data_dir,
            log_path=log_path,
            process=proc,
            counter=lambda _series: count_files(data_dir),
        )
    finally:
        _stop(proc)


def orthanc_config(
    work_dir: Path,
    *,
    aet: str,
    dicom_port: int,
    http_port: int,
    modalities: Sequence[DicomNode],
    dicomweb: bool,
) -> dict[str, object]:
    """Orthanc's JSON config: defaults (SQLite index, fsync on store) on loopback ports."""
    config: dict[str, object] = {
        "Name": "bench-orthanc",
        "StorageDirectory": str(work_dir / "storage"),
        "IndexDirectory": str(work_dir / "index"),
        "StorageCompression": False,
        "SyncStorageArea": True,
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "SslEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": aet,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomCheckModalityHost": False,
        "DicomModalities": {
            m.aet.lower(): {
                "AET": m.aet,
                "Host": m.host,
                "Port": m.port,
                "AllowEcho": True,
                "AllowFind": True,
                "AllowMove": True,
                "AllowGet": True,
                "AllowStore": True,
            }
            for m in modalities
        },
        "SaveJobs": False,
        "Plugins": [ORTHANC_DICOMWEB_PLUGIN] if dicomweb else [],
    }
    if dicomweb:
        config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
    return config


@contextlib.contextmanager
def orthanc(
    work_dir: Path,
    *,
    aet: str = "ORTHANC",
    modalities: Sequence[DicomNode] = (),
    dicomweb: bool = False,
    ready_timeout: float = READY_TIMEOUT_S,
) -> Iterator[RunningPeer]:
    """Orthanc with its own config, storage and SQLite index under ``work_dir``.

    ``modalities`` are the callers (find/move/get) and C-MOVE destinations it must know.
    """
    exe = ORTHANC_BIN if os.access(ORTHANC_BIN, os.X_OK) else require_tool("Orthanc")
    if dicomweb and not Path(ORTHANC_DICOMWEB_PLUGIN).exists():
        raise PeerError(f"{ORTHANC_DICOMWEB_PLUGIN} missing: install `orthanc-dicomweb`")
    dicom_port, http_port = free_ports(2)
    work_dir = work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    config_path = work_dir / "orthanc.json"
    config = orthanc_config(
        work_dir,
        aet=aet,
        dicom_port=dicom_port,
        http_port=http_port,
        modalities=modalities,
        dicomweb=dicomweb,
    )
    config_path.write_text(json.dumps(config, indent=2))
    log_path = work_dir / "orthanc.log"
    proc = _spawn([exe, str(config_path)], log_path, env=dicom_env(), cwd=work_dir)
    base = f"http://{HOST}:{http_port}"

    def count(_series: Sequence[SeriesRef]) -> int | None:
        status, body = http_get(base + "/statistics", timeout=30.0)
        if status != 200:
            raise PeerError(f"Orthanc GET /statistics answered {status}")
        return int(json.loads(body)["CountInstances"])

    try:
        _wait_ready(
            "Orthanc",
            proc,
            log_path,
            lambda: http_ok(base + "/system") and tcp_accepts(HOST, dicom_port),
            ready_timeout,
        )
        yield RunningPeer(
            name="orthanc",
            node=DicomNode(aet, HOST, dicom_port),
            data_dir=work_dir / "storage",
            log_path=log_path,
            process=proc,
            counter=count,
            http_port=http_port,
            info={"config": str(config_path)},
        )
    finally:
        _stop(proc)


def vesalius_cli(python: str, *args: str) -> list[str]:
    """The command line of ``vesalius <args>`` run by ``python``."""
    return [python, "-m", "vesalius.cli", *args]


@contextlib.contextmanager
def vesalius(
    work_dir: Path,
    *,
    python: str = sys.executable,
    aet: str = "VESALIUS",
    remotes: Sequence[DicomNode] = (),
    cmd_template: str | None = None,
    ready_timeout: float = READY_TIMEOUT_S,
    db: str | None = None,
    dicom_host: str | None = None,
) -> Iterator[RunningPeer]:
    """Our server: ``<python> -m vesalius.cli serve`` on a fresh data dir in ``work_dir``.

    ``db`` (optional) is the index URL passed as ``--db`` (default: SQLite in the data dir);
    ``dicom_host`` (optional) the address the DICOM listener binds (``--dicom-host``).

    ``remotes`` (C-MOVE destinations) are registered first with ``vesalius remote add``; the
    server is ready when ``GET /healthz`` answers 200 and its DICOM port answers C-ECHO.

    ``cmd_template`` (development only) replaces all of that with a stand-in command; its
    placeholders are ``{python} {data_dir} {aet} {dicom_port} {http_port} {remotes}``
    (``remotes``: ``AET@HOST:PORT`` separated by commas) and it is ready when its DICOM port
    answers C-ECHO.
    """
    work_dir = work_dir.resolve()
    data_dir = work_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    dicom_port, http_port = free_ports(2)
    log_path = work_dir / "vesalius.log"
    env = dicom_env()
    if cmd_template is None:
        for remote in remotes:
            cmd = vesalius_cli(
                python,
                "remote",
                "add",
                remote.aet.lower(),
                remote.aet,
                remote.host,
                str(remote.port),
                "--data-dir",
                str(data_dir),
                *(["--db", db] if db else []),
            )
            done = subprocess.run(
                cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
            )
            if done.returncode != 0:
                raise PeerError(
                    f"`{shlex.join(cmd)}` failed ({done.returncode}):\n"
                    f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
                )
        cmd = vesalius_cli(
            python,
            "serve",
            "--data-dir",
            str(data_dir),
            "--ae-title",
            aet,
            "--dicom-port",
            str(dicom_port),
            "--http-port",
            str(http_port),
            *(["--db", db] if db else []),
            *(["--dicom-host", dicom_host] if dicom_host else []),
        )

        def ready() -> bool:
            # /healthz may answer before the DICOM listener is up: want both.
            return http_ok(f"http://{HOST}:{http_port}/healthz") and dicom_echo(aet, dicom_port)

    else:
        cmd = shlex.split(
            cmd_template.format(
                python=python,
                data_dir=data_dir,
                aet=aet,
                dicom_port=dicom_port,
                http_port=http_port,
                remotes=",".join(f"{r.aet}@{r.host}:{r.port}" for r in remotes),
            )
        )

        def ready() -> bool:
            return dicom_echo(aet, dicom_port)

    node = DicomNode(aet, HOST, dicom_port)

    def count(series: Sequence[SeriesRef]) -> int | None:
        if cmd_template is None:
            n = vesalius_stats_count(python, data_dir, db=db)
            if n is not None:
                return n
        if not series:
            return None
        try:
            return count_instances_findscu(node, series, work_dir / "findscu")
        except PeerError:
            return None

    proc = _spawn(cmd, log_path, env=env, cwd=REPO_ROOT)
    try:
        _wait_ready("Vesalius", proc, log_path, ready, ready_timeout)
        yield RunningPeer(
            name="vesalius",
            node=node,
            data_dir=data_dir,
            log_path=log_path,
            process=proc,
            counter=count,
            http_port=http_port,
            info={"command": shlex.join(cmd)},
        )
    finally:
        _stop(proc)


def vesalius_stats_count(python: str, data_dir: Path, db: str | None = None) -> int | None:
    """``vesalius stats --data-dir DIR [--db URL] --json`` -> its ``instances``; None when
    unavailable."""
    cmd = vesalius_cli(python, "stats", "--data-dir", str(data_dir), "--json",
                       *(["--db", db] if db else []))
    try:
        done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        return None
    try:
        value = json.loads(done.stdout)["instances"]
    except (ValueError, KeyError, TypeError):
        return None
    return int(value)


# --------------------------------------------------------------------------------------------
# dcmtk clients


ARG_BUDGET = 100_000  # characters of file names on one command line before we link a folder


def _storescu_cmd(
    inputs: Path | Sequence[Path], node: DicomNode, calling_aet: str, link_dir: Path
) -> list[str]:
    cmd = [require_tool("storescu"), "-aet", calling_aet, "-aec", node.aet]
    if isinstance(inputs, Path):
        if not inputs.is_dir():
            return [*cmd, node.host, str(node.port), str(inputs)]
        return [*cmd, "+sd", "+r", node.host, str(node.port), str(inputs)]
    files = [str(f) for f in inputs]
    if sum(len(f) + 1 for f in files) <= ARG_BUDGET:
        return [*cmd, node.host, str(node.port), *files]
    # Too many names for one command line: hard-link (or symlink) them into one folder.
    link_dir.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(inputs):
        target = link_dir / f"{i:07d}.dcm"
        try:
            os.link(f, target)
        except OSError:
            target.symlink_to(Path(f).resolve())
    return [*cmd, "+sd", "+r", node.host, str(node.port), str(link_dir)]


def _check_client(name: str, proc: subprocess.CompletedProcess[bytes] | None, out: bytes) -> None:
    if proc is not None and proc.returncode != 0:
        text = out.decode(errors="replace")[-3000:]
        raise PeerError(f"{name} exited with status {proc.returncode}:\n{text}")


def run_storescu(
    files: Path | Sequence[Path],
    aet: str,
    host: str,
    port: int,
    *,
    calling_aet: str = "BENCHSCU",
    timeout: float = CLIENT_TIMEOUT_S,
) -> float:
    """Send ``files`` (a folder, scanned with ``+sd +r``, or a list) in one association.

    Returns the wall-clock seconds of the ``storescu`` process, start to exit.
    """
    return run_storescu_parallel([files], aet, host, port, calling_aet=calling_aet, timeout=timeout)


def run_storescu_parallel(
    groups: Sequence[Path | Sequence[Path]],
    aet: str,
    host: str,
    port: int,
    *,
    calling_aet: str = "BENCHSCU",
    timeout: float = CLIENT_TIMEOUT_S,
) -> float:
    """One ``storescu`` process (one association) per group, all at once.

    Returns seconds from the first start to the last exit; raises if any of them failed.
    """
    node = DicomNode(aet, host, port)
    with tempfile.TemporaryDirectory(prefix="storescu-links-", dir=_tmp_root()) as tmp:
        cmds = [
            _storescu_cmd(g, node, calling_aet, Path(tmp) / f"g{i}") for i, g in enumerate(groups)
        ]
        logs = [Path(tmp) / f"storescu-{i}.log" for i in range(len(cmds))]
        env = dicom_env()
        handles = [open(log, "wb") for log in logs]  # noqa: SIM115 - closed below
        try:
            start = time.perf_counter()
            procs = [
                subprocess.Popen(
                    c, stdout=h, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
                for c, h in zip(cmds, handles, strict=True)
            ]
            deadline = time.monotonic() + timeout
            ends: list[float] = []
            try:
                for p in procs:
                    p.wait(timeout=max(0.1, deadline - time.monotonic()))
                    ends.append(time.perf_counter())
            except subprocess.TimeoutExpired as exc:
                raise PeerError(f"storescu still running after {timeout:.0f} s") from exc
            finally:
                for p in procs:
                    if p.poll() is None:
                        _stop(p, timeout=5)
        finally:
            for h in handles:
                h.close()
        for p, log in zip(procs, logs, strict=True):
            if p.returncode != 0:
                raise PeerError(
                    f"storescu to {aet}@{host}:{port} exited with status {p.returncode}:\n"
                    f"{log_tail(log)}"
                )
        return max(ends) - start


def run_movescu(
    node: DicomNode,
    dest_aet: str,
    series: SeriesRef,
    *,
    calling_aet: str = "BENCHMOVE",
    timeout: float = CLIENT_TIMEOUT_S,
) -> float:
    """C-MOVE one series (study root, SERIES level) to ``dest_aet``; returns seconds."""
    cmd = [
        require_tool("movescu"),
        "-S",
        "-aet",
        calling_aet,
        "-aec",
        node.aet,
        "-aem",
        dest_aet,
        "-k",
        "QueryRetrieveLevel=SERIES",
        "-k",
        f"StudyInstanceUID={series.study_uid}",
        "-k",
        f"SeriesInstanceUID={series.series_uid}",
        node.host,
        str(node.port),
    ]
    return _timed_client("movescu", cmd, timeout)


def run_getscu(
    node: DicomNode,
    series: SeriesRef,
    out_dir: Path,
    *,
    calling_aet: str = "BENCHGET",
    timeout: float = CLIENT_TIMEOUT_S,
) -> float:
    """C-GET one series (study root, SERIES level) into ``out_dir``; returns seconds."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        require_tool("getscu"),
        "-S",
        "-aet",
        calling_aet,
        "-aec",
        node.aet,
        "-od",
        str(out_dir),
        "-k",
        "QueryRetrieveLevel=SERIES",
        "-k",
        f"StudyInstanceUID={series.study_uid}",
        "-k",
        f"SeriesInstanceUID={series.series_uid}",
        node.host,
        str(node.port),
    ]
    return _timed_client("getscu", cmd, timeout)


def _timed_client(name: str, cmd: list[str], timeout: float) -> float:
    start = time.perf_counter()
    try:
        done = subprocess.run(
            cmd, env=dicom_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise PeerError(f"{name} still running after {timeout:.0f} s: {shlex.join(cmd)}") from exc
    seconds = time.perf_counter() - start
    _check_client(name, done, done.stdout)
    return seconds


def count_instances_findscu(
    node: DicomNode,
    series: Sequence[SeriesRef],
    work_dir: Path,
    *,
    calling_aet: str = "BENCHFIND",
    timeout: float = 300.0,
) -> int:
    """Count instances with C-FIND at IMAGE level (study root), one query per series."""
    exe = require_tool("findscu")
    total = 0
    for i, s in enumerate(series):
        out = work_dir / f"q{i}"
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        cmd = [
            exe,
            "-S",
            "-aet",
            calling_aet,
            "-aec",
            node.aet,
            "-X",
            "-od",
            str(out),
            "-k",
            "QueryRetrieveLevel=IMAGE",
            "-k",
            f"StudyInstanceUID={s.study_uid}",
            "-k",
            f"SeriesInstanceUID={s.series_uid}",
            "-k",
            "SOPInstanceUID",
            node.host,
            str(node.port),
        ]
        _timed_client("findscu", cmd, timeout)
        total += sum(1 for _ in out.glob("rsp*.dcm"))
    return total


# --------------------------------------------------------------------------------------------
# Generated CT data


def _tmp_root() -> Path:
    root = BENCH_OUT / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _phantom_hu(size: int, spacing_mm: float, seed: int) -> npt.NDArray[np.float32]:
    """A thorax-like axial slice in HU (float32): air, body with fat layer, lungs with
    vessels, heart, aorta, spine, ribs; slightly blurred for partial volume."""
    rng = np.random.default_rng([seed, 0xC7])
    half = (size - 1) / 2
    ax = (np.arange(size, dtype=np.float32) - half) * spacing_mm
    x = ax[None, :]
    y = ax[:, None]  # rows grow towards posterior

    def ellipse(cx: float, cy: float, a: float, b: float) -> npt.NDArray[np.bool_]:
        return np.asarray(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0)

    img = np.full((size, size), -1000.0, dtype=np.float32)
    img[ellipse(0, 10, 165, 115)] = -100.0  # subcutaneous fat
    img[ellipse(0, 10, 153, 104)] = 40.0  # muscle / soft tissue
    for side in (-1.0, 1.0):
        img[ellipse(side * 72, -5, 55, 78)] = -850.0  # lungs
    # lung vessels: small soft-tissue dots inside the lungs
    for _ in range(60):
        side = float(rng.choice([-1.0, 1.0]))
        cx = side * 72 + float(rng.uniform(-40, 40))
        cy = -5 + float(rng.uniform(-60, 60))
        r = float(rng.uniform(1.0, 3.5))
        mask = ellipse(cx, cy, r, r) & (img < -500)
        img[mask] = 40.0
    img[ellipse(18, 12, 52, 46)] = 45.0  # heart
    img[ellipse(-18, 48, 13, 13)] = 50.0  # descending aorta
    img[ellipse(0, 82, 19, 17)] = 700.0  # vertebral body, cortical
    img[ellipse(0, 82, 15, 13)] = 250.0  # cancellous bone
    img[ellipse(0, 106, 8, 8)] = 10.0  # spinal canal
    for k in range(12):  # ribs around the lungs
        t = math.pi * (k + 0.5) / 6
        img[ellipse(140 * math.cos(t), 8 + 100 * math.sin(t), 6, 4)] = 650.0
    # partial-volume blur: two passes of a 3x3 box filter
    for _ in range(2):
        p = np.pad(img, 1, mode="edge")
        acc = np.zeros_like(img)
        for i in range(3):
            for j in range(3):
                acc += p[i : i + size, j : j + size]
        img = acc / np.float32(9.0)
    return img.astype(np.float32)


def generate_ct(
    n: int,
    out_dir: Path,
    seed: int = 0,
    *,
    per_series: int = 500,
    size: int = 512,
    noise_hu: float = 15.0,
) -> tuple[list[Path], list[SeriesRef]]:
    """Write ``n`` CT Image Storage instances (``size`` x ``size``, signed int16, Explicit VR
    Little Endian) under ``out_dir``: one study with one series per ``per_series`` instances.

    The body phantom is computed once; each slice gets its own seeded Gaussian noise and a
    spherical 10 mm nodule appears in a few slices of each series. Same ``seed``, same bytes.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

    if n < 1 or per_series < 1:
        raise ValueError("generate_ct needs n >= 1 and per_series >= 1")
    spacing = 0.703125  # 360 mm field of view at 512
    thickness = 1.25
    base = _phantom_hu(size, spacing * 512 / size, seed) + 1024.0  # stored = HU + 1024
    half = (size - 1) / 2
    ax = (np.arange(size, dtype=np.float32) - half) * spacing * 512 / size
    nod_x, nod_y, nod_r = -80.0, -25.0, 10.0
    corner = -float(ax[-1])

    def uid(*parts: object) -> str:
        # 2.25.<128-bit integer> (PS3.5 B.2), from a hash of the seed: same seed, same UIDs.
        text = "/".join(["vesalius-bench", str(seed), *map(str, parts)])
        return "2.25." + str(int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big"))

    files: list[Path] = []
    series: list[SeriesRef] = []
    n_series = math.ceil(n / per_series)
    out_dir.mkdir(parents=True, exist_ok=True)
    for s in range(n_series):
        count = min(per_series, n - s * per_series)
        patient_id = f"BENCH-{seed}-{s:03d}"
        study_uid, series_uid, for_uid = uid("study", s), uid("series", s), uid("for", s)
        series.append(SeriesRef(patient_id, study_uid, series_uid, count))
        sdir = out_dir / f"series{s:03d}"
        sdir.mkdir(exist_ok=True)

        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CTImageStorage
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240115"
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = f"{8 + s % 10:02d}3000"
        ds.AccessionNumber = f"ACC{seed:04d}{s:04d}"
        ds.Modality = "CT"
        ds.Manufacturer = "Vesalius benchmark phantom"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "CT THORAX BENCH"
        ds.SeriesDescription = "Axial 1.25 mm"
        ds.PatientName = f"Bench^Phantom{s:03d}"
        ds.PatientID = patient_id
        ds.PatientBirthDate = "19600101"
        ds.PatientSex = "O"
        ds.BodyPartExamined = "CHEST"
        ds.SliceThickness = thickness
        ds.KVP = 120
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = f"{s + 1}"
        ds.SeriesNumber = 2
        ds.FrameOfReferenceUID = for_uid
        ds.PositionReferenceIndicator = ""
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.PixelSpacing = [spacing * 512 / size] * 2
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.WindowCenter = 40
        ds.WindowWidth = 400
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta

        nod_z = (count - 1) / 2 * thickness
        for i in range(count):
            z = i * thickness
            rng = np.random.default_rng([seed, s, i])
            noise = rng.standard_normal((size, size), dtype=np.float32)
            img = base + noise_hu * noise
            dz = abs(z - nod_z)
            if dz < nod_r:  # a spherical nodule crosses this slice
                r = math.sqrt(nod_r**2 - dz**2)
                mask = ((ax[None, :] - nod_x) ** 2 + (ax[:, None] - nod_y) ** 2) <= r * r
                img[mask] = 1024.0 + 30.0 + noise_hu * noise[mask]
            pixels = np.clip(np.rint(img), -32768, 32767).astype("<i2")

            sop_uid = uid("sop", s, i)
            meta.MediaStorageSOPInstanceUID = UID(sop_uid)
            ds.SOPInstanceUID = sop_uid
            ds.InstanceNumber = i + 1
            ds.ImagePositionPatient = [corner, corner, -z]
            ds.SliceLocation = -z
            ds.PixelData = pixels.tobytes()
            path = sdir / f"CT{i + 1:05d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append(path)
    return files, series


@dataclass(frozen=True)
class CtSet:
    """A cached generated CT set: files under ``dicom_dir`` and their series."""

    root: Path
    dicom_dir: Path
    files: list[Path]
    series: list[SeriesRef]
    total_bytes: int

    @property
    def count(self) -> int:
        return len(self.files)

    def split(self, parts: int) -> list[list[Path]]:
        """``parts`` disjoint contiguous groups of files, sizes differing by at most one."""
        n = len(self.files)
        bounds = [round(k * n / parts) for k in range(parts + 1)]
        return [self.files[bounds[k] : bounds[k + 1]] for k in range(parts)]


def cached_ct(
    n: int, seed: int = 0, *, root: Path | None = None, per_series: int = 500, log: bool = True
) -> CtSet:
    """:func:`generate_ct` once per (count, seed) under ``bench-out/data``; reused after."""
    base = (root or BENCH_OUT / "data") / f"ct512-n{n}-seed{seed}-per{per_series}"
    manifest_path = base / "manifest.json"
    dicom_dir = base / "dicom"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        files = [base / f for f in manifest["files"]]
        if manifest.get("version") == GENERATOR_VERSION and all(f.exists() for f in files):
            return CtSet(
                root=base,
                dicom_dir=dicom_dir,
                files=files,
                series=[SeriesRef(**s) for s in manifest["series"]],
                total_bytes=int(manifest["total_bytes"]),
            )
    if log:
        print(f"generating {n} CT instances (seed {seed}) in {base} ...", flush=True)
    if dicom_dir.exists():
        shutil.rmtree(dicom_dir)
    manifest_path.unlink(missing_ok=True)
    start = time.perf_counter()
    files, series = generate_ct(n, dicom_dir, seed, per_series=per_series)
    total = sum(f.stat().st_size for f in files)
    manifest_path.write_text(
        json.dumps(
            {
                "version": GENERATOR_VERSION,
                "count": n,
                "seed": seed,
                "per_series": per_series,
                "total_bytes": total,
                "series": [s.__dict__ for s in series],
                "files": [str(f.relative_to(base)) for f in files],
            },
            indent=1,
        )
    )
    if log:
        print(
            f"  {n} files, {total / 1e6:.0f} MB in {time.perf_counter() - start:.1f} s", flush=True
        )
    return CtSet(base, dicom_dir, files, series, total)


def host_info() -> dict[str, object]:
    """What the figures were measured on."""
    import platform

    info: dict[str, object] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [require_tool("storescu"), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
        info["dcmtk"] = out.splitlines()[0] if out else ""
    with contextlib.suppress(OSError, subprocess.SubprocessError, PeerError):
        version = subprocess.run(
            [ORTHANC_BIN, "--version"], capture_output=True, text=True, timeout=10
        ).stdout
        info["orthanc"] = version.splitlines()[0] if version else ""
    return info

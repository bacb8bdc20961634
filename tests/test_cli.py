"""The ``vesalius`` command run as a user runs it: a subprocess, its exit code and its output.

Exit codes (vesalius/cli.py): 0 success, 1 failure, 2 usage or configuration error. Every
server a test starts is ``vesalius serve`` on free loopback ports, killed in teardown.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from pydicom import dcmread
from sqlalchemy import select

from tests import peers
from tests.factory import instance, uid
from vesalius.archive import Archive, open_archive
from vesalius.config import Remote, load_settings
from vesalius.index.models import instances

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"

needs_dcmtk = pytest.mark.skipif(not peers.dcmtk_available("storescu", "storescp", "echoscu"),
                                 reason="dcmtk is not installed (apt-get install dcmtk)")


# --------------------------------------------------------------------------------- helpers
def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a CLI subprocess: no stray ``VESALIUS_*``, the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VESALIUS_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def cli(*args: str | Path, env: Mapping[str, str] | None = None, timeout: float = 60.0,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m vesalius.cli ARGS`` and return the finished process (never raises)."""
    return subprocess.run([sys.executable, "-m", "vesalius.cli", *(str(a) for a in args)],
                          capture_output=True, text=True, env=cli_env(env), timeout=timeout,
                          cwd=cwd or Path(tempfile.gettempdir()), check=False)


def cli_many(*commands: Sequence[str | Path]) -> list[subprocess.CompletedProcess[str]]:
    """Run independent CLI commands at the same time (each one is mostly start-up cost)."""
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        return list(pool.map(lambda c: cli(*c), commands))


@contextlib.contextmanager
def archive_at(data_dir: Path, db: str | None = None) -> Iterator[Archive]:
    """The archive a CLI command with ``--data-dir data_dir [--db db]`` works on, in-process."""
    archive = open_archive(load_settings(None, env={}, data_dir=data_dir, db=db), recover=False)
    try:
        yield archive
    finally:
        archive.close()


def prepare(data_dir: Path, db: str | None = None) -> Path:
    """Create the archive (schema included) so that later commands may run concurrently."""
    with archive_at(data_dir, db):
        return data_dir


def store(data_dir: Path, *objects: bytes) -> None:
    """Put objects into the archive in-process (set-up for tests of other commands)."""
    with archive_at(data_dir) as archive:
        for data in objects:
            assert archive.store_bytes(data).ok


def cli_json(*args: str | Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run a command that prints one JSON object and must exit 0."""
    proc = cli(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def stats(data_dir: Path, db: str | None = None) -> dict[str, int]:
    return cli_json("stats", "--json", "--data-dir", data_dir, *(["--db", db] if db else []))


def indexed(data_dir: Path, db: str | None = None) -> dict[str, str]:
    """SOP Instance UID -> blob key of every index row."""
    with archive_at(data_dir, db) as archive, archive.engine.connect() as conn:
        rows = conn.execute(select(instances.c.sop_uid, instances.c.blob_key)).all()
    return {str(sop): str(key) for sop, key in rows}


def object_files(data_dir: Path) -> list[Path]:
    """Every stored object file under DATA/storage/objects."""
    return sorted(p for p in (data_dir / "storage" / "objects").rglob("*") if p.is_file())


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def listeners(port: int) -> int:
    """How many sockets listen on TCP ``port`` on this machine (one per SO_REUSEPORT worker)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as f:
            for row in f.read().splitlines()[1:]:
                local, state = row.split()[1], row.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    count += 1
    return count


def wait_for_listeners(port: int, count: int, timeout: float = 30.0) -> bool:
    """Wait until exactly ``count`` sockets listen on ``port``; False on timeout."""
    deadline = time.monotonic() + timeout
    while listeners(port) != count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def err_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


class Served:
    """``vesalius serve`` as a subprocess on free loopback ports, with its log in a file."""

    def __init__(self, data_dir: Path, *, db: str | None = None, ae_title: str = "VESALIUS",
                 env: Mapping[str, str] | None = None, workers: int = 1) -> None:
        self.data_dir = data_dir
        self.db = db
        self.ae_title = ae_title
        self.env = dict(env or {})
        self.workers = workers
        self.dicom_port = 0
        self.http_port = 0
        self.log_path = data_dir.parent / f"serve-{data_dir.name}-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"{self.ae_title}@{HOST}:{self.dicom_port}"

    @property
    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace") if self.log_path.exists() else ""

    def command(self, dicom_port: int, http_port: int) -> list[str]:
        return [sys.executable, "-m", "vesalius.cli", "serve", "--data-dir", str(self.data_dir),
                "--dicom-host", HOST, "--dicom-port", str(dicom_port),
                "--http-host", HOST, "--http-port", str(http_port),
                *(["--db", self.db] if self.db else []),
                *(["--dicom-workers", str(self.workers)] if self.workers > 1 else [])]

    def spawn(self, dicom_port: int, http_port: int) -> subprocess.Popen[bytes]:
        """Start a serve process on the given ports without waiting for it.

        It leads a process group of its own, so that teardown also ends the DICOM worker
        processes it spawned (even when they outlived it).
        """
        with self.log_path.open("ab") as log:
            return subprocess.Popen(self.command(dicom_port, http_port), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=cli_env(self.env), cwd=self.data_dir.parent,
                                    start_new_session=True)

    def start(self, timeout: float = 30.0) -> Served:
        """Start on free ports and wait until /healthz answers (retrying a lost port race)."""
        for _attempt in range(3):
            self.dicom_port, self.http_port = peers.free_port(), peers.free_port()
            self.proc = self.spawn(self.dicom_port, self.http_port)
            if self.wait_ready(timeout):
                if not wait_for_listeners(self.dicom_port, self.workers, timeout):
                    raise RuntimeError(f"{self.workers} DICOM listeners expected:\n{self.log}")
                return self
            self.kill()
            if "already in use" not in self.log:
                break
        raise RuntimeError(f"vesalius serve did not start:\n{self.log}")

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            # /healthz answers only after the DICOM listener is up (no bare TCP probe of the
            # DICOM port: pynetdicom keeps such a connection open until its ACSE timeout).
            with contextlib.suppress(OSError):
                if self.healthz()[0] == 200:
                    return True
            time.sleep(0.05)
        return False

    def healthz(self) -> tuple[int, str, dict[str, Any]]:
        """Status, content type and JSON body of ``GET /healthz``."""
        url = f"http://{HOST}:{self.http_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as rsp:
                return rsp.status, rsp.headers.get("content-type", ""), json.loads(rsp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("content-type", ""), json.loads(exc.read() or b"{}")

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for the exit code (killing it if it does not exit in time)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL its process group (the server and any worker it started) and reap."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def __enter__(self) -> Served:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.kill()


# --------------------------------------------------------------------------------- import
def test_import_files_folder_and_zip(tmp_path: Path) -> None:
    data = tmp_path / "data"
    files = [write(tmp_path / "loose" / f"a{i}.dcm", instance("A", "SE1", i)) for i in range(2)]
    tree = [write(tmp_path / "tree" / "b0.dcm", instance("B", "SE1", 0)),
            write(tmp_path / "tree" / "sub" / "b1.dcm", instance("B", "SE1", 1)),
            write(tmp_path / "tree" / "sub" / "deeper" / "b2", instance("B", "SE1", 2))]
    good_zipped = [instance("Z", "SE1", 1), instance("Z", "SE1", 2)]
    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as z:
        z.writestr("good1.dcm", good_zipped[0])
        z.writestr("dir/good2.dcm", good_zipped[1])
        z.writestr("notes.txt", b"scanned at 10:15, see PACS\n")
        z.writestr("trunc.dcm", instance("Z", "SE1", 3)[:-100])

    proc = cli("import", "--json", "--data-dir", data, *files, tmp_path / "tree")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"files": 5, "stored": 5, "skipped": 0}  # recursive
    assert proc.stderr == ""

    proc = cli("import", "--json", "--data-dir", data, bundle)
    assert proc.returncode == 0, proc.stderr  # something was stored
    assert json.loads(proc.stdout) == {"files": 4, "stored": 2, "invalid": 2, "skipped": 2}
    lines = err_lines(proc)
    assert len(lines) == 2, proc.stderr
    assert any("not a DICOM" in line for line in lines), proc.stderr
    assert any("truncated" in line for line in lines), proc.stderr

    want = {uid("A", "SE1", i) for i in range(2)} | {uid("B", "SE1", i) for i in range(3)} \
        | {uid("Z", "SE1", 1), uid("Z", "SE1", 2)}
    got = indexed(data)
    assert set(got) == want
    originals = [f.read_bytes() for f in files + tree] + good_zipped
    assert sorted(got.values()) == sorted(hashlib.sha256(o).hexdigest() for o in originals)
    assert sorted(p.name for p in object_files(data)) == sorted(got.values())  # byte-exact


def test_refused_files_are_named_with_their_reason(tmp_path: Path) -> None:
    data = tmp_path / "data"
    folder = tmp_path / "in"
    write(folder / "good.dcm", instance("G", "SE1", 1))
    write(folder / "junk.txt", b"this is not DICOM at all, just a note" * 10)
    write(folder / "trunc.dcm", instance("G", "SE1", 2)[:-100])
    proc = cli("import", "--json", "--data-dir", data, folder)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"files": 3, "stored": 1, "invalid": 2, "skipped": 2}
    lines = err_lines(proc)
    assert len(lines) == 2, proc.stderr
    junk = [line for line in lines if "junk.txt" in line]
    trunc = [line for line in lines if "trunc.dcm" in line]
    assert len(junk) == 1 and "not a DICOM" in junk[0], proc.stderr
    assert len(trunc) == 1 and "truncated" in trunc[0], proc.stderr
    assert set(indexed(data)) == {uid("G", "SE1", 1)}


def test_refused_zip_members_are_named(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as z:
        z.writestr("good.dcm", instance("Z", "SE1", 1))
        z.writestr("notes.txt", b"not DICOM" * 20)
        z.writestr("scans/trunc.dcm", instance("Z", "SE1", 2)[:-100])
    proc = cli("import", "--data-dir", tmp_path / "data", bundle)
    assert proc.returncode == 0, proc.stderr
    lines = err_lines(proc)
    assert len(lines) == 2, proc.stderr
    assert any("bundle.zip" in line and "notes.txt" in line and "not a DICOM" in line
               for line in lines), proc.stderr
    assert any("bundle.zip" in line and "trunc.dcm" in line and "truncated" in line
               for line in lines), proc.stderr


def test_import_with_nothing_stored_exits_1(tmp_path: Path) -> None:
    junk = write(tmp_path / "junk.txt", b"plain text, no DICM here" * 10)
    trunc = write(tmp_path / "trunc.dcm", instance("T", "SE1", 1)[:-100])
    only_junk = tmp_path / "junk.zip"
    with zipfile.ZipFile(only_junk, "w") as z:
        z.writestr("readme.txt", b"nothing to see" * 10)
    dirs = [prepare(tmp_path / f"data{i}") for i in range(2)]
    bad_files, others = cli_many(["import", "--data-dir", dirs[0], junk, trunc],
                                 ["import", "--data-dir", dirs[1], only_junk,
                                  tmp_path / "no-such-folder"])
    assert bad_files.returncode == 1, bad_files.stdout + bad_files.stderr
    assert "junk.txt" in bad_files.stderr and "trunc.dcm" in bad_files.stderr
    assert others.returncode == 1, others.stdout + others.stderr
    assert len(err_lines(others)) == 2, others.stderr
    assert "no-such-folder: no such file" in others.stderr
    for d in dirs:
        assert indexed(d) == {}


def test_import_twice_gives_duplicates(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for i in range(3):
        write(tmp_path / "in" / f"{i}.dcm", instance("D", "SE1", i))
    first = cli("import", "--json", "--data-dir", data, tmp_path / "in")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"files": 3, "stored": 3, "skipped": 0}
    before = object_files(data)
    again = cli("import", "--json", "--data-dir", data, tmp_path / "in")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"files": 3, "duplicate": 3, "skipped": 0}
    assert set(indexed(data)) == {uid("D", "SE1", i) for i in range(3)}
    assert object_files(data) == before


def test_stats_json_counts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    objs = [instance("A", "SE1", 1), instance("A", "SE1", 2), instance("A", "SE2", 1),
            instance("B", "SE1", 1), instance("C", "SE1", 1, patient_id="PID2"),
            instance("C", "SE1", 2, patient_id="PID2")]
    store(data, *objs, instance("C", "SE1", 2, patient_id="PID2", seed=9))  # + a conflict
    empty, full = cli_many(["stats", "--json", "--data-dir", tmp_path / "empty"],
                           ["stats", "--json", "--data-dir", data])
    assert empty.returncode == 0 and full.returncode == 0, empty.stderr + full.stderr
    assert json.loads(empty.stdout) == {"patients": 0, "studies": 0, "series": 0, "instances": 0,
                                        "bytes": 0, "conflicts": 0}
    assert json.loads(full.stdout) == {"patients": 2, "studies": 3, "series": 4, "instances": 6,
                                       "bytes": sum(map(len, objs)), "conflicts": 1}


# --------------------------------------------------------------------------------- verify
def test_verify_clean_altered_missing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    objs = {uid("V", "SE1", i): instance("V", "SE1", i) for i in range(4)}
    store(data, *objs.values())
    clean = cli("verify", "--data-dir", data)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "checked 4: ok 4, missing 0, altered 0" in clean.stdout

    sops = sorted(objs)
    altered, deleted = sops[0], sops[1]

    def object_of(sop: str) -> Path:
        key = hashlib.sha256(objs[sop]).hexdigest()
        return data / "storage" / "objects" / key[:2] / key

    path = object_of(altered)
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF  # one flipped pixel byte, same size
    path.write_bytes(bytes(raw))
    object_of(deleted).unlink()

    proc = cli("verify", "--data-dir", data)
    assert proc.returncode == 1, proc.stdout
    lines = proc.stdout.splitlines()
    assert f"MISSING  {deleted}" in lines and f"ALTERED  {altered}" in lines
    assert not any(s in proc.stdout for s in sops[2:]), "intact instances must not be named"
    assert "checked 4: ok 2, missing 1, altered 1" in proc.stdout


# --------------------------------------------------------------------------------- conflicts
def test_conflicts_lists_resent_instance_with_other_content(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first, second = instance("K", "SE1", 1, seed=1), instance("K", "SE1", 1, seed=2)  # same UIDs
    store(data, first)
    none = cli("conflicts", "--data-dir", data)
    assert none.returncode == 0 and none.stdout.strip() == "no conflicts"

    proc = cli("import", "--json", "--data-dir", data, write(tmp_path / "again.dcm", second))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["kept"] == 1

    sop = uid("K", "SE1", 1)
    text, as_json = cli_many(["conflicts", "--data-dir", data],
                             ["conflicts", "--json", "--data-dir", data])
    assert text.returncode == 0 and as_json.returncode == 0
    (line,) = text.stdout.splitlines()
    assert f"sop={sop}" in line and "kept" in line and f"study={uid('K')}" in line
    (row,) = [json.loads(x) for x in as_json.stdout.splitlines() if x.strip()]
    assert (row["kind"], row["action"], row["sop_uid"]) == ("instance", "kept", sop)
    assert row["old_key"] == hashlib.sha256(first).hexdigest()
    assert row["new_key"] == hashlib.sha256(second).hexdigest()
    assert indexed(data) == {sop: row["old_key"]}  # the first copy is kept


# --------------------------------------------------------------------------------- remotes
def test_remote_add_list_remove(tmp_path: Path) -> None:
    data = prepare(tmp_path / "data")
    added = cli_many(["remote", "add", "pacs", "PACS_AE", "10.0.0.5", "104", "--data-dir", data],
                     ["remote", "add", "ws", "WORKSTATION", "127.0.0.1", "11113",
                      "--data-dir", data])
    assert [p.returncode for p in added] == [0, 0], [p.stderr for p in added]
    assert [p.stdout.strip() for p in added] == ["remote pacs: PACS_AE@10.0.0.5:104",
                                                 "remote ws: WORKSTATION@127.0.0.1:11113"]
    listed = cli("remote", "list", "--data-dir", data)
    assert listed.returncode == 0
    assert listed.stdout.splitlines() == ["pacs\tPACS_AE\t10.0.0.5\t104",
                                          "ws\tWORKSTATION\t127.0.0.1\t11113"]
    removed = cli("remote", "remove", "ws", "--data-dir", data)
    assert removed.returncode == 0 and removed.stdout.strip() == "removed ws"
    with archive_at(data) as archive:
        assert [r.name for r in archive.remotes()] == ["pacs"]
    again = cli("remote", "remove", "ws", "--data-dir", data)
    assert again.returncode == 1
    assert "no remote named 'ws'" in again.stderr


def test_remote_add_refuses_invalid(tmp_path: Path) -> None:
    data = prepare(tmp_path / "data")
    cases = {  # AE title, port -> what the message must say
        ("ABCDEFGHIJKLMNOPQ", "104"): "'ABCDEFGHIJKLMNOPQ' is not a valid AE title",  # 17 chars
        ("PACS\\AE", "104"): "is not a valid AE title",
        ("PACS", "70000"): "port 70000 is out of range",
    }
    commands: list[list[str | Path]] = [
        ["remote", "add", f"bad{i}", ae, "127.0.0.1", port, "--data-dir", data]
        for i, (ae, port) in enumerate(cases)]
    procs = cli_many(*commands)
    for (case, message), proc in zip(cases.items(), procs, strict=True):
        assert proc.returncode == 2, (case, proc.stdout + proc.stderr)
        error = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
        assert len(error) == 1 and message in error[0], (case, proc.stderr)
        assert "Traceback" not in proc.stderr
    with archive_at(data) as archive:
        assert archive.remotes() == []


def test_config_file_remotes(tmp_path: Path) -> None:
    data = prepare(tmp_path / "data")
    with archive_at(data) as archive:
        archive.add_remote(Remote("db1", "DBNODE", "127.0.0.1", 5000))
    cfg = tmp_path / "vesalius.toml"
    cfg.write_text('[[remote]]\nname = "orthanc"\nae_title = "ORTHANC"\nhost = "127.0.0.1"\n'
                   'port = 4242\n\n'
                   '[[remote]]\nname = "ct1"\nae_title = "CT_SCANNER_1"\nhost = "10.1.2.3"\n'
                   'port = 104\n', encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[remote]]\nname = "x"\nae_title = "A\\\\B"\nhost = "h"\nport = 1\n',
                   encoding="utf-8")
    listed, clash, bad_config = cli_many(
        ["remote", "list", "--config", cfg, "--data-dir", data],
        ["remote", "add", "orthanc", "OTHER", "127.0.0.1", "1", "--config", cfg,
         "--data-dir", data],
        ["remote", "list", "--config", bad, "--data-dir", data])
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == ["ct1\tCT_SCANNER_1\t10.1.2.3\t104",
                                          "db1\tDBNODE\t127.0.0.1\t5000",
                                          "orthanc\tORTHANC\t127.0.0.1\t4242"]
    assert clash.returncode == 1
    assert "defined in the config file" in clash.stderr
    assert bad_config.returncode == 2, bad_config.stdout + bad_config.stderr
    assert "not a valid AE title" in bad_config.stderr and "Traceback" not in bad_config.stderr


# --------------------------------------------------------------------------------- echo / send
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    srv = Served(tmp_path_factory.mktemp("served") / "data")
    try:
        yield srv.start()
    finally:
        srv.kill()


def test_echo(served: Served) -> None:
    closed = peers.free_port()
    ok, refused = cli_many(["echo", served.target], ["echo", f"VESALIUS@{HOST}:{closed}"])
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"C-ECHO {served.target}: success"
    # a closed port: exit 1 and one line that names the peer
    assert refused.returncode == 1, refused.stdout + refused.stderr
    error = [line for line in refused.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and f"VESALIUS@{HOST}:{closed}" in error[0], refused.stderr
    assert "Traceback" not in refused.stderr and "success" not in refused.stdout


def test_echo_malformed_target() -> None:
    targets = {"VESALIUS127.0.0.1:11112": "is not AE@HOST:PORT",
               "VESALIUS@127.0.0.1:70000": "port 70000 is out of range"}
    for (target, message), proc in zip(targets.items(), cli_many(*[["echo", t] for t in targets]),
                                       strict=True):
        assert proc.returncode == 2, (target, proc.stdout + proc.stderr)
        error = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
        assert len(error) == 1 and message in error[0], (target, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_send_to_running_serve(served: Served, tmp_path: Path) -> None:
    objs = {uid("SND", "SE1", i): instance("SND", "SE1", i) for i in range(4)}
    for i, o in enumerate(list(objs.values())[:3]):
        write(tmp_path / "in" / "nested" / f"{i}.dcm", o)
    with zipfile.ZipFile(tmp_path / "in" / "more.zip", "w") as z:
        z.writestr("x.dcm", objs[uid("SND", "SE1", 3)])
    proc = cli("send", tmp_path / "in", "--to", served.target)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "sent 4, failed 0, skipped 0"
    assert set(objs) <= set(indexed(served.data_dir))


@needs_dcmtk
def test_send_to_storescp(tmp_path: Path) -> None:
    objs = {uid("FLR", "SE1", i): instance("FLR", "SE1", i) for i in range(3)}
    paths = [write(tmp_path / "in" / f"{i}.dcm", o) for i, o in enumerate(objs.values())]
    with peers.StoreSCP(tmp_path / "received", aet="FLOOR") as scp:
        proc = cli("send", *paths, "--to", f"FLOOR@{HOST}:{scp.port}")
        assert proc.returncode == 0, proc.stdout + proc.stderr + scp.log
        assert proc.stdout.strip() == "sent 3, failed 0, skipped 0"
        received = scp.wait_for_files(3)
    assert len(received) == 3
    for f in received:
        ds = dcmread(f)
        original = dcmread(io.BytesIO(objs[ds.SOPInstanceUID]))
        assert ds.PixelData == original.PixelData
        assert ds.PatientName == original.PatientName


def test_send_to_closed_port(tmp_path: Path) -> None:
    path = write(tmp_path / "a.dcm", instance("X", "SE1", 1))
    port = peers.free_port()
    proc = cli("send", path, "--to", f"VESALIUS@{HOST}:{port}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"VESALIUS@{HOST}:{port}" in proc.stderr and "Traceback" not in proc.stderr


def test_send_with_nothing_sendable_exits_1(served: Served, tmp_path: Path) -> None:
    junk = write(tmp_path / "junk.txt", b"not DICOM" * 20)
    proc = cli("send", junk, "--to", served.target)
    assert "junk.txt" in proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr


@needs_dcmtk
def test_serve_honours_env_ae_title(tmp_path: Path) -> None:
    srv = Served(tmp_path / "data", ae_title="ENVAE", env={"VESALIUS_AE_TITLE": "ENVAE"})
    try:
        srv.start()
        proc = cli("echo", srv.target)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"C-ECHO ENVAE@{HOST}:{srv.dicom_port}: success"
        assert srv.healthz()[2]["ae_title"] == "ENVAE"
        default = peers.echoscu("VESALIUS", srv.dicom_port, check=False)
        assert default.returncode != 0, "the default AE title must not be answered"
    finally:
        srv.kill()


# --------------------------------------------------------------------------------- PostgreSQL
@pytest.mark.postgres
def test_import_and_stats_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    data = tmp_path / "data"
    objs = [instance("PG", "SE1", i) for i in range(3)]
    objs.append(instance("PG2", "SE1", 1, patient_id="P2"))
    for i, o in enumerate(objs):
        write(tmp_path / "in" / f"{i}.dcm", o)
    proc = cli("import", "--json", "--data-dir", data, "--db", pg_url, tmp_path / "in")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"files": 4, "stored": 4, "skipped": 0}
    assert stats(data, pg_url) == {"patients": 2, "studies": 2, "series": 2, "instances": 4,
                                   "bytes": sum(map(len, objs)), "conflicts": 0}
    assert not (data / "index.sqlite").exists(), "the index must be in PostgreSQL"
    assert set(indexed(data, pg_url)) == {uid("PG", "SE1", i) for i in range(3)} | \
        {uid("PG2", "SE1", 1)}

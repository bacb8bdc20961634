"""dcmtk's command-line tools as real DICOM peers for tests and benchmarks.

dcmtk plays the modality (``storescu``), the workstation (``findscu``, ``movescu``,
``getscu``, ``echoscu``) and the simplest possible receiver (``storescp``, the floor for DIMSE
ingest). Every tool runs with ``TCP_NODELAY=1`` in its environment: Debian's dcmtk 3.6.7
disables Nagle's algorithm only then, and without it each C-STORE on loopback waits ~40 ms for
a delayed ACK (DESIGN.md section 3).

Failures raise :class:`DcmtkError` carrying the command, exit code, stdout and stderr. The
wrappers run the tools with ``-v`` and check the DIMSE statuses they print, because dcmtk
3.6.7 exits 0 after many failed operations (e.g. ``storescu -nh``, a failed C-MOVE).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

__all__ = [
    "DCMTK_ENV",
    "DcmtkError",
    "QueryModel",
    "StoreSCP",
    "dcmtk_available",
    "dcmtk_env",
    "echoscu",
    "findscu",
    "free_port",
    "getscu",
    "movescu",
    "parse_findscu_output",
    "run_dcmtk",
    "storescu",
    "wait_for_port",
]

#: Environment every dcmtk tool gets (on top of os.environ).
DCMTK_ENV: dict[str, str] = {"TCP_NODELAY": "1"}

#: Query/retrieve information model: S study root, P patient root, O patient/study only,
#: W modality worklist (findscu only).
QueryModel = Literal["S", "P", "O", "W"]

HOST = "127.0.0.1"


class DcmtkError(RuntimeError):
    """A dcmtk tool failed, timed out, or reported a failed DIMSE status."""

    def __init__(
        self,
        cmd: Sequence[str],
        returncode: int | None,
        stdout: str,
        stderr: str,
        reason: str = "",
    ) -> None:
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.reason = reason
        what = reason or f"exit status {returncode}"
        tail = (stderr.strip() or stdout.strip())[-4000:]
        super().__init__(f"{' '.join(self.cmd)}: {what}\n{tail}")


def dcmtk_available(*tools: str) -> bool:
    """Whether all ``tools`` (default: the SCU/SCP tools used here) are on PATH."""
    names = tools or ("storescu", "storescp", "findscu", "movescu", "getscu", "echoscu")
    return all(shutil.which(t) for t in names)


def dcmtk_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``os.environ`` plus :data:`DCMTK_ENV` plus ``extra``."""
    env = dict(os.environ)
    env.update(DCMTK_ENV)
    env.update(extra or {})
    return env


def free_port(host: str = HOST) -> int:
    """A TCP port that was free on ``host`` a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, host: str = HOST, timeout: float = 10.0) -> None:
    """Wait until something accepts TCP connections on ``host:port``.

    Raises:
        TimeoutError: nothing listened within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.02)


def run_dcmtk(
    tool: str,
    args: Sequence[str | os.PathLike[str]],
    timeout: float = 60.0,
    *,
    check: bool = True,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a dcmtk tool with ``TCP_NODELAY=1`` and return the completed process.

    Output is decoded as UTF-8 with replacement (dumps may hold any character set).

    Raises:
        DcmtkError: with ``check``, a non-zero exit; always, a timeout or a missing tool.
    """
    exe = shutil.which(tool)
    cmd = [tool, *(os.fspath(a) for a in args)]
    if exe is None:
        raise DcmtkError(cmd, None, "", "", f"{tool} not found on PATH (apt-get install dcmtk)")
    try:
        proc = subprocess.run(
            [exe, *cmd[1:]],
            capture_output=True,
            timeout=timeout,
            cwd=cwd,
            env=dcmtk_env(env),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = _text(exc.stdout)
        err = _text(exc.stderr)
        raise DcmtkError(cmd, None, out, err, f"timed out after {timeout}s") from None
    result = subprocess.CompletedProcess(cmd, proc.returncode, _text(proc.stdout), _text(proc.stderr))
    if check and proc.returncode != 0:
        raise DcmtkError(cmd, proc.returncode, result.stdout, result.stderr)
    return result


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------------------
# storescp
# --------------------------------------------------------------------------------------------


class StoreSCP:
    """dcmtk ``storescp`` on a free loopback port, writing what it receives to a folder.

    Use as a context manager::

        with StoreSCP(aet="FLOOR") as scp:
            storescu(files, scp.aet, scp.port)
            received = scp.files

    ``out_dir`` defaults to a new temporary folder that is removed on exit unless ``keep``
    (a given ``out_dir`` is never removed).
    ``accept_all`` adds ``+xa`` (accept every transfer syntax dcmtk knows, compressed too;
    without it storescp accepts uncompressed only). ``fork`` adds ``--fork`` (one process per
    association, as for several parallel senders). ``-dhl`` (no reverse DNS) is always on.
    Files are named by storescp: ``<modality>.<SOPInstanceUID>``.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str] | None = None,
        *,
        aet: str = "STORESCP",
        port: int | None = None,
        fork: bool = False,
        accept_all: bool = True,
        extra_args: Sequence[str] = (),
        keep: bool = False,
        startup_timeout: float = 10.0,
    ) -> None:
        self.aet = aet
        self.host = HOST
        self.fork = fork
        self.accept_all = accept_all
        self.extra_args = list(extra_args)
        self.keep = keep
        self.startup_timeout = startup_timeout
        self._fixed_port = port
        self.port = port or 0
        self._own_dir = out_dir is None
        self.out_dir = Path(out_dir) if out_dir is not None else Path()
        self._work: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._final_log = ""

    def __enter__(self) -> StoreSCP:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the storescp process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> StoreSCP:
        """Start storescp and wait until it answers a C-ECHO."""
        if self._proc is not None:
            raise RuntimeError("StoreSCP already started")
        self._work = Path(tempfile.mkdtemp(prefix="vesalius-storescp-"))
        if self._own_dir:
            self.out_dir = self._work / "received"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._log_path = self._work / "storescp.log"
        exe = shutil.which("storescp")
        if exe is None:
            raise DcmtkError(["storescp"], None, "", "", "storescp not found (apt-get install dcmtk)")
        last_error = ""
        for _attempt in range(3 if self._fixed_port is None else 1):
            self.port = self._fixed_port or free_port()
            args = [exe, "-aet", self.aet, "-od", str(self.out_dir), "-dhl"]
            if self.accept_all:
                args.append("+xa")
            if self.fork:
                args.append("--fork")
            args += [*self.extra_args, str(self.port)]
            with open(self._log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    args,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=dcmtk_env(),
                    start_new_session=True,
                )
            if self._wait_ready():
                return self
            last_error = self.log
            self._kill()
        self.stop()
        raise DcmtkError(args, None, last_error, "", "storescp did not start")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not self.running:
                return False
            probe = run_dcmtk(
                "echoscu",
                ["-aec", self.aet, "-to", "1", self.host, str(self.port)],
                timeout=5,
                check=False,
            )
            if probe.returncode == 0:
                return True
            time.sleep(0.05)
        return False

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            # Its own session: with --fork this ends the children it forked as well.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def stop(self) -> None:
        """Stop storescp and remove its temporary folder.

        The received files stay when ``out_dir`` was given or ``keep`` is set; :attr:`log`
        stays readable.
        """
        self._kill()
        self._final_log = self.log
        if self._work is not None and not (self.keep and self._own_dir):
            shutil.rmtree(self._work, ignore_errors=True)
        self._work = None
        self._log_path = None

    @property
    def log(self) -> str:
        """What storescp printed so far."""
        if self._log_path is None or not self._log_path.exists():
            return self._final_log
        return self._log_path.read_text("utf-8", errors="replace")

    @property
    def files(self) -> list[Path]:
        """Files received so far (sorted by name; partial ``.tmp`` files excluded)."""
        if not self.out_dir.exists():
            return []
        return sorted(p for p in self.out_dir.rglob("*") if p.is_file() and p.suffix != ".tmp")

    def wait_for_files(self, count: int, timeout: float = 10.0) -> list[Path]:
        """Wait until at least ``count`` files were received; return them.

        Raises:
            TimeoutError: fewer arrived within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            files = self.files
            if len(files) >= count:
                return files
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(files)} of {count} files after {timeout}s:\n{self.log}")
            time.sleep(0.02)


# --------------------------------------------------------------------------------------------
# SCU wrappers
# --------------------------------------------------------------------------------------------

_STATUS = re.compile(r"Received (?:Final )?(?P<op>Store|Find|Move|Get|C-GET|Echo) Response"
                     r"(?: \d+)? \((?P<status>[^)]*)\)")


def _statuses(text: str, op: str) -> list[str]:
    return [m["status"] for m in _STATUS.finditer(text) if m["op"] == op]


def _key_args(level: str | None, keys: Mapping[str, str | None]) -> list[str]:
    args: list[str] = []
    if level is not None:
        args += ["-k", f"QueryRetrieveLevel={level}"]
    for key, value in keys.items():
        args += ["-k", key if value is None or value == "" else f"{key}={value}"]
    return args


def _model_flag(model: QueryModel, allowed: str) -> str:
    if model not in allowed:
        raise ValueError(f"model must be one of {list(allowed)}, got {model!r}")
    return f"-{model}"


def echoscu(
    aet: str,
    port: int,
    *,
    host: str = HOST,
    calling_aet: str = "ECHOSCU",
    extra_args: Sequence[str] = (),
    timeout: float = 30.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """C-ECHO ``aet`` at ``host:port``.

    Raises:
        DcmtkError: with ``check``, when the association or the echo failed.
    """
    args = ["-v", "-aet", calling_aet, "-aec", aet, *extra_args, host, str(port)]
    proc = run_dcmtk("echoscu", args, timeout, check=False)
    if check:
        _check_final(proc, "Echo")
    return proc


def storescu(
    files: Iterable[str | os.PathLike[str]],
    aet: str,
    port: int,
    extra_args: Sequence[str] = (),
    *,
    host: str = HOST,
    calling_aet: str = "STORESCU",
    timeout: float = 600.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Send files (folders are scanned recursively) with one storescu association.

    storescu proposes uncompressed transfer syntaxes only unless told otherwise, and then
    decompresses before sending; to send compressed files as they are, pass e.g. ``["-xv"]``
    (JPEG 2000 lossless), ``["-xt"]`` (JPEG-LS lossless), ``["-xr"]`` (RLE), ``["-xs"]``
    (JPEG lossless) or ``["-xy"]`` (JPEG baseline) in ``extra_args``; with ``-nh`` it goes on
    after a failed store.

    Raises:
        DcmtkError: with ``check``, a non-zero exit or any store response other than Success.
    """
    paths = [os.fspath(f) for f in files]
    if not paths:
        raise ValueError("no files to send")
    scan = ["+sd", "+r"] if any(os.path.isdir(p) for p in paths) else []
    args = ["-v", "-aet", calling_aet, "-aec", aet, *scan, *extra_args, host, str(port), *paths]
    proc = run_dcmtk("storescu", args, timeout, check=False)
    if check:
        bad = [s for s in _statuses(proc.stdout + proc.stderr, "Store") if s != "Success"]
        if bad:
            reason = f"{len(bad)} store(s) not successful: {', '.join(sorted(set(bad)))}"
            raise DcmtkError(proc.args, proc.returncode, proc.stdout, proc.stderr, reason)
        _check_exit(proc)
    return proc


def findscu(
    level: str | None,
    keys: Mapping[str, str | None],
    aet: str,
    port: int,
    model: QueryModel = "S",
    *,
    host: str = HOST,
    calling_aet: str = "FINDSCU",
    extra_args: Sequence[str] = (),
    timeout: float = 60.0,
    check: bool = True,
) -> list[Dataset]:
    """C-FIND and return the response identifiers as pydicom Datasets, in arrival order.

    ``level`` is the QueryRetrieveLevel (``PATIENT``, ``STUDY``, ``SERIES``, ``IMAGE``; ``None``
    for worklist, ``model="W"``). ``keys`` maps a keyword, ``gggg,eeee`` tag or dcmtk path
    (``ScheduledProcedureStepSequence[0].Modality``) to a matching value; ``None`` or ``""``
    asks for it as a return key. Responses are written by ``findscu -X`` to a temporary folder
    and read back whole (the logged dumps truncate long values). For non-ASCII matching, add
    ``"SpecificCharacterSet": "ISO_IR 192"`` to ``keys``: dcmtk sends argv bytes unchanged.

    Raises:
        DcmtkError: with ``check``, a non-zero exit or a final status other than Success.
    """
    flag = _model_flag(model, "SPOW")
    with tempfile.TemporaryDirectory(prefix="vesalius-findscu-") as tmp:
        args = [
            "-v", "-sr", "-X", "-od", tmp, flag, "-aet", calling_aet, "-aec", aet,
            *_key_args(level, keys), *extra_args, host, str(port),
        ]  # fmt: skip
        proc = run_dcmtk("findscu", args, timeout, check=False)
        if check:
            _check_final(proc, "Find")
        return [dcmread(p, force=True) for p in sorted(Path(tmp).glob("rsp*.dcm"))]


def _check_final(proc: subprocess.CompletedProcess[str], op: str) -> None:
    """Raise unless the last ``op`` response was Success and the tool exited 0."""
    statuses = _statuses(proc.stdout + proc.stderr, op)
    if statuses and not statuses[-1].startswith("Success"):
        reason = f"final {op} status {statuses[-1]}"
        raise DcmtkError(proc.args, proc.returncode, proc.stdout, proc.stderr, reason)
    _check_exit(proc)
    if not statuses:
        raise DcmtkError(proc.args, proc.returncode, proc.stdout, proc.stderr, f"no {op} response")


def _check_exit(proc: subprocess.CompletedProcess[str]) -> None:
    if proc.returncode != 0:
        raise DcmtkError(proc.args, proc.returncode, proc.stdout, proc.stderr)


def movescu(
    level: str,
    keys: Mapping[str, str | None],
    aet: str,
    port: int,
    *,
    move_destination: str | None = None,
    receive_port: int | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    model: QueryModel = "S",
    host: str = HOST,
    calling_aet: str = "MOVESCU",
    extra_args: Sequence[str] = (),
    timeout: float = 600.0,
    check: bool = True,
) -> list[Path]:
    """C-MOVE; return the files movescu itself received (empty for a third-party move).

    With ``move_destination=None`` movescu is its own destination: it asks the SCP to send to
    ``calling_aet`` and listens on ``receive_port`` (the SCP must know that AE title at
    ``host:receive_port``; a free port if ``None``), writing into ``out_dir`` (required then).
    With a ``move_destination`` (e.g. a :class:`StoreSCP`'s AE title) it only moves; look at
    the destination's files. ``+xa`` is passed so the receiver accepts compressed syntaxes.

    Raises:
        DcmtkError: with ``check``, a non-zero exit or a final status other than Success
            (a Warning means some sub-operations failed, and raises too).
    """
    flag = _model_flag(model, "SPO")
    args = ["-v", flag, "-aet", calling_aet, "-aec", aet]
    dest: Path | None = None
    if move_destination is None:
        if out_dir is None:
            raise ValueError("out_dir is required when movescu receives (move_destination=None)")
        dest = Path(out_dir)
        dest.mkdir(parents=True, exist_ok=True)
        listen = receive_port or free_port()
        args += ["-aem", calling_aet, "+P", str(listen), "+xa", "-dhl", "-od", str(dest)]
    else:
        args += ["-aem", move_destination]
    before = _listing(dest)
    args += [*_key_args(level, keys), *extra_args, host, str(port)]
    proc = run_dcmtk("movescu", args, timeout, check=False)
    if check:
        _check_final(proc, "Move")
    return sorted(_listing(dest) - before)


def getscu(
    level: str,
    keys: Mapping[str, str | None],
    aet: str,
    port: int,
    out_dir: str | os.PathLike[str],
    *,
    model: QueryModel = "S",
    host: str = HOST,
    calling_aet: str = "GETSCU",
    extra_args: Sequence[str] = (),
    timeout: float = 600.0,
    check: bool = True,
) -> list[Path]:
    """C-GET into ``out_dir``; return the files received by this call.

    getscu proposes the common storage SOP classes with uncompressed transfer syntaxes; add
    e.g. ``["+xv"]`` to ``extra_args`` to prefer JPEG 2000 lossless for incoming stores.

    Raises:
        DcmtkError: with ``check``, a non-zero exit, a final status other than Success, or a
            failed or warning sub-operation.
    """
    flag = _model_flag(model, "SPO")
    dest = Path(out_dir)
    dest.mkdir(parents=True, exist_ok=True)
    before = _listing(dest)
    args = [
        "-v", flag, "-aet", calling_aet, "-aec", aet, "-od", str(dest),
        *_key_args(level, keys), *extra_args, host, str(port),
    ]  # fmt: skip
    proc = run_dcmtk("getscu", args, timeout, check=False)
    if check:
        _check_final(proc, "C-GET")
        text = proc.stdout + proc.stderr
        failed = re.findall(r"Number of (Failed|Warning) Suboperations\s*:\s*(\d+)", text)
        if any(int(n) for _, n in failed):
            reason = "; ".join(f"{kind}: {n}" for kind, n in failed)
            raise DcmtkError(proc.args, proc.returncode, proc.stdout, proc.stderr, reason)
    return sorted(_listing(dest) - before)


def _listing(folder: Path | None) -> set[Path]:
    if folder is None or not folder.exists():
        return set()
    return {p for p in folder.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------------------------
# Parsing findscu's logged responses
# --------------------------------------------------------------------------------------------

_DUMP_LINE = re.compile(
    r"^(?P<indent>\s*)\((?P<group>[0-9a-fA-F]{4}),(?P<elem>[0-9a-fA-F]{4})\)\s+(?P<vr>[A-Za-z?]{2})"
    r"\s+(?P<value>.*?)\s*#\s*(?:\d+|u/l),\s*\d+\s*\S*\s*$"
)
_RESPONSE = re.compile(r"^Find Response: \d+ \(")
_LOG_PREFIX = re.compile(r"^[FEWIDT]: ?")
_NUMERIC_VRS = {"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"}
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


def parse_findscu_output(text: str) -> list[Dataset]:
    """Parse the C-FIND responses that findscu logs (its default output, or ``-v +sr``).

    Each ``Find Response: N (...)`` header starts a response; the dcmtk dump lines after it
    (with or without the ``I:`` log prefix) become its elements, sequences and items
    included. String values lose their padding, numeric VRs become numbers, empty values
    ``None``. dcmtk truncates long values in its dumps (they end in ``...``): prefer
    :func:`findscu`, which reads whole ``-X`` files, when values may be long. The request
    identifier that ``-v`` also dumps is not a response and is skipped.
    """
    responses: list[Dataset] = []
    # Frames of (indent of their children, container): the response, then SQ / item nesting.
    stack: list[tuple[int, Dataset | DicomSequence]] = []
    for raw in text.splitlines():
        line = _LOG_PREFIX.sub("", raw)
        if _RESPONSE.match(line):
            response = Dataset()
            responses.append(response)
            stack = [(0, response)]
            continue
        if line.startswith(("Request Identifiers", "Sending Find Request", "Received Final")):
            stack = []
            continue
        m = _DUMP_LINE.match(line)
        if not stack or m is None:
            continue
        indent = len(m["indent"])
        while len(stack) > 1 and indent < stack[-1][0]:
            stack.pop()
        top = stack[-1][1]
        tag = (int(m["group"], 16) << 16) | int(m["elem"], 16)
        if tag in (_ITEM_END, _SEQ_END):
            continue
        if tag == _ITEM:
            if isinstance(top, DicomSequence):
                item = Dataset()
                top.append(item)
                stack.append((indent + 2, item))
            continue
        if not isinstance(top, Dataset):
            continue
        vr = m["vr"].upper()
        if vr == "SQ":
            seq = DicomSequence()
            top.add(DataElement(tag, "SQ", seq))
            stack.append((indent + 2, seq))
            continue
        if vr in ("??", "NA"):
            try:
                vr = str(dictionary_VR(tag))
            except KeyError:
                vr = "UN"
        top.add(DataElement(tag, vr, _dump_value(vr, m["value"])))
    return responses


def _dump_value(vr: str, value: str) -> object:
    """A value as dcmtk dumps it: ``[text\\more]``, ``(no value available)``, numbers, hex."""
    value = value.strip()
    if value == "" or value.startswith("(no value"):
        return None
    if value.startswith("[") and "]" in value:
        parts = [p.strip(" \x00") for p in value[1 : value.rindex("]")].split("\\")]
        return parts if len(parts) > 1 else parts[0]
    parts = value.split("\\")
    if vr in _NUMERIC_VRS:
        conv = float if vr in ("FL", "FD") else int
        nums = [conv(p) for p in parts]
        return nums if len(nums) > 1 else nums[0]
    if vr == "AT":
        tags = [int(p.strip("()").replace(",", ""), 16) for p in parts]
        return tags if len(tags) > 1 else tags[0]
    if vr in ("OB", "UN") and all(re.fullmatch(r"[0-9a-fA-F]{2}", p) for p in parts):
        return bytes(int(p, 16) for p in parts)
    return value

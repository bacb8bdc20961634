"""DIMSE retrieve, side by side: Orthanc and Vesalius serving one CT series.

A 300-instance CT series (512x512) is loaded into each target (untimed). Then, per repeat:
  move: ``movescu`` asks the target to C-MOVE the series to a dcmtk ``storescp``
        (registered as a modality in Orthanc and as a remote in Vesalius);
  get:  ``getscu`` C-GETs the series over its own association.
Each run is checked to deliver every instance. Figures are median MB/s of the series' file
bytes over the client's wall-clock time.

    .venv/bin/python benchmarks/retrieve.py [--repeat 5] [--targets orthanc,vesalius]

Writes ``bench-out/retrieve.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import peers  # noqa: E402

TARGETS = ("orthanc", "vesalius")
OPS = ("move", "get")
DEST_AET = "BENCHDEST"
MOVE_AET = "BENCHMOVE"
GET_AET = "BENCHGET"
FIND_AET = "BENCHFIND"


def default_recv_dir() -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    return peers.BENCH_OUT / "tmp"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--count", type=int, default=300, help="instances in the series (300)")
    ap.add_argument("--seed", type=int, default=1, help="data seed (default 1)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per target and op (5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    ap.add_argument(
        "--targets", default=",".join(TARGETS), help="comma-separated subset of orthanc,vesalius"
    )
    ap.add_argument(
        "--python",
        default=sys.executable,
        help="python that runs `-m vesalius.cli` (default: this one)",
    )
    ap.add_argument(
        "--ours-cmd",
        default=None,
        help="development only: stand-in command for Vesalius, with placeholders "
        "{python} {data_dir} {aet} {dicom_port} {http_port} {remotes}",
    )
    ap.add_argument(
        "--work-dir",
        type=Path,
        default=peers.BENCH_OUT / "tmp",
        help="where the servers' data dirs are made (default bench-out/tmp)",
    )
    ap.add_argument(
        "--recv-dir",
        type=Path,
        default=default_recv_dir(),
        help="where storescp/getscu write what they receive (default /dev/shm: the receiver's "
        "disk is not what is measured)",
    )
    ap.add_argument("--out", type=Path, default=peers.BENCH_OUT / "retrieve.json")
    args = ap.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        ap.error(f"unknown targets {unknown}; choose from {', '.join(TARGETS)}")
    if args.repeat < 1 or args.warmup < 0 or args.count < 1:
        ap.error("need --repeat >= 1, --warmup >= 0 and --count >= 1")
    return args


def retrieve_once(
    op: str,
    peer: peers.RunningPeer,
    series: peers.SeriesRef,
    move_dir: Path,
    get_dir: Path,
) -> tuple[float, int, int]:
    """One C-MOVE or C-GET of the series; (seconds, instances received, bytes received)."""
    out = move_dir if op == "move" else get_dir
    peers.clear_dir(out)
    if op == "move":
        seconds = peers.run_movescu(peer.node, DEST_AET, series, calling_aet=MOVE_AET)
    else:
        seconds = peers.run_getscu(peer.node, series, out, calling_aet=GET_AET)
    files = [p for p in out.rglob("*") if p.is_file()]
    received = len(files)
    nbytes = sum(p.stat().st_size for p in files)
    peers.clear_dir(out)
    if received != series.count:
        raise peers.PeerError(
            f"{peer.name} C-{op.upper()} delivered {received} of {series.count} instances"
        )
    return seconds, received, nbytes


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ct = peers.cached_ct(args.count, args.seed, per_series=args.count)
    series = ct.series[0]
    peers.warm_page_cache(ct.files)
    os.sync()  # generation's dirty pages written now, not during the first run
    print(
        f"data: 1 series of {ct.count} instances, {ct.total_bytes / 1e6:.0f} MB; "
        f"targets {', '.join(args.targets)}; {args.warmup} warm-up + {args.repeat} runs",
        flush=True,
    )
    args.work_dir.mkdir(parents=True, exist_ok=True)
    args.recv_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="retrieve-", dir=args.work_dir))
    recv = Path(tempfile.mkdtemp(prefix="vesalius-bench-recv-", dir=args.recv_dir))
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    started = time.time()
    ok = False
    try:
        with contextlib.ExitStack() as stack:
            dest = stack.enter_context(
                peers.storescp_floor(work / "dest", aet=DEST_AET, fork=False, out_dir=recv / "move")
            )
            dest_node = dest.node
            callers = [
                peers.DicomNode(aet, peers.HOST, dest_node.port)  # port unused for callers
                for aet in (MOVE_AET, GET_AET, FIND_AET)
            ]
            running: dict[str, peers.RunningPeer] = {}
            for target in args.targets:
                try:
                    running[target] = start_and_load(
                        stack, target, work / target, ct, dest_node, callers, args
                    )
                except peers.PeerError as exc:
                    errors[target] = str(exc)
                    print(f"  {target}: FAILED to start/load\n{exc}", file=sys.stderr, flush=True)
            total_runs = args.warmup + args.repeat
            for r in range(total_runs):
                warm = r < args.warmup
                for target, peer in running.items():
                    for op in OPS:
                        if target in errors:
                            continue
                        get_dir = recv / f"get-{target}"
                        try:
                            seconds, received, nbytes = retrieve_once(
                                op, peer, series, recv / "move", get_dir
                            )
                        except peers.PeerError as exc:
                            errors[target] = str(exc)
                            print(f"  {target} {op}: FAILED\n{exc}", file=sys.stderr, flush=True)
                            continue
                        label = "warm-up" if warm else f"#{r - args.warmup + 1}"
                        row = {
                            "target": target,
                            "op": op,
                            "repeat": r - args.warmup + 1,
                            "warmup": warm,
                            "seconds": seconds,
                            "instances": received,
                            "bytes_received": nbytes,
                            "mb_per_s": ct.total_bytes / 1e6 / seconds,
                            "instances_per_s": received / seconds,
                        }
                        print(
                            f"  {target:<9} {op:<5} {label:<8} {seconds:7.2f} s "
                            f"{row['mb_per_s']:8.1f} MB/s {row['instances_per_s']:8.1f} inst/s",
                            flush=True,
                        )
                        if not warm:
                            rows.append(row)
        ok = not errors
    finally:
        if not ok:
            for sub in [work, *sorted(p for p in work.glob("*") if p.is_dir())]:
                if any(sub.glob("*.log")):
                    peers.keep_logs(sub, f"{work.name}-{sub.name}")
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(recv, ignore_errors=True)

    summary: dict[str, Any] = {}
    for target in args.targets:
        for op in OPS:
            mine = [x for x in rows if x["target"] == target and x["op"] == op]
            if mine:
                mbs = [float(x["mb_per_s"]) for x in mine]
                summary.setdefault(target, {})[op] = {
                    "runs": len(mine),
                    "median_mb_per_s": peers.median(mbs),
                    "min_mb_per_s": min(mbs),
                    "max_mb_per_s": max(mbs),
                    "median_instances_per_s": peers.median(
                        [float(x["instances_per_s"]) for x in mine]
                    ),
                }
    ratios: dict[str, float] = {}
    for op in OPS:
        ours = summary.get("vesalius", {}).get(op)
        theirs = summary.get("orthanc", {}).get(op)
        if ours and theirs:
            ratios[f"{op} vesalius/orthanc"] = ours["median_mb_per_s"] / theirs["median_mb_per_s"]

    print(f"\nDIMSE retrieve of one {ct.count}-instance CT series (median of runs)")
    print(f"{'target':<10} {'C-MOVE MB/s':>12} {'inst/s':>8}   {'C-GET MB/s':>11} {'inst/s':>8}")
    for target, ops in summary.items():
        cells = []
        for op, width in (("move", 12), ("get", 11)):
            s = ops.get(op)
            cells.append(
                f"{s['median_mb_per_s']:>{width}.1f} {s['median_instances_per_s']:>8.1f}"
                if s
                else f"{'-':>{width}} {'-':>8}"
            )
        print(f"{target:<10} {cells[0]}   {cells[1]}")
    for k, v in ratios.items():
        print(f"{k} = {v:.2f}")
    for target, message in errors.items():
        print(f"{target}: FAILED ({message.splitlines()[0]})", file=sys.stderr)

    result = {
        "benchmark": "dimse-retrieve",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": time.time() - started,
        "host": peers.host_info(),
        "params": {
            "count": ct.count,
            "seed": args.seed,
            "bytes": ct.total_bytes,
            "repeat": args.repeat,
            "warmup": args.warmup,
            "targets": args.targets,
            "ours_cmd": args.ours_cmd,
            "python": args.python,
            "receiver": f"dcmtk storescp (C-MOVE) / getscu (C-GET) writing to {args.recv_dir}",
            "mb": "10^6 bytes of the series' files",
        },
        "summary": summary,
        "ratios": ratios,
        "errors": errors,
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 1 if errors else 0


def start_and_load(
    stack: contextlib.ExitStack,
    target: str,
    work: Path,
    ct: peers.CtSet,
    dest: peers.DicomNode,
    callers: Sequence[peers.DicomNode],
    args: argparse.Namespace,
) -> peers.RunningPeer:
    """Start the target knowing ``dest`` (and the callers), store the series, check it."""
    work.mkdir(parents=True, exist_ok=True)
    if target == "orthanc":
        peer = stack.enter_context(peers.orthanc(work, aet="ORTHANC", modalities=[dest, *callers]))
    else:
        peer = stack.enter_context(
            peers.vesalius(
                work,
                python=args.python,
                aet="VESALIUS",
                remotes=[dest],
                cmd_template=args.ours_cmd,
            )
        )
    seconds = peers.run_storescu(ct.dicom_dir, peer.node.aet, peer.node.host, peer.node.port)
    held = peer.count_instances(ct.series)
    if held is not None and held != ct.count:
        raise peers.PeerError(f"{target} holds {held} instances after loading, not {ct.count}")
    note = "" if held is not None else " (count unverified)"
    print(f"  {target}: loaded {ct.count} instances in {seconds:.2f} s{note}", flush=True)
    return peer


if __name__ == "__main__":
    raise SystemExit(main())

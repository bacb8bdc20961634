"""DIMSE ingest, side by side: dcmtk storescp (floor), Orthanc and Vesalius.

For each target and repeat, on a fresh empty data dir:
  (a) single:   one ``storescu`` association sends all N instances;
  (b) parallel: P ``storescu`` processes at once, each with N/P distinct instances.
Every Orthanc and Vesalius run is checked to hold all N instances afterwards.

    .venv/bin/python benchmarks/ingest.py [--repeat 3] [--targets storescp,orthanc,vesalius]

Prints median instances/s per target and the ratios Vesalius/Orthanc and Vesalius/storescp;
writes ``bench-out/ingest.json``.
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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import peers  # noqa: E402

TARGETS = ("storescp", "orthanc", "vesalius")
MODES = ("single", "parallel")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--count", type=int, default=1000, help="instances (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per target and mode (default 3)")
    ap.add_argument("--parallel", type=int, default=4, help="storescu processes (default 4)")
    ap.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="comma-separated subset of storescp,orthanc,vesalius (default all)",
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
        help="where the fresh data dirs are made (default bench-out/tmp; same disk as the repo)",
    )
    ap.add_argument("--out", type=Path, default=peers.BENCH_OUT / "ingest.json")
    args = ap.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        ap.error(f"unknown targets {unknown}; choose from {', '.join(TARGETS)}")
    if args.repeat < 1 or args.parallel < 1 or args.count < args.parallel:
        ap.error("need --repeat >= 1, --parallel >= 1 and --count >= --parallel")
    return args


@contextlib.contextmanager
def start_target(
    target: str, work_dir: Path, args: argparse.Namespace
) -> Iterator[peers.RunningPeer]:
    if target == "storescp":
        with peers.storescp_floor(work_dir, aet="STORESCP") as peer:
            yield peer
    elif target == "orthanc":
        with peers.orthanc(work_dir, aet="ORTHANC") as peer:
            yield peer
    else:
        with peers.vesalius(
            work_dir, python=args.python, aet="VESALIUS", cmd_template=args.ours_cmd
        ) as peer:
            yield peer


def one_run(target: str, mode: str, ct: peers.CtSet, args: argparse.Namespace) -> dict[str, Any]:
    """Start the target on a fresh data dir, send, verify, stop; one result row."""
    args.work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"ingest-{target}-{mode}-", dir=args.work_dir))
    ok = False
    try:
        with start_target(target, work, args) as peer:
            n = peer.node
            if mode == "single":
                seconds = peers.run_storescu(ct.dicom_dir, n.aet, n.host, n.port)
            else:
                seconds = peers.run_storescu_parallel(
                    ct.split(args.parallel), n.aet, n.host, n.port
                )
            held = peer.count_instances(ct.series)
        if held is not None and held != ct.count:
            raise peers.PeerError(f"{target} holds {held} instances after the run, not {ct.count}")
        if held is None:
            print(f"  warning: could not count what {target} holds (unverified)", flush=True)
        ok = True
        return {
            "target": target,
            "mode": mode,
            "seconds": seconds,
            "instances": ct.count,
            "instances_per_s": ct.count / seconds,
            "mb_per_s": ct.total_bytes / 1e6 / seconds,
            "verified_count": held,
        }
    finally:
        if not ok:
            peers.keep_logs(work)
        shutil.rmtree(work, ignore_errors=True)
        os.sync()  # no dirty pages of this run left to be written during the next one


def summarise(rows: Sequence[dict[str, Any]], targets: Sequence[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for t in targets:
        for m in MODES:
            mine = [r for r in rows if r["target"] == t and r["mode"] == m]
            if not mine:
                continue
            ips = [float(r["instances_per_s"]) for r in mine]
            mbs = [float(r["mb_per_s"]) for r in mine]
            summary.setdefault(t, {})[m] = {
                "runs": len(mine),
                "median_instances_per_s": peers.median(ips),
                "min_instances_per_s": min(ips),
                "max_instances_per_s": max(ips),
                "median_mb_per_s": peers.median(mbs),
            }
    return summary


def ratios(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    ours = summary.get("vesalius", {})
    for m in MODES:
        if m not in ours:
            continue
        for peer in ("orthanc", "storescp"):
            theirs = summary.get(peer, {}).get(m)
            if theirs:
                value = ours[m]["median_instances_per_s"] / theirs["median_instances_per_s"]
                out.setdefault(m, {})[f"vesalius/{peer}"] = value
    return out


def print_table(summary: dict[str, Any], parallel: int, count: int) -> None:
    head = f"{'target':<10} {'single inst/s':>14} {'MB/s':>7}   {f'{parallel}-parallel inst/s':>20} {'MB/s':>7}"
    print(f"\nDIMSE ingest of {count} CT 512x512 instances (median of runs)\n{head}")
    for t, modes in summary.items():
        cells = []
        for m, width in (("single", 14), ("parallel", 20)):
            s = modes.get(m)
            if s:
                cells.append(
                    f"{s['median_instances_per_s']:>{width}.1f} {s['median_mb_per_s']:>7.1f}"
                )
            else:
                cells.append(f"{'-':>{width}} {'-':>7}")
        print(f"{t:<10} {cells[0]}   {cells[1]}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ct = peers.cached_ct(args.count, args.seed)
    peers.warm_page_cache(ct.files)
    os.sync()  # generation's dirty pages written now, not during the first run
    print(
        f"data: {ct.count} instances, {ct.total_bytes / 1e6:.0f} MB, {len(ct.series)} series "
        f"({ct.dicom_dir}); targets {', '.join(args.targets)}; {args.repeat} repeats",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    started = time.time()
    # Interleave targets inside each repeat so drift (page cache, thermal) hits all alike.
    for r in range(args.repeat):
        for target in args.targets:
            for mode in MODES:
                if target in errors:
                    continue
                try:
                    row = one_run(target, mode, ct, args)
                except peers.PeerError as exc:
                    errors[target] = str(exc)
                    print(f"  {target} {mode} #{r + 1}: FAILED\n{exc}", file=sys.stderr, flush=True)
                    continue
                row["repeat"] = r + 1
                rows.append(row)
                print(
                    f"  {target:<9} {mode:<8} #{r + 1}: {row['seconds']:7.2f} s "
                    f"{row['instances_per_s']:8.1f} inst/s {row['mb_per_s']:7.1f} MB/s",
                    flush=True,
                )
    summary = summarise(rows, args.targets)
    rat = ratios(summary)
    print_table(summary, args.parallel, ct.count)
    for m, values in rat.items():
        print(f"{m:<8} " + "  ".join(f"{k} = {v:.2f}" for k, v in values.items()))
    for target, message in errors.items():
        print(f"{target}: FAILED ({message.splitlines()[0]})", file=sys.stderr)
    result = {
        "benchmark": "dimse-ingest",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": time.time() - started,
        "host": peers.host_info(),
        "params": {
            "count": ct.count,
            "seed": args.seed,
            "series": len(ct.series),
            "bytes": ct.total_bytes,
            "repeat": args.repeat,
            "parallel": args.parallel,
            "targets": args.targets,
            "ours_cmd": args.ours_cmd,
            "python": args.python,
            "client": "dcmtk storescu, TCP_NODELAY=1",
        },
        "summary": summary,
        "ratios": rat,
        "errors": errors,
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())

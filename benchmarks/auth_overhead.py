"""What authentication and access control cost: QIDO-RS p50 and WADO-RS retrieve MB/s of the
same archive served with the policy point and authentication (an API token, as scripts and
AI tools send it; a radiologist scoped to an institution, the costliest case) and without
them (the same app with the authentication middleware and the policy checks bypassed).

    .venv/bin/python benchmarks/auth_overhead.py [--instances 200] [--queries 300]

Target (issue 4): at most 10% on QIDO-RS p50 and WADO-RS throughput.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import make_settings  # noqa: E402
from tests.dicomgen import make_ct_series  # noqa: E402
from tests.web.conftest import live_server  # noqa: E402
from vesalius.archive import open_archive  # noqa: E402
from vesalius.security.identity import Principal  # noqa: E402
from vesalius.web.app import create_app  # noqa: E402


class Open:
    """ASGI wrapper: every request is an unscoped administrator, with no credential check."""

    def __init__(self, app: Any) -> None:
        self.starlette = app
        self.app = app.router  # past the middleware stack: no authentication at all
        self.p = Principal("bench", frozenset({"admin"}))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = dict(scope)
            scope.setdefault("state", {})["principal"] = self.p
            scope["app"] = self.starlette
        await self.app(scope, receive, send)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=200)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--out", default="bench-out/auth-overhead.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="auth-bench-"))
    files = sorted(make_ct_series(tmp / "ct", n_slices=args.instances, rows=512, cols=512, seed=5))
    archive = open_archive(make_settings(tmp))
    for f in files:
        assert archive.store_bytes(f.read_bytes()).ok
    import pydicom

    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    inst = str(ds.get("InstitutionName", "") or "")
    archive.identities.add_user("root", "benchmark password", ["admin"])
    archive.identities.add_user("rad", "benchmark password", ["radiologist"],
                                institutions=(inst,) if inst else ())
    archive.identities.add_user("rad2", "benchmark password", ["radiologist"])
    token = archive.identities.create_token("rad")
    plain_token = archive.identities.create_token("rad2")
    app = create_app(archive, viewer=False)
    results: dict[str, Any] = {"instances": len(files), "institution_scope": bool(inst)}
    qido = f"/dicom-web/studies?PatientID={ds.PatientID}"
    series = f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    accept = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    with live_server(app) as secured, live_server(Open(app)) as open_:
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(headers=auth) as cs, httpx.Client() as co, \
                httpx.Client(headers={"Authorization": f"Bearer {plain_token}"}) as cp:
            for c, base in ((cs, secured), (co, open_), (cp, secured)):
                assert c.get(base + qido).status_code == 200
            q: dict[str, list[float]] = {"secured": [], "open": [], "unscoped": []}
            for _ in range(args.queries):
                for name, c, base in (("secured", cs, secured), ("open", co, open_), ("unscoped", cp, secured)):
                    t = time.perf_counter()
                    r = c.get(base + qido)
                    q[name].append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200 and len(r.json()) == 1
            w: dict[str, list[float]] = {"secured": [], "open": []}
            for _ in range(7):
                for name, c, base in (("secured", cs, secured), ("open", co, open_)):
                    t = time.perf_counter()
                    r = c.get(base + series, headers=accept)
                    dt = time.perf_counter() - t
                    assert r.status_code == 200
                    w[name].append(len(r.content) / dt / 1e6)
    for name in ("secured", "open"):
        results[f"qido_p50_ms_{name}"] = round(statistics.median(q[name]), 3)
        results[f"wado_mb_s_{name}"] = round(statistics.median(w[name]), 1)
    results["qido_p50_ms_unscoped"] = round(statistics.median(q["unscoped"]), 3)
    results["qido_overhead_unscoped"] = round(results["qido_p50_ms_unscoped"] / results["qido_p50_ms_open"] - 1, 3)
    results["qido_overhead"] = round(results["qido_p50_ms_secured"] / results["qido_p50_ms_open"] - 1, 3)
    results["wado_overhead"] = round(1 - results["wado_mb_s_secured"] / results["wado_mb_s_open"], 3)
    archive.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    print(f"QIDO p50 +{100 * results['qido_overhead_unscoped']:.1f}% (unscoped radiologist), "
          f"+{100 * results['qido_overhead']:.1f}% (scoped to an institution), WADO MB/s -{100 * results['wado_overhead']:.1f}% "
          "(target: at most 10% each)")


if __name__ == "__main__":
    main()

"""STOW-RS: store instances (PS3.18 10.5).

The request body is read as it arrives; each completed part is archived through the same
ingest as C-STORE (validate, hash, write + fsync, index) before the next is read, so a
request is never held whole in memory and nothing is acknowledged before it is durable.
The answer lists what was stored (ReferencedSOPSequence) and what failed, with the reason
(FailedSOPSequence): 200 all stored, 202 some, 409 none.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
from pydicom.dataset import Dataset
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from vesalius.archive import Archive
from vesalius.archive.ingest import IngestReport, Status
from vesalius.errors import QueryError
from vesalius.security.identity import Principal
from vesalius.security.policy import Action, decide
from vesalius.web.dicomweb.access import client_of, needs_study_check, require
from vesalius.web.dicomweb.common import (
    DICOM_JSON,
    HTTPError,
    base_url,
    instance_url,
    json_bytes,
    uid_param,
)
from vesalius.web.dicomweb.multipart import MultipartReader, Part, parse_media_type

#: Parts of one request archived at the same time.
_PARALLEL_PARTS = 4


_LIMITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = \
    weakref.WeakKeyDictionary()


def _ingest_limiter() -> anyio.CapacityLimiter:
    """Worker threads for STOW-RS parts (one set per event loop), apart from the default
    pool that reads use, so a burst of stores cannot leave searches and retrievals waiting
    for a thread."""
    loop = asyncio.get_running_loop()
    limiter = _LIMITERS.get(loop)
    if limiter is None:
        limiter = _LIMITERS[loop] = anyio.CapacityLimiter(8)
    return limiter


def _content_type(request: Request) -> str:
    raw = request.headers.get("content-type")
    if not raw:
        raise HTTPError(415, 'STOW-RS needs Content-Type: multipart/related; type="application/dicom"; '
                             "boundary=...")
    try:
        ctype = parse_media_type(raw)
    except QueryError as exc:
        raise HTTPError(415, f"unreadable Content-Type: {exc}") from None
    if ctype.type != "multipart/related":
        raise HTTPError(415, f'STOW-RS takes multipart/related; type="application/dicom", not {ctype.type}')
    if ctype.subtype not in ("", "application/dicom"):
        raise HTTPError(415, f"parts of type {ctype.subtype} are not supported; send application/dicom parts")
    boundary = ctype.params.get("boundary", "")
    if not boundary:
        raise HTTPError(400, "the Content-Type has no boundary parameter")
    return boundary


def _authorizer(principal: Principal) -> Callable[[Dataset], bool]:
    """Store only into the caller's scopes (institution, department, issuer)."""

    def check(ds: Dataset) -> bool:
        facts = {k: str(ds.get(k, "") or "") for k in ("StudyInstanceUID", "ReferringPhysicianName",
                                                     "InstitutionName", "InstitutionalDepartmentName",
                                                     "IssuerOfPatientID")}
        return decide(principal, Action.STORE, facts)

    return check


def _store_part(archive: Archive, part: Part, study: str | None, peer: str,
                authorize: Callable[[Dataset], bool] | None = None) -> IngestReport:
    ptype = part.content_type.split(";")[0].strip().lower()
    if ptype not in ("", "application/dicom", "application/octet-stream"):
        return IngestReport(Status.CANNOT_UNDERSTAND, "invalid", f"a part of type {ptype[:64]} is not DICOM")
    return archive.store_bytes(part.data, source_ae=peer, expected_study=study, authorize=authorize)


def _item(report: IngestReport, url: str | None, failure: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "00081150": {"vr": "UI", "Value": [report.sop_class_uid]} if report.sop_class_uid else {"vr": "UI"},
        "00081155": {"vr": "UI", "Value": [report.sop_instance_uid]} if report.sop_instance_uid
        else {"vr": "UI"},
    }
    if failure:
        item["00081197"] = {"vr": "US", "Value": [int(report.status)]}
    if url:
        item["00081190"] = {"vr": "UR", "Value": [url]}
    if report.status == Status.WARNING_COERCION:
        item["00081196"] = {"vr": "US", "Value": [int(report.status)]}
    return item


async def store(request: Request, archive: Archive) -> Response:
    """``POST /studies`` and ``POST /studies/{study}`` (PS3.18 10.5.1)."""
    study = uid_param(request, "study") if "study" in request.path_params else None
    principal = require(request, Action.STORE, archive)
    if study is not None:
        facts = await run_in_threadpool(archive.study_facts, study)
        if facts is not None and needs_study_check(principal) and not decide(principal, Action.STORE, facts):
            raise HTTPError(404, "the study is not in the archive")
    authorize = _authorizer(principal) if needs_study_check(principal) else None
    boundary = _content_type(request)
    limit = archive.settings.stow_max_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise HTTPError(400, "Content-Length is not a number") from None
        if size > limit:
            raise HTTPError(413, f"the request body ({size} bytes) is larger than stow_max_bytes ({limit})")
    reader = MultipartReader(boundary, limit)
    peer = "HTTP"
    received = 0
    truncated = False
    # Parts are archived on worker threads, a few at a time: one part's parsing overlaps
    # another's fsync. Each is durable and indexed before the answer lists it.
    slots = asyncio.Semaphore(_PARALLEL_PARTS)
    tasks: list[asyncio.Task[IngestReport]] = []

    async def archive_part(part: Part) -> IngestReport:
        try:
            return await anyio.to_thread.run_sync(_store_part, archive, part, study, peer, authorize,
                                                  limiter=_ingest_limiter())
        finally:
            slots.release()

    try:
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise HTTPError(413, f"the request body is larger than stow_max_bytes ({limit})")
                for part in reader.feed(chunk):
                    await slots.acquire()
                    tasks.append(asyncio.create_task(archive_part(part)))
        except ClientDisconnect:
            truncated = True
    finally:
        reports = list(await asyncio.gather(*tasks)) if tasks else []
    if not reader.finished:
        if reader.parts_seen == 0:
            raise HTTPError(400, "the body holds no multipart/related part with the declared boundary")
        truncated = True
    if truncated:
        reports.append(IngestReport(Status.CANNOT_UNDERSTAND, "invalid",
                                    "the body ended inside a part (truncated); that part was not stored"))
    if not reports:
        raise HTTPError(400, "the body holds no DICOM part")
    base = base_url(request)
    stored = [r for r in reports if r.ok]
    for study_uid in {r.study_uid for r in stored}:
        archive.auditor.accessed(principal.name, client_of(request), study_uid, "C")
    failed = [r for r in reports if not r.ok]
    doc: dict[str, Any] = {}
    if stored:
        studies = {r.study_uid for r in stored}
        if len(studies) == 1:
            doc["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{next(iter(studies))}"]}
        refs = []
        for r in stored:
            url = instance_url(base, r.study_uid, r.series_uid, r.sop_instance_uid)
            refs.append(_item(r, url, failure=False))
        doc["00081199"] = {"vr": "SQ", "Value": refs}
    if failed:
        doc["00081198"] = {"vr": "SQ", "Value": [_item(r, None, failure=True) for r in failed]}
    status = 200 if not failed else (202 if stored else 409)
    return Response(json_bytes(doc), status_code=status, media_type=DICOM_JSON)

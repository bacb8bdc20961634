"""DELETE of a study, series or instance, and WADO-URI for legacy clients (PS3.18 9).

DELETE is not part of PS3.18; it follows dcm4chee and Orthanc: the resource is removed
from the index, then its stored objects. (It becomes admin-only when access control lands.)
"""

from __future__ import annotations

import dataclasses

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from vesalius.archive import Archive
from vesalius.dicom.render import parse_params
from vesalius.dicom.uids import is_valid_uid
from vesalius.security.policy import Action
from vesalius.web.dicomweb.access import client_of, require_study
from vesalius.web.dicomweb.common import HTTPError, uids
from vesalius.web.dicomweb.wado import _encode


async def delete(request: Request, archive: Archive) -> Response:
    study, series, sop = uids(request)
    p = await require_study(request, archive, Action.DELETE, study)
    facts = await run_in_threadpool(archive.study_facts, study)
    n = await run_in_threadpool(archive.delete, study, series, sop)
    archive.auditor.deleted(p.name, client_of(request), facts or {"StudyInstanceUID": study}, n)
    return JSONResponse({"deleted_instances": n})


_WADO_URI_MEDIA = ("application/dicom", "image/jpeg", "image/png")


async def wado_uri(request: Request, archive: Archive) -> Response:
    """``GET /wado?requestType=WADO&studyUID=..&seriesUID=..&objectUID=..`` (PS3.18 9.1, 9.2)."""
    qp = request.query_params
    if qp.get("requestType") != "WADO":
        raise HTTPError(400, "requestType must be WADO")
    keys = {}
    for name in ("studyUID", "seriesUID", "objectUID"):
        value = qp.get(name, "")
        if not is_valid_uid(value):
            raise HTTPError(400, f"{name} is missing or not a valid UID")
        keys[name] = value
    await require_study(request, archive, Action.RETRIEVE, keys["studyUID"])
    content = (qp.get("contentType") or "image/jpeg").split(",")[0].strip().lower()
    if content not in _WADO_URI_MEDIA:
        raise HTTPError(406, f"contentType must be one of {', '.join(_WADO_URI_MEDIA)}")
    refs = await run_in_threadpool(archive.instances_of, keys["studyUID"], keys["seriesUID"], keys["objectUID"])
    ref = refs[0]
    if content == "application/dicom":
        target = qp.get("transferSyntax") or ref.transfer_syntax
        if not is_valid_uid(target):
            raise HTTPError(400, "transferSyntax is not a valid UID")
        body = await run_in_threadpool(_encode, archive, ref, target)
        return Response(body, media_type="application/dicom")
    query: dict[str, str] = {}
    if qp.get("windowCenter") and qp.get("windowWidth"):
        query["window"] = f"{qp['windowCenter']},{qp['windowWidth']},linear"
    if qp.get("rows") or qp.get("columns"):
        query["viewport"] = f"{qp.get('columns') or qp.get('rows')},{qp.get('rows') or qp.get('columns')}"
    if qp.get("imageQuality"):
        query["quality"] = qp["imageQuality"]
    params = dataclasses.replace(parse_params(query), media_type=content)
    frame_raw = qp.get("frameNumber") or "1"
    if not frame_raw.isdigit() or int(frame_raw) < 1:
        raise HTTPError(400, "frameNumber must be a positive integer")
    body = await run_in_threadpool(archive.frames.render, ref, int(frame_raw), params)
    return Response(body, media_type=content)

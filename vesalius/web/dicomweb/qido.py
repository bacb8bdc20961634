"""QIDO-RS: search for studies, series and instances (PS3.18 10.6).

The query string becomes the same :class:`~vesalius.dicom.matching.Query` a C-FIND
identifier becomes, so both interfaces match identically; answers are DICOM JSON.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from vesalius.archive import Archive
from vesalius.dicom.keys import KEYS, Level
from vesalius.dicom.matching import resolve_attribute
from vesalius.security.policy import Action
from vesalius.web.dicomweb.access import client_of, require, scoped_query, visible_results
from vesalius.web.dicomweb.common import DICOM_JSON, HTTPError, base_url, json_bytes, uid_param
from vesalius.web.dicomweb.multipart import parse_accept

_RESERVED = frozenset({"limit", "offset", "fuzzymatching", "includefield", "accept", "charset",
                       "_"})  # "_" : cache-busting parameter some browsers' clients add
_ACCEPTABLE = frozenset({"application/dicom+json", "application/json", "*/*", "application/*"})


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise HTTPError(400, f"{name} must be a non-negative integer, not {raw[:32]!r}") from None
    if value < 0:
        raise HTTPError(400, f"{name} must be a non-negative integer")
    return value


def _include_fields(request: Request, level: Level) -> tuple[tuple[str, ...], list[int], bool]:
    keywords: list[str] = []
    tags: list[int] = []
    everything = False
    for raw in request.query_params.getlist("includefield"):
        for item in raw.split(","):
            item = item.strip()
            if not item:
                continue
            if item.lower() == "all":
                everything = True
                continue
            kw, tag, _vr = resolve_attribute(item)
            keywords.append(kw)
    if everything:
        keywords.extend(k for k, key in KEYS.items() if key.level.depth <= level.depth)
    return tuple(dict.fromkeys(keywords)), tags, everything


def _check_accept(request: Request) -> None:
    ranges = parse_accept(request.query_params.get("accept") or request.headers.get("accept"))
    if not any(r.type in _ACCEPTABLE for r in ranges):
        raise HTTPError(406, "QIDO-RS answers in application/dicom+json; "
                             "application/dicom+xml is not supported")


def _uid(item: dict[str, Any], tag: str) -> str:
    value = item.get(tag, {}).get("Value") or [""]
    return str(value[0])


def _retrieve_url(base: str, level: Level, item: dict[str, Any]) -> str:
    """RetrieveURL (0008,1190) of a match (PS3.18 Tables 10.6.3-3 to 10.6.3-5)."""
    study = _uid(item, "0020000D")
    if not study:
        return ""
    url = f"{base}/studies/{study}"
    if level in (Level.SERIES, Level.IMAGE):
        url += f"/series/{_uid(item, '0020000E')}"
    if level == Level.IMAGE:
        url += f"/instances/{_uid(item, '00080018')}"
    return url


async def search(request: Request, archive: Archive, level: Level) -> Response:
    """Answer one QIDO-RS request at ``level`` (path UIDs narrow the search)."""
    _check_accept(request)
    pairs: list[tuple[str, str]] = []
    for key, value in request.query_params.multi_items():
        if key.lower() in _RESERVED:
            continue
        pairs.append((key, value))
    if "study" in request.path_params:
        pairs.append(("StudyInstanceUID", uid_param(request, "study")))
    if "series" in request.path_params:
        pairs.append(("SeriesInstanceUID", uid_param(request, "series")))
    fuzzy_raw = request.query_params.get("fuzzymatching", "false").strip().lower()
    if fuzzy_raw not in ("true", "false"):
        raise HTTPError(400, "fuzzymatching must be true or false")
    principal = require(request, Action.QUERY, archive)
    q = scoped_query(principal, archive.parse_qido(level, pairs, fuzzy=fuzzy_raw == "true"))
    extra, _tags, everything = _include_fields(request, level)
    limit = _int_param(request, "limit")
    offset = _int_param(request, "offset") or 0
    cap = archive.settings.qido_max_results
    take = cap if not limit else min(limit, cap)

    def run() -> tuple[list[dict[str, Any]], bool]:
        found = list(archive.find(q, limit=take + 1, offset=offset, defaults=True, extra_keys=extra,
                                  whole_header=everything))
        return visible_results(archive, principal, found[:take]), len(found) > take

    results, more = await run_in_threadpool(run)
    archive.auditor.query(principal.name, client_of(request), f"{request.url.path}?{request.url.query}")
    base = base_url(request)
    for item in results:
        url = _retrieve_url(base, level, item)
        if url:
            item["00081190"] = {"vr": "UR", "Value": [url]}
    headers = {}
    if more and (not limit or limit > cap):
        headers["Warning"] = ('299 vesalius "The number of results exceeded the maximum supported '
                              'by the server. Additional results can be requested."')
    return Response(json_bytes(results), media_type=DICOM_JSON, headers=headers)

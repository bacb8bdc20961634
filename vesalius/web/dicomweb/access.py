"""DICOMweb's calls to the access-policy point (:mod:`vesalius.security.policy`).

Role-level refusals are 403; a study the caller may not see is answered 404, as if it were
not there, so its existence is not disclosed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from vesalius.archive import Archive
from vesalius.security.identity import Principal
from vesalius.security.policy import Action, allowed, decide, must_deidentify, scope_conditions
from vesalius.web.auth import principal_of
from vesalius.web.dicomweb.common import HTTPError


def needs_study_check(p: Principal) -> bool:
    """Whether the caller's access depends on the study (scopes, or referring-only)."""
    if "admin" in p.roles:
        return False
    if p.institutions or p.departments or p.issuers:
        return True
    return not (p.roles & {"radiologist", "technologist"})


def client_of(request: Request) -> str:
    return request.client.host if request.client else ""


def _refuse(request: Request, archive: Archive | None, p: Principal, status: int, message: str) -> HTTPError:
    if archive is not None:
        archive.auditor.alert(p.name, client_of(request), message, subject=str(request.url.path)[:256])
    return HTTPError(status, message)


def require(request: Request, action: Action, archive: Archive | None = None) -> Principal:
    p = principal_of(request)
    if not allowed(p, action):
        raise _refuse(request, archive, p, 403,
                      f"your roles ({', '.join(sorted(p.roles)) or 'none'}) do not allow {action.value}")
    if must_deidentify(p) and action in (Action.QUERY, Action.RETRIEVE, Action.STORE, Action.DELETE):
        raise _refuse(request, archive, p, 403,
                      "the researcher role gets de-identified data only, through the de-identified "
                      "export; it has no access to identified studies")
    return p


def _shared(archive: Archive, p: Principal) -> Callable[[], set[str]]:
    return lambda: archive.identities.shared_studies(p.name)


async def require_study(request: Request, archive: Archive, action: Action, study_uid: str) -> Principal:
    """The caller may do ``action`` on this study, or HTTPError 403/404."""
    p = require(request, action, archive)
    if needs_study_check(p):
        facts = await run_in_threadpool(archive.study_facts, study_uid)
        if facts is None or not await run_in_threadpool(decide, p, action, facts, _shared(archive, p)):
            if facts is not None:
                archive.auditor.alert(p.name, client_of(request), f"{action.value} of a study outside the "
                                      "caller's access refused", subject=study_uid)
            raise HTTPError(404, "the study is not in the archive")
    if action == Action.RETRIEVE:
        archive.auditor.accessed(p.name, client_of(request), study_uid, "R")
    return p


def scoped_query(p: Principal, q: Any) -> Any:
    """Add the caller's scopes to a query's matching keys."""
    q.conditions.extend(scope_conditions(p))
    return q


def visible_results(archive: Archive, p: Principal, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop answers from studies the caller may not see (the referring rule; scopes are
    already matching keys of the query)."""
    if p.roles & {"admin", "radiologist", "technologist"}:
        return results
    seen: dict[str, bool] = {}
    shared = _shared(archive, p)
    out = []
    for item in results:
        uid = str((item.get("0020000D", {}).get("Value") or [""])[0])
        if uid not in seen:
            facts = archive.study_facts(uid)
            seen[uid] = facts is not None and decide(p, Action.QUERY, facts, shared)
        if seen[uid]:
            out.append(item)
    return out

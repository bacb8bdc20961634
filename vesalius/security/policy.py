"""The access-policy point: one decision for every interface (HIPAA 164.312(a)(1)).

QIDO/WADO/STOW/DELETE, C-FIND/C-MOVE/C-GET/C-STORE and CLI exports all ask here, so a
user sees in a search exactly what they may open. Roles grant actions; scopes (institution,
department, issuer of patient ID) and the ``referring`` rule narrow which studies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum

from vesalius.dicom.matching import Condition, Kind, normalize_name, pn_groups
from vesalius.security.identity import Principal


class Action(StrEnum):
    """What a caller wants to do."""

    ECHO = "echo"
    QUERY = "query"  # QIDO-RS, C-FIND
    RETRIEVE = "retrieve"  # WADO-RS/URI, C-MOVE, C-GET, viewer
    STORE = "store"  # STOW-RS, C-STORE
    DELETE = "delete"
    EXPORT = "export"  # CLI exports, de-identified exports
    AUDIT = "audit"  # read the audit trail
    ADMIN = "admin"  # users, keys, configuration


_ALL = frozenset(Action)
ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    "admin": _ALL,
    "radiologist": frozenset({Action.ECHO, Action.QUERY, Action.RETRIEVE, Action.STORE, Action.EXPORT}),
    "technologist": frozenset({Action.ECHO, Action.QUERY, Action.RETRIEVE, Action.STORE}),
    "referring": frozenset({Action.ECHO, Action.QUERY, Action.RETRIEVE}),
    "auditor": frozenset({Action.AUDIT}),
    "researcher": frozenset({Action.ECHO, Action.QUERY, Action.RETRIEVE, Action.EXPORT}),
}
#: Roles whose every study is visible within their scopes.
_FULL_READERS = frozenset({"admin", "radiologist", "technologist", "researcher"})


def allowed(principal: Principal, action: Action) -> bool:
    """Whether any of the caller's roles grants ``action``."""
    return any(action in ROLE_ACTIONS.get(r, frozenset()) for r in principal.roles)


def must_deidentify(principal: Principal) -> bool:
    """Researchers get de-identified data only (unless they also hold a clinical role)."""
    return "researcher" in principal.roles and not (principal.roles & {"admin", "radiologist", "technologist"})


def scope_conditions(principal: Principal) -> list[Condition]:
    """Matching keys to add to every query of this caller (ANDed with the caller's own)."""
    if "admin" in principal.roles:
        return []
    out = []
    for keyword, vr, values in (("InstitutionName", "LO", principal.institutions),
                                ("InstitutionalDepartmentName", "LO", principal.departments),
                                ("IssuerOfPatientID", "LO", principal.issuers)):
        if values:
            out.append(Condition(keyword, vr, Kind.LIST if len(values) > 1 else Kind.SINGLE, tuple(values)))
    return out


def _same_person(a: str, b: str) -> bool:
    """Same family and given name (PS3.5 6.2: prefixes, suffixes and middle names aside)."""
    if not a or not b:
        return False

    def key(pn: str) -> tuple[str, ...]:
        parts = normalize_name(pn_groups(pn)[0]).split("^")
        return tuple(p.strip() for p in (parts + ["", ""])[:2])

    return key(a) == key(b) and key(a)[0] != ""


def study_visible(principal: Principal, study: Mapping[str, str],
                  shared: Callable[[], set[str]] | None = None) -> bool:
    """Whether the caller may see the study described by ``study`` (keywords -> values:
    StudyInstanceUID, ReferringPhysicianName, InstitutionName, InstitutionalDepartmentName,
    IssuerOfPatientID)."""
    if "admin" in principal.roles:
        return True
    for keyword, values in (("InstitutionName", principal.institutions),
                            ("InstitutionalDepartmentName", principal.departments),
                            ("IssuerOfPatientID", principal.issuers)):
        if values and study.get(keyword, "") not in values:
            return False
    if principal.roles & _FULL_READERS:
        return True
    if "referring" in principal.roles:
        if _same_person(principal.person_name, study.get("ReferringPhysicianName", "")):
            return True
        return shared is not None and study.get("StudyInstanceUID", "") in shared()
    return False


def decide(principal: Principal, action: Action, study: Mapping[str, str] | None = None,
           shared: Callable[[], set[str]] | None = None) -> bool:
    """The one decision: may ``principal`` do ``action`` (on ``study``, when given)?"""
    if not allowed(principal, action):
        return False
    if study is None or action in (Action.ECHO, Action.AUDIT, Action.ADMIN):
        return True
    # storing into a scope the caller does not belong to is refused like reading from it
    return study_visible(principal, study, shared)

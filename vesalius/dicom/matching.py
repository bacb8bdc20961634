"""Attribute matching for C-FIND and QIDO-RS (PS3.4 C.2.2.2, PS3.18 8.3.4).

A query is parsed once into :class:`Condition` objects; the index turns those on indexed
columns into SQL, and :func:`matches` evaluates any condition in Python (for keys that only
live in the header JSON, and to re-check case-sensitive wildcards). Both use the same
definitions below, so DIMSE and DICOMweb match identically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from vesalius.dicom.keys import ENVELOPE, Level, keyword_of, level_of, level_of_identifier
from vesalius.errors import QueryError


class Kind(StrEnum):
    """The matching types of PS3.4 C.2.2.2."""

    SINGLE = "single"  # C.2.2.2.1 single value matching
    LIST = "list"  # C.2.2.2.2 list of UID matching (and multi-valued single values)
    UNIVERSAL = "universal"  # C.2.2.2.3
    WILDCARD = "wildcard"  # C.2.2.2.4
    RANGE = "range"  # C.2.2.2.5
    SEQUENCE = "sequence"  # C.2.2.2.6


DATE_VRS = frozenset({"DA", "TM", "DT"})
NO_WILDCARD_VRS = frozenset({"DA", "TM", "DT", "UI", "SL", "SS", "UL", "US", "FL", "FD", "OB", "OW",
                             "UN", "AT", "OD", "OF", "OL", "OV", "SV", "UV", "IS", "DS"})
_DATE_RE = re.compile(r"^\d{8}$")
_TIME_RE = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")


@dataclass(frozen=True)
class Condition:
    """One matching key of a query."""

    keyword: str
    vr: str
    kind: Kind
    values: tuple[str, ...] = ()  # SINGLE/WILDCARD: one value; LIST: several
    low: str | None = None  # RANGE bounds (inclusive); None is open
    high: str | None = None
    items: tuple[tuple[Condition, ...], ...] = ()  # SEQUENCE: conditions of the query item

    @property
    def level(self) -> Level:
        return level_of(self.keyword)


@dataclass
class Query:
    """A parsed query: the level, the conditions and the keys to return."""

    level: Level
    conditions: list[Condition] = field(default_factory=list)
    return_keys: list[str] = field(default_factory=list)  # keywords, in request order
    return_tags: list[int] = field(default_factory=list)  # tags with no keyword (private)
    case_insensitive_names: bool = True
    fuzzy: bool = False

    def condition(self, keyword: str) -> Condition | None:
        for c in self.conditions:
            if c.keyword == keyword:
                return c
        return None


def _norm_date(value: str, vr: str) -> str:
    v = value.strip()
    if vr == "DA":
        v = v.replace(".", "")  # ACR-NEMA style yyyy.mm.dd
        if not _DATE_RE.match(v):
            raise QueryError(f"{value!r} is not a DA value (YYYYMMDD)")
    elif vr == "TM":
        v = v.replace(":", "")
        if not _TIME_RE.match(v):
            raise QueryError(f"{value!r} is not a TM value (HHMMSS.FFFFFF)")
    return v


def condition_from_value(keyword: str, vr: str, raw: Any) -> Condition:
    """Build the condition for one identifier element value (already decoded to str)."""
    if raw is None:
        return Condition(keyword, vr, Kind.UNIVERSAL)
    if isinstance(raw, (list, tuple, MultiValue)):
        vals = [str(v).strip() for v in raw]
    else:
        text = str(raw)
        vals = [v.strip() for v in text.split("\\")] if "\\" in text else [text.strip()]
    vals = [v for v in vals if v != ""]
    if not vals:
        return Condition(keyword, vr, Kind.UNIVERSAL)
    if len(vals) > 1:
        if vr in DATE_VRS:
            raise QueryError(f"{keyword}: multiple values are not allowed for {vr}")
        return Condition(keyword, vr, Kind.LIST, tuple(vals))
    v = vals[0]
    if vr in DATE_VRS and "-" in v:
        lo, _, hi = v.partition("-")
        low = _norm_date(lo, vr) if lo.strip() else None
        high = _norm_date(hi, vr) if hi.strip() else None
        if low is None and high is None:
            return Condition(keyword, vr, Kind.UNIVERSAL)
        if vr == "TM" and high is not None:
            high = _pad_time_high(high)
        return Condition(keyword, vr, Kind.RANGE, low=low, high=high)
    if vr in DATE_VRS:
        if v == "*":
            return Condition(keyword, vr, Kind.UNIVERSAL)
        nv = _norm_date(v, vr)
        if vr == "TM":  # a time matches at its own precision: 10 matches 10xxxx
            return Condition(keyword, vr, Kind.RANGE, low=nv, high=_pad_time_high(nv))
        return Condition(keyword, vr, Kind.SINGLE, (nv,))
    if vr not in NO_WILDCARD_VRS and ("*" in v or "?" in v):
        if set(v) == {"*"}:
            return Condition(keyword, vr, Kind.UNIVERSAL)
        return Condition(keyword, vr, Kind.WILDCARD, (v,))
    return Condition(keyword, vr, Kind.SINGLE, (v,))


def _pad_time_high(t: str) -> str:
    """The highest time value with prefix ``t`` (so 1030 covers up to 103059.999999)."""
    base, _, frac = t.partition(".")
    base = base + "9" * (6 - len(base))
    return f"{base}.{(frac + '999999')[:6]}"


def parse_identifier(identifier: Dataset, *, level: Level | None = None,
                     case_insensitive_names: bool = True) -> Query:
    """Parse a C-FIND identifier (PS3.4 C.4.1.1.3) into a :class:`Query`.

    Every element present is a return key; those with a value are matching keys.
    """
    if level is None:
        level = level_of_identifier(identifier)
    q = Query(level=level, case_insensitive_names=case_insensitive_names)
    for elem in identifier:
        kw = elem.keyword or keyword_of(elem.tag)
        if kw in ENVELOPE or elem.tag.group in (0x0000, 0x0002):
            continue
        if not kw:
            q.return_tags.append(int(elem.tag))
            continue
        q.return_keys.append(kw)
        if elem.VR == "SQ":
            items = []
            for item in elem.value or []:
                sub = parse_identifier(item, level=level, case_insensitive_names=case_insensitive_names)
                items.append(tuple(c for c in sub.conditions))
            if any(items):
                q.conditions.append(Condition(kw, "SQ", Kind.SEQUENCE, items=tuple(items)))
            continue
        try:
            value = elem.value
        except Exception:
            raise QueryError(f"{kw}: value cannot be decoded") from None
        if value is None or value == "" or (isinstance(value, (list, MultiValue)) and len(value) == 0):
            continue
        if elem.VR == "PN":
            value = str(value)
        elif elem.VR in ("IS", "DS", "US", "SS", "UL", "SL", "FL", "FD"):
            value = [str(v) for v in value] if isinstance(value, (list, MultiValue)) else str(value)
        c = condition_from_value(kw, elem.VR, value)
        if c.kind != Kind.UNIVERSAL:
            q.conditions.append(c)
    return q


# --------------------------------------------------------------------------- Python matching


def wildcard_regex(pattern: str, case_insensitive: bool) -> re.Pattern[str]:
    """Translate a DICOM wildcard (``*`` any run, ``?`` one character) into a regex."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("^" + "".join(out) + "$", re.DOTALL | (re.IGNORECASE if case_insensitive else 0))


def normalize_name(value: str) -> str:
    """Case-folded person name used for case-insensitive PN matching (PS3.4 C.2.2.2.1)."""
    return value.strip().upper()


def pn_groups(value: str) -> list[str]:
    """The alphabetic, ideographic and phonetic component groups of a PN (PS3.5 6.2)."""
    groups = value.split("=")
    return [g.rstrip("^ ") for g in groups] + [""] * (3 - len(groups))


def _value_matches(c: Condition, stored: str, case_insensitive: bool) -> bool:
    if c.vr == "PN":
        stored_groups = pn_groups(stored)
        for v in c.values:
            if "=" in v:  # component groups given: each non-empty one must match its own
                qg = pn_groups(v)
                if any(qg) and all(not q or wildcard_regex(q, case_insensitive).match(sg)
                                   for q, sg in zip(qg, stored_groups, strict=False)):
                    return True
            else:  # no groups given: any group may match
                rx = wildcard_regex(v.rstrip("^ "), case_insensitive)
                if any(rx.match(g) for g in stored_groups if g):
                    return True
        return False
    s = stored.strip()
    if c.kind == Kind.RANGE:
        if c.vr == "TM":
            s = s.replace(":", "")
        if not s:
            return False
        if c.low is not None and s < c.low:
            return False
        return not (c.high is not None and s[: len(c.high)] > c.high)
    if c.kind == Kind.WILDCARD:
        return bool(wildcard_regex(c.values[0], False).match(s))
    if c.kind in (Kind.SINGLE, Kind.LIST):
        if c.vr in DATE_VRS:
            s = s.replace(".", "").replace(":", "")
        if c.vr in ("IS", "DS"):
            try:
                return any(float(s) == float(v) for v in c.values)
            except ValueError:
                return False
        return s in c.values
    return True


def matches(c: Condition, stored: Any, case_insensitive_names: bool = True) -> bool:
    """Whether a stored attribute value satisfies condition ``c``.

    ``stored`` is a str, a list of str (multi-valued: any value may match, as for
    ModalitiesInStudy), a list of dicts (sequence items as DICOM JSON keyword maps) or None.
    """
    if c.kind == Kind.UNIVERSAL:
        return True
    if c.kind == Kind.SEQUENCE:
        if not isinstance(stored, list):
            return False
        for q_item in c.items:
            if not any(all(matches(sub, item.get(sub.keyword), case_insensitive_names) for sub in q_item)
                       for item in stored if isinstance(item, dict)):
                return False
        return True
    if stored is None:
        return False
    if isinstance(stored, (list, tuple)):
        return any(matches(c, v, case_insensitive_names) for v in stored)
    return _value_matches(c, str(stored), case_insensitive_names)


# --------------------------------------------------------------------------- QIDO-RS

#: VRs whose QIDO-RS values may list several values separated by commas (PS3.18 8.3.4.1).
_COMMA_LIST_VRS = frozenset({"UI", "CS", "AE"})


def resolve_attribute(name: str) -> tuple[str, int, str]:
    """Keyword, tag and VR of a QIDO-RS attribute given as a keyword or 8 hex digits."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    text = name.strip()
    tag: int | None
    if len(text) == 8 and all(ch in "0123456789abcdefABCDEF" for ch in text):
        tag = int(text, 16)
    else:
        found = tag_for_keyword(text)
        tag = int(found) if found is not None else None
    kw = keyword_of(tag) if tag is not None else ""
    if tag is None or not kw:
        raise QueryError(f"unknown attribute {text[:64]!r} (use a DICOM keyword or an 8-digit tag)")
    return kw, tag, str(dictionary_VR(tag)).split(" ")[0]


def query_from_pairs(level: Level, pairs: list[tuple[str, str]], *, case_insensitive_names: bool = True,
                     fuzzy: bool = False) -> Query:
    """Build a query from QIDO-RS ``{attributeID}={value}`` pairs (PS3.18 8.3.4.1).

    Attribute IDs are keywords or tags, or dotted paths into a sequence
    (``ReferencedSeriesSequence.SeriesInstanceUID``). A key given twice lists values.
    With ``fuzzy`` (``fuzzymatching=true``), a person name without wildcards matches names
    that begin with it, ignoring case (PS3.18 8.3.4.4 leaves the method to the server).
    """
    q = Query(level=level, case_insensitive_names=case_insensitive_names or fuzzy, fuzzy=fuzzy)
    values: dict[tuple[str, ...], list[str]] = {}
    vrs: dict[tuple[str, ...], str] = {}
    for key, value in pairs:
        path = tuple(resolve_attribute(p)[0] for p in key.split("."))
        *outer, last = path
        for kw in outer:
            if resolve_attribute(kw)[2] != "SQ":
                raise QueryError(f"{kw} is not a sequence; only sequences take a dotted path")
        vr = resolve_attribute(last)[2]
        if vr == "SQ":
            raise QueryError(f"{last} is a sequence: name an attribute inside it ({last}.Keyword=value)")
        items = [v for v in value.split(",")] if vr in _COMMA_LIST_VRS else [value]
        values.setdefault(path, []).extend(items)
        vrs[path] = vr
    for path, vals in values.items():
        if path[0] in ENVELOPE:
            continue
        if path[0] not in q.return_keys:
            q.return_keys.append(path[0])
        joined = "\\".join(v for v in vals if v.strip()) or None
        c = condition_from_value(path[-1], vrs[path], joined)
        if c.kind == Kind.UNIVERSAL:
            continue
        if fuzzy and c.vr == "PN" and c.kind == Kind.SINGLE and "=" not in c.values[0]:
            c = Condition(c.keyword, c.vr, Kind.WILDCARD, (c.values[0].rstrip("^ ") + "*",))
        for outer_kw in reversed(path[:-1]):
            c = Condition(outer_kw, "SQ", Kind.SEQUENCE, items=((c,),))
        q.conditions.append(c)
    return q

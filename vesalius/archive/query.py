"""Query: C-FIND (PS3.4 C.4.1) and QIDO-RS (PS3.18 10.6) answers from the index.

Each match becomes a DICOM JSON object (PS3.18 F.2) holding the requested return keys;
DIMSE turns it into a data set, DICOMweb sends it as it is.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from vesalius.dicom.keys import DEFAULT_RETURN, KEYS, UNIQUE_KEY, Key, Level, tag_of
from vesalius.dicom.matching import Query
from vesalius.index.query import IndexReader, Match

_NUMERIC_STRING = frozenset({"IS", "DS"})


def _pn_json(value: str) -> dict[str, str]:
    groups = (value.split("=") + ["", ""])[:3]
    out = {}
    for name, g in zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=True):
        if g:
            out[name] = g
    return out


def _column_json(keyword: str, m: Match) -> dict[str, Any] | None:
    key = KEYS.get(keyword)
    if key is None or key.level.depth > m.level.depth:
        return None
    vr = key.vr
    if keyword == "ModalitiesInStudy":
        vals = [v for v in str(m.study.get("modalities", "")).split("\\") if v]
        return {"vr": vr, "Value": vals} if vals else {"vr": vr}
    if keyword == "SOPClassesInStudy":
        vals = [v for v in str(m.study.get("sop_classes", "")).split("\\") if v]
        return {"vr": vr, "Value": vals} if vals else {"vr": vr}
    if keyword == "AvailableTransferSyntaxUID":
        return {"vr": vr, "Value": [m.instance["transfer_syntax"]]}
    if key.column is None:
        return None
    row = m.row(key.level)
    value = row.get(key.column)
    if value is None or value == "":
        return {"vr": vr}
    if vr == "PN":
        pn = _pn_json(str(value))
        return {"vr": vr, "Value": [pn]} if pn else {"vr": vr}
    if vr in _NUMERIC_STRING or vr in ("US", "UL", "SS", "SL"):
        try:
            return {"vr": vr, "Value": [int(value)]}
        except (TypeError, ValueError):
            return {"vr": vr}
    return {"vr": vr, "Value": [str(value)]}


class QueryService:
    """Answers queries with DICOM JSON objects."""

    def __init__(self, reader: IndexReader, retrieve_ae: str) -> None:
        self.reader = reader
        self.retrieve_ae = retrieve_ae

    def search(self, q: Query, *, limit: int | None = None, offset: int = 0,
               extra_keys: tuple[str, ...] = (), defaults: bool = False,
               whole_header: bool = False) -> Iterator[dict[str, Any]]:
        """Yield one DICOM JSON object per match, holding the return keys of ``q``.

        ``whole_header`` (QIDO-RS ``includefield=all`` at instance level) adds every
        attribute of the stored header except bulk data.
        """
        keys: list[str] = list(q.return_keys)
        if defaults:
            for kw in DEFAULT_RETURN[q.level]:
                if kw not in keys:
                    keys.append(kw)
        for kw in extra_keys:
            if kw not in keys:
                keys.append(kw)
        # The unique keys of this level and above are always returned (PS3.4 C.4.1.2.3.1).
        for lv in Level:
            if lv.depth <= q.level.depth and UNIQUE_KEY[lv] not in keys and lv != Level.PATIENT:
                keys.append(UNIQUE_KEY[lv])
        header_keys = [kw for kw in keys if _needs_header(kw, q.level)]
        whole = whole_header and q.level == Level.IMAGE
        need = bool(header_keys or q.return_tags or whole)
        for m in self.reader.find(q, limit=limit, offset=offset, need_header=need):
            out = self.to_json(m, keys, q.return_tags)
            if whole:
                for tag, el in (m._header or {}).items():
                    if "BulkDataURI" not in el:
                        out.setdefault(tag, el)
                out = dict(sorted(out.items()))
            yield out

    def to_json(self, m: Match, keys: list[str], tags: list[int]) -> dict[str, Any]:
        """The DICOM JSON answer for one match, holding ``keys`` and ``tags``."""
        out: dict[str, Any] = {}
        header = m._header
        depth = m.level.depth
        for kw in keys:
            plan = _plan(kw)
            if plan is None:
                continue
            hx, key, tag = plan
            if key is not None and key.level.depth > depth:
                continue  # an attribute of a lower level has no single value here
            el = _column_json(kw, m) if key is not None else None
            if el is None:
                if header is None:
                    header = self.reader.header_for(m)
                el = (header or {}).get(hx)
                if el is None:
                    try:
                        el = {"vr": dictionary_VR(tag)}
                    except KeyError:
                        continue
            out[hx] = el
        for tag in tags:
            if header is None:
                header = self.reader.header_for(m)
            el = (header or {}).get(f"{tag:08X}")
            if el is not None:
                out[f"{tag:08X}"] = el
        out["00080054"] = {"vr": "AE", "Value": [self.retrieve_ae]}  # RetrieveAETitle
        out["00080056"] = {"vr": "CS", "Value": ["ONLINE"]}  # InstanceAvailability
        charset = (m.instance.get("charset") if m.level == Level.IMAGE else m.study.get("charset")) or ""
        if charset:
            out["00080005"] = {"vr": "CS", "Value": charset.split("\\")}
        return dict(sorted(out.items()))


@functools.lru_cache(maxsize=4096)
def _plan(keyword: str) -> tuple[str, Key | None, int] | None:
    """(tag as 8 hex digits, index key or None, tag) of a return keyword, worked out once."""
    tag = tag_of(keyword)
    if tag is None:
        return None
    return f"{tag:08X}", KEYS.get(keyword), tag


def _needs_header(keyword: str, level: Level) -> bool:
    key = KEYS.get(keyword)
    if key is None:
        return keyword_for_tag(tag_for_keyword(keyword) or 0) != ""
    return key.column is None and not key.computed

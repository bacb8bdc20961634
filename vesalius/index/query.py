"""The index's read side: C-FIND / QIDO-RS matching in SQL (PS3.4 C.2.2.2).

Conditions on indexed columns become SQL; wildcard and case-sensitive name conditions get
an index-friendly SQL superset (prefix range + LIKE) and are re-checked exactly in Python
with :func:`vesalius.dicom.matching.matches`, as are keys that live only in the header
JSON. One implementation serves DIMSE and DICOMweb.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select, union_all
from sqlalchemy.engine import Engine

from vesalius.dicom.keys import KEYS, Level
from vesalius.dicom.matching import Condition, Kind, Query, matches, normalize_name, pn_groups
from vesalius.dicom.record import decode_header
from vesalius.index.models import instances, patients, series, studies

_TABLES = {Level.PATIENT: patients, Level.STUDY: studies, Level.SERIES: series, Level.IMAGE: instances}
_INT_COLUMNS = frozenset({"series_number", "instance_number", "number_of_frames", "num_studies",
                          "num_series", "num_instances"})


@dataclass
class Match:
    """One matching entity with the index columns of it and of its parents."""

    level: Level
    patient: dict[str, Any]
    study: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Any] = field(default_factory=dict)
    instance: dict[str, Any] = field(default_factory=dict)
    _header: dict[str, Any] | None = None

    def row(self, level: Level) -> dict[str, Any]:
        if level == "STUDY":
            return self.study
        if level == "PATIENT":
            return self.patient
        if level == "SERIES":
            return self.series
        return self.instance


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like_pattern(wild: str) -> str:
    return _like_escape(wild).replace("*", "%").replace("?", "_")


def _literal_prefix(wild: str) -> str:
    out = []
    for ch in wild:
        if ch in "*?":
            break
        out.append(ch)
    return "".join(out)


def _wild_sql(col: Any, pattern: str) -> ColumnElement[bool]:
    """LIKE for a wildcard, plus a prefix range the B-tree index can use."""
    cond: ColumnElement[bool] = col.like(_like_pattern(pattern), escape="\\")
    prefix = _literal_prefix(pattern)
    if prefix:
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        cond = and_(col >= prefix, col < upper, cond)
    return cond


def _pn_sql(c: Condition, ci: bool) -> ColumnElement[bool]:
    """Patient name conditions against the three component-group columns."""
    parts = []
    for v in c.values:
        groups = pn_groups(v) if "=" in v else None
        if groups is not None:
            alpha, ideo, phon = (g.rstrip("^ ") for g in groups[:3])
            sub = []
            for col, val, norm in ((patients.c.pn_alpha, alpha, True), (patients.c.pn_ideo, ideo, False),
                                   (patients.c.pn_phon, phon, False)):
                if val:
                    val = normalize_name(val) if norm else val
                    sub.append(_wild_sql(col, val) if ("*" in val or "?" in val) else col == val)
            parts.append(and_(*sub) if sub else false())
            continue
        val = v.rstrip("^ ")
        alpha = normalize_name(val)
        wild = "*" in val or "?" in val
        # Any group may match: one indexed look-up per group column, united, so neither
        # SQLite nor PostgreSQL falls back to scanning every patient for the OR.
        lookups = [
            select(patients.c.pk).where(_wild_sql(col, text) if wild else col == text)
            for col, text in ((patients.c.pn_alpha, alpha), (patients.c.pn_ideo, val), (patients.c.pn_phon, val))
        ]
        parts.append(patients.c.pk.in_(union_all(*lookups)))
    return or_(*parts)


def _int_values(values: tuple[str, ...]) -> list[int]:
    out = []
    for v in values:
        try:
            out.append(int(float(v)))
        except ValueError:
            continue
    return out


def _condition_sql(c: Condition, ci: bool) -> tuple[ColumnElement[bool] | None, bool]:
    """SQL for condition ``c`` and whether it is exact (no Python re-check needed)."""
    key = KEYS.get(c.keyword)
    if key is None or key.column is None or c.kind == Kind.SEQUENCE:
        return None, False
    table = _TABLES[key.level]
    if c.keyword == "PatientName":
        return _pn_sql(c, ci), False
    if c.keyword == "ModalitiesInStudy":
        if c.kind in (Kind.SINGLE, Kind.LIST):
            bs = "\\\\"  # an escaped backslash in the LIKE pattern
            return or_(*[studies.c.modalities.like(f"%{bs}{_like_escape(v)}{bs}%", escape="\\")
                         for v in c.values]), False
        return None, False
    if c.keyword == "AvailableTransferSyntaxUID":
        return None, False
    col = table.c[key.column]
    if key.column in _INT_COLUMNS:
        ints = _int_values(c.values)
        if c.kind in (Kind.SINGLE, Kind.LIST):
            return (col.in_(ints) if ints else false()), True
        return None, False
    if c.kind == Kind.SINGLE:
        if c.vr == "PN":
            return func.upper(col) == normalize_name(c.values[0]), False
        return col == c.values[0], c.vr in ("UI", "DA", "CS", "SH", "LO", "AE")
    if c.kind == Kind.LIST:
        return col.in_(list(c.values)), c.vr in ("UI", "CS", "SH", "LO", "AE")
    if c.kind == Kind.WILDCARD:
        if c.vr == "PN":
            return func.upper(col).like(_like_pattern(normalize_name(c.values[0])), escape="\\"), False
        return _wild_sql(col, c.values[0]), False
    if c.kind == Kind.RANGE:
        parts: list[ColumnElement[bool]] = [col != ""]
        if c.low is not None:
            parts.append(col >= c.low)
        if c.high is not None:
            parts.append(col <= c.high)
        return and_(*parts), c.vr == "DA"
    return None, False


def stored_value(m: Match, keyword: str, header: dict[str, Any] | None) -> Any:
    """The stored value of ``keyword`` for match ``m``, as matching compares it."""
    key = KEYS.get(keyword)
    if key is not None and key.column is not None and key.level.depth <= m.level.depth:
        row = m.row(key.level)
        if keyword == "PatientName":
            return row.get("patient_name", "")
        if keyword == "ModalitiesInStudy":
            return [v for v in str(row.get("modalities", "")).split("\\") if v]
        v = row.get(key.column)
        return "" if v is None else str(v)
    if header is None:
        return None
    return json_value(header, keyword)


def json_value(header: dict[str, Any], keyword: str) -> Any:
    """A value from DICOM JSON in the shape :func:`matches` expects."""
    tag = KEYS[keyword].tag if keyword in KEYS else _tag(keyword)
    if tag is None:
        return None
    el = header.get(f"{tag:08X}")
    if not el:
        return None
    if el.get("vr") == "SQ":
        items = []
        for item in el.get("Value", []) or []:
            flat = {}
            for t, sub in item.items():
                from pydicom.datadict import keyword_for_tag

                kw = keyword_for_tag(int(t, 16))
                if kw:
                    flat[kw] = _flat(sub)
            items.append(flat)
        return items
    return _flat(el)


def _tag(keyword: str) -> int | None:
    from pydicom.datadict import tag_for_keyword

    t = tag_for_keyword(keyword)
    return int(t) if t is not None else None


def _flat(el: dict[str, Any]) -> Any:
    vals = el.get("Value")
    if not vals:
        return ""
    out = []
    for v in vals:
        if isinstance(v, dict):
            out.append("=".join([v.get("Alphabetic", ""), v.get("Ideographic", ""), v.get("Phonetic", "")]).rstrip("="))
        else:
            out.append(str(v))
    return out[0] if len(out) == 1 else out


class IndexReader:
    """Runs queries against the index."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _select(self, q: Query, need_header: bool = False) -> tuple[Select[Any], list[Condition]]:
        level = q.level
        cols: list[Any] = [patients]
        stmt_from: Any = patients
        if level.depth >= Level.STUDY.depth:
            cols.append(studies)
            stmt_from = stmt_from.join(studies, studies.c.patient_pk == patients.c.pk)
        if level.depth >= Level.SERIES.depth:
            cols.append(series)
            stmt_from = stmt_from.join(series, series.c.study_pk == studies.c.pk)
        if level.depth >= Level.IMAGE.depth:
            cols.extend([instances.c.pk, instances.c.sop_uid, instances.c.series_pk, instances.c.study_pk,
                        instances.c.sop_class_uid, instances.c.instance_number, instances.c.number_of_frames,
                        instances.c.transfer_syntax, instances.c.blob_key, instances.c.size,
                        instances.c.charset, instances.c.received_at])
            if need_header:  # one query, not one per match
                cols.append(instances.c.header)
            stmt_from = stmt_from.join(instances, instances.c.series_pk == series.c.pk)
        where: list[ColumnElement[bool]] = []
        recheck: list[Condition] = []
        for c in q.conditions:
            key = KEYS.get(c.keyword)
            if key is not None and key.level.depth > level.depth:
                continue  # keys below the query level are not matched (PS3.4 C.4.1.3.1.1)
            sql, exact = _condition_sql(c, q.case_insensitive_names)
            if sql is not None:
                where.append(sql)
            if not exact:
                recheck.append(c)
        stmt = select(*cols).select_from(stmt_from)
        if where:
            stmt = stmt.where(and_(*where))
        order_col = _TABLES[level].c.pk
        return stmt.order_by(order_col), recheck

    def find(self, q: Query, limit: int | None = None, offset: int = 0,
             need_header: bool = False) -> Iterator[Match]:
        """Yield the matches of ``q`` at its level, in index order."""
        stmt, recheck = self._select(q, need_header and q.level == Level.IMAGE)
        if not recheck and limit is not None:
            stmt = stmt.limit(limit).offset(offset)
        skipped = 0
        produced = 0
        # Columns of the joined tables share names (pk, description, ...): read each table's
        # columns by position, worked out once per statement.
        layout: dict[str, list[tuple[str, int]]] = {"patients": [], "studies": [], "series": [],
                                                    "instances": []}
        header_at = -1
        for i, col in enumerate(stmt.selected_columns):
            table = getattr(col, "table", None)
            name = getattr(table, "name", "")
            if col.name == "header":
                header_at = i
            elif name in layout:
                layout[name].append((col.name, i))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
            for r in rows:
                m = self._match(q.level, r, layout)
                header = None
                if need_header and q.level == Level.IMAGE:
                    header = m._header = decode_header(r[header_at])
                elif need_header or any(KEYS.get(c.keyword) is None or KEYS[c.keyword].column is None
                                      for c in recheck):
                    header = self._header(conn, m)
                    m._header = header
                if recheck and not all(matches(c, stored_value(m, c.keyword, header), q.case_insensitive_names)
                                       for c in recheck):
                    continue
                if recheck and offset and skipped < offset:
                    skipped += 1
                    continue
                yield m
                produced += 1
                if recheck and limit is not None and produced >= limit:
                    return

    def header_for(self, m: Match) -> dict[str, Any] | None:
        if m._header is None:
            with self.engine.connect() as conn:
                m._header = self._header(conn, m)
        return m._header

    @staticmethod
    def _header(conn: Any, m: Match) -> dict[str, Any] | None:
        if m.level == Level.IMAGE:
            stmt = select(instances.c.header).where(instances.c.pk == m.instance["pk"])
        elif m.level == Level.SERIES:
            stmt = select(instances.c.header).where(instances.c.series_pk == m.series["pk"]).order_by(
                instances.c.pk).limit(1)
        elif m.level == Level.STUDY:
            stmt = select(instances.c.header).where(instances.c.study_pk == m.study["pk"]).order_by(
                instances.c.pk).limit(1)
        else:
            stmt = (select(instances.c.header).join(studies, instances.c.study_pk == studies.c.pk)
                    .where(studies.c.patient_pk == m.patient["pk"]).order_by(instances.c.pk).limit(1))
        blob = conn.execute(stmt).scalar()
        return decode_header(blob) if blob else None

    @staticmethod
    def _match(level: Level, r: Any, layout: dict[str, list[tuple[str, int]]]) -> Match:
        m = Match(level=level, patient={name: r[i] for name, i in layout["patients"]})
        if layout["studies"]:
            m.study = {name: r[i] for name, i in layout["studies"]}
        if layout["series"]:
            m.series = {name: r[i] for name, i in layout["series"]}
        if layout["instances"]:
            m.instance = {name: r[i] for name, i in layout["instances"]}
        return m

"""multipart/related bodies (RFC 2387) as PS3.18 8.6.1.2 uses them.

Responses are written part by part as they stream out; request bodies (STOW-RS) are read
with python-multipart's streaming parser, one completed part at a time, so a request is
never held whole in memory.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser

from vesalius.errors import QueryError

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


@dataclass
class MediaRange:
    """One media range of an Accept or Content-Type header with its parameters."""

    type: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    @property
    def subtype(self) -> str:
        """The ``type`` parameter of multipart/related (its root part's media type)."""
        return self.params.get("type", "").lower()

    @property
    def transfer_syntax(self) -> str | None:
        return self.params.get("transfer-syntax")


def _split(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def parse_media_type(text: str) -> MediaRange:
    """Parse ``type/subtype; name=value; ...`` (RFC 9110 8.3.1); raises QueryError if malformed."""
    pieces = _split(text, ";")
    mtype = pieces[0].strip().lower()
    if mtype.count("/") != 1 or not all(_TOKEN.match(p) for p in mtype.split("/")):
        raise QueryError(f"malformed media type {text.strip()[:100]!r}")
    params: dict[str, str] = {}
    q = 1.0
    for p in pieces[1:]:
        if not p.strip():
            continue
        name, eq, value = p.partition("=")
        if not eq:
            raise QueryError(f"malformed media type parameter {p.strip()[:100]!r}")
        name = name.strip().lower()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if name == "q":
            try:
                q = float(value)
            except ValueError:
                raise QueryError(f"malformed quality value {value[:20]!r}") from None
            continue
        params[name] = value if name == "boundary" else value.strip()
    return MediaRange(mtype, params, q)


def parse_accept(header: str | None) -> list[MediaRange]:
    """The media ranges of an Accept header, best first (``*/*`` when there is none)."""
    if not header or not header.strip():
        return [MediaRange("*/*")]
    ranges = [parse_media_type(p) for p in _split(header, ",") if p.strip()]
    ranges = [r for r in ranges if r.q > 0]
    ranges.sort(key=lambda r: -r.q)
    return ranges


class MultipartWriter:
    """Writes the parts of a multipart/related response body."""

    def __init__(self, root_type: str) -> None:
        self.boundary = secrets.token_hex(16)
        self.root_type = root_type

    @property
    def content_type(self) -> str:
        return f'multipart/related; type="{self.root_type}"; boundary={self.boundary}'

    def head(self, content_type: str, extra: str = "") -> bytes:
        """The delimiter and headers that come before a part's body."""
        return (f"--{self.boundary}\r\nContent-Type: {content_type}\r\n{extra}\r\n").encode()

    def part(self, content_type: str, body: bytes, location: str = "") -> bytes:
        extra = f"Content-Location: {location}\r\n" if location else ""
        return self.head(content_type, extra) + body + b"\r\n"

    def close(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode()


@dataclass
class Part:
    """One body part of a request (its body kept as the pieces it arrived in)."""

    headers: dict[str, str]
    pieces: list[bytes] = field(default_factory=list)
    size: int = 0

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def data(self) -> bytes:
        return self.pieces[0] if len(self.pieces) == 1 else b"".join(self.pieces)


class PartTooLarge(QueryError):
    """A body part is larger than the configured limit."""


class MultipartReader:
    """Feeds request chunks to python-multipart and collects each completed part."""

    def __init__(self, boundary: str, max_part_bytes: int) -> None:
        if not boundary or len(boundary) > 70:
            raise QueryError("the multipart boundary is missing or longer than 70 characters (RFC 2046)")
        self.max_part_bytes = max_part_bytes
        self.done: list[Part] = []
        self.finished = False
        self.parts_seen = 0
        self._current: Part | None = None
        self._field = b""
        self._value = b""
        self._error: QueryError | None = None
        self._parser = MultipartParser(boundary.encode("latin-1"), {
            "on_part_begin": self._begin, "on_part_data": self._data, "on_part_end": self._end,
            "on_header_field": self._hfield, "on_header_value": self._hvalue,
            "on_header_end": self._hend, "on_end": self._finish,
        }, max_header_size=16384)

    def _begin(self) -> None:
        self.parts_seen += 1
        self._current = Part({})

    def _hfield(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _hvalue(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _hend(self) -> None:
        if self._current is not None:
            self._current.headers[self._field.decode("latin-1").strip().lower()] = \
                self._value.decode("latin-1").strip()
        self._field = self._value = b""

    def _data(self, data: bytes, start: int, end: int) -> None:
        cur = self._current
        if cur is None:
            return
        if cur.size + (end - start) > self.max_part_bytes:
            self._error = PartTooLarge(f"a body part is larger than {self.max_part_bytes} bytes")
            return
        cur.pieces.append(bytes(data[start:end]))
        cur.size += end - start

    def _end(self) -> None:
        if self._current is not None and self._error is None:
            self.done.append(self._current)
        self._current = None

    def _finish(self) -> None:
        self.finished = True

    def feed(self, chunk: bytes) -> list[Part]:
        """Parse ``chunk``; return the parts it completed."""
        try:
            self._parser.write(chunk)
        except QueryError:
            raise
        except Exception as exc:
            raise QueryError(f"malformed multipart body ({exc})") from None
        if self._error is not None:
            raise self._error
        parts, self.done = self.done, []
        return parts

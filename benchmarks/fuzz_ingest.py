"""Fuzz the ingest path: ``parse_part10`` -> ``make_record`` and ``Ingestor.ingest`` itself.

A seeded, mutational fuzzer over realistic seeds (a small generated CT series, pydicom's
``CT_small``, ``MR_small_RLE``, ``examples_ybr_color``, a deflated file, an SR, ...). Each
input is one seed with 1-4 structure-aware mutations stacked on it:

- byte flips and interesting bytes, truncations, chunk insert / duplicate / delete / splice;
- element length fields set to 0, odd, off-by-one, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFF0, ...;
- VR swaps (short <-> long header forms, garbage VRs);
- sequence bombs: deep nesting (up to 20000 levels) with and without delimiters, defined
  lengths, and very wide sequences;
- deflate: the data set re-deflated, corrupt or truncated deflate streams, and decompression
  bombs (up to ``--max-bomb-mib`` inflated), with correct, missing or lying group lengths and
  a long file meta pushing the Transfer Syntax UID further in;
- huge Rows / Columns / Number of Frames / Bits Allocated with short pixel data;
- Transfer Syntax swaps, UID / text / charset garbage, random bytes after a valid preamble.

Every input goes to two targets:

1. ``parse_part10`` and, if it accepts, ``make_record``: ``parse_part10`` may only return or
   raise ``InvalidDicom``; anything else is a **crash**. ``make_record`` exceptions are
   reported but are not crashes (``Ingestor.ingest`` turns them into 0xC000), unless
   ``--strict-record``.
2. ``Ingestor.ingest`` of an archive with a MemoryStore and a SQLite index (recreated every
   ``--reopen-every`` inputs): **any** exception escaping it is a crash. An object refused
   by the parser must be answered 0xC000 and leave nothing in storage; at each reopen every
   stored object must be referenced by the index and vice versa.

Memory: tracemalloc peak per input (above what was allocated before it) must stay under
``--max-mib`` (default 512), else that input is a crash too; so must the rise of the process
RSS high-water mark (``resource.getrusage``) during one input, the only memory check left with
``--no-tracemalloc`` (about 3x faster). The ingest target is skipped for an input that already
hung or broke the memory bound in the parser. An input running past ``--timeout`` seconds is a crash
(hang). Crashing inputs are saved as ``bench-out/fuzz-crash-<kind>-<sha>.bin`` with a
``.txt`` traceback next to it, minimised first unless ``--no-minimize``; the exit status is 1
when there was any crash. A summary goes to ``bench-out/fuzz-ingest.json``.

    .venv/bin/python benchmarks/fuzz_ingest.py --seconds 120
    .venv/bin/python benchmarks/fuzz_ingest.py --iterations 2000 --seed 7
    .venv/bin/python benchmarks/fuzz_ingest.py --replay bench-out/fuzz-crash-parse-*.bin

Input ``i`` of a run is a function of ``--seed`` and ``i`` only, so ``--start I --iterations 1``
regenerates it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import io
import json
import logging
import random
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import tracemalloc
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vesalius.archive.ingest import Status  # noqa: E402
from vesalius.dicom.parse import parse_part10  # noqa: E402
from vesalius.dicom.record import make_record  # noqa: E402
from vesalius.errors import InvalidDicom  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent.parent / "bench-out"
MIB = 1 << 20
UNDEFINED = 0xFFFFFFFF

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
TRANSFER_SYNTAXES = (EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED, "1.2.840.10008.1.2.4.50",
                     "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.70",
                     "1.2.840.10008.1.2.4.201", "1.2.3.4", "", "x", "1.2.840.10008.1.2.1\\1.2",
                     "1..2", "9" * 70)

#: VRs whose explicit header is 12 bytes with a 4-byte length (PS3.5 7.1.2).
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT",
                      b"SV", b"UV"})
ALL_VRS = (b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB",
           b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM",
           b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV")
GARBAGE_VRS = (b"\x00\x00", b"ZZ", b"  ", b"ob", b"\xff\xff", b"S Q")
LEN32 = (0, 1, 2, 3, 7, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFF0, 0xFFFFFFFE,
         UNDEFINED)
LEN16 = (0, 1, 3, 0x7F, 0x80, 0xFF, 0xFFFE, 0xFFFF)
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF, 0x5C, 0x20, 0x2E, 0x1B)

PIXEL_DATA = 0x7FE00010
TAG_ROWS, TAG_COLUMNS, TAG_FRAMES = 0x00280010, 0x00280011, 0x00280008
TAG_SPP, TAG_BITS_ALLOCATED = 0x00280002, 0x00280100
UID_TAGS = (0x00080016, 0x00080018, 0x0020000D, 0x0020000E)
TEXT_VRS = frozenset({b"PN", b"LO", b"SH", b"CS", b"DA", b"TM", b"DT", b"IS", b"DS", b"UI", b"LT",
                      b"ST", b"UT", b"AS", b"AE", b"UC"})


# --------------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------------

#: pydicom sample files used as seeds (looked up locally, never downloaded).
PYDICOM_SEEDS = ("CT_small.dcm", "MR_small_RLE.dcm", "examples_ybr_color.dcm", "image_dfl.dcm",
                 "test-SR.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "rtplan.dcm")


def _dataset_bytes(ds: Any, transfer_syntax: str) -> bytes:
    from pydicom.uid import UID

    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def load_seeds(small: bool = False) -> dict[str, bytes]:
    """Valid Part-10 objects to mutate, by name. ``small`` leaves out the 225 kB colour cine."""
    from tests.dicomgen import make_ct_series, make_dataset, pydicom_test_file

    seeds: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, path in enumerate(make_ct_series(tmp, n_slices=2, rows=32, cols=32, seed=11)):
            seeds[f"gen_ct_{i}"] = path.read_bytes()
        seeds["gen_us_multiframe"] = _dataset_bytes(make_dataset("US", 12, rows=16, cols=16, n_frames=3),
                                                    EXPLICIT_LE)
        seeds["gen_ct_deflated"] = _dataset_bytes(make_dataset("CT", 13, rows=16, cols=16), DEFLATED)
        seeds["gen_mr_implicit"] = _dataset_bytes(make_dataset("MR", 14, rows=16, cols=16), IMPLICIT_LE)
    for name in PYDICOM_SEEDS:
        if small and name == "examples_ybr_color.dcm":
            continue
        try:
            seeds[name] = pydicom_test_file(name).read_bytes()
        except FileNotFoundError:
            continue
    return seeds


# --------------------------------------------------------------------------------------------
# A light, forgiving walk over the elements (to aim mutations at headers)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Elem:
    pos: int  # first byte of the tag
    tag: int
    vr: bytes | None  # None: implicit VR, or an item / delimiter
    len_pos: int
    len_size: int  # 2 or 4
    value_pos: int
    length: int
    meta: bool
    little: bool


@dataclass
class Layout:
    elems: list[Elem]
    meta_end: int  # first byte after the file meta group
    explicit: bool
    little: bool
    deflated: bool
    ts: str

    def find(self, tag: int) -> Elem | None:
        for el in self.elems:
            if el.tag == tag:
                return el
        return None

    @property
    def body(self) -> list[Elem]:
        return [e for e in self.elems if not e.meta]


def layout(data: bytes, limit: int = 4000) -> Layout:
    """Where the element headers are (as far as they can be followed)."""
    elems: list[Elem] = []
    n = len(data)
    pos, ts = 132, ""
    if n < 132 or data[128:132] != b"DICM":
        return Layout([], min(n, 132), True, True, False, "")
    while pos + 8 <= n and len(elems) < limit:  # file meta: always explicit VR little endian
        g, e = struct.unpack_from("<HH", data, pos)
        if g != 0x0002:
            break
        meta_vr = data[pos + 4:pos + 6]
        if meta_vr in LONG_VRS:
            if pos + 12 > n:
                break
            hdr, lp, ls = 12, pos + 8, 4
            ln = struct.unpack_from("<I", data, lp)[0]
        else:
            hdr, lp, ls = 8, pos + 6, 2
            ln = struct.unpack_from("<H", data, lp)[0]
        elems.append(Elem(pos, (g << 16) | e, meta_vr, lp, ls, pos + hdr, ln, True, True))
        if e == 0x0010:
            ts = data[pos + hdr:pos + hdr + ln].rstrip(b"\0 ").decode("latin-1")
        if ln == UNDEFINED:
            break
        pos += hdr + ln
    meta_end = pos
    explicit, little = ts != IMPLICIT_LE, ts != EXPLICIT_BE
    if ts == DEFLATED:
        return Layout(elems, meta_end, True, True, True, ts)
    fmt = "<" if little else ">"
    in_pixels = False
    while pos + 8 <= n and len(elems) < limit:
        g, e = struct.unpack_from(fmt + "HH", data, pos)
        tag = (g << 16) | e
        if g == 0xFFFE:  # item, item delimiter, sequence delimiter: no VR
            ln = struct.unpack_from(fmt + "I", data, pos + 4)[0]
            elems.append(Elem(pos, tag, None, pos + 4, 4, pos + 8, ln, False, little))
            if e == 0xE0DD:
                in_pixels = False
            pos += 8 + (ln if in_pixels and e == 0xE000 and ln != UNDEFINED else 0)
            continue
        vr: bytes | None
        if explicit:
            vr = data[pos + 4:pos + 6]
            if not vr.isalpha():
                break
            if vr in LONG_VRS:
                if pos + 12 > n:
                    break
                hdr, lp, ls = 12, pos + 8, 4
                ln = struct.unpack_from(fmt + "I", data, lp)[0]
            else:
                hdr, lp, ls = 8, pos + 6, 2
                ln = struct.unpack_from(fmt + "H", data, lp)[0]
        else:
            vr, hdr, lp, ls = None, 8, pos + 4, 4
            ln = struct.unpack_from(fmt + "I", data, lp)[0]
        elems.append(Elem(pos, tag, vr, lp, ls, pos + hdr, ln, False, little))
        if ln == UNDEFINED:
            in_pixels = in_pixels or tag == PIXEL_DATA
            pos += hdr
        elif vr == b"SQ":
            pos += hdr  # step into the items
        else:
            pos += hdr + ln
    return Layout(elems, meta_end, explicit, little, False, ts)


def encode_elem(tag: int, vr: bytes | None, value: bytes, explicit: bool = True, little: bool = True,
                length: int | None = None) -> bytes:
    fmt = "<" if little else ">"
    ln = len(value) if length is None else length
    head = struct.pack(fmt + "HH", tag >> 16, tag & 0xFFFF)
    if tag >> 16 == 0xFFFE or not explicit or vr is None:
        return head + struct.pack(fmt + "I", ln & UNDEFINED) + value
    if vr in LONG_VRS or len(vr) != 2:
        return head + vr[:2].ljust(2) + b"\0\0" + struct.pack(fmt + "I", ln & UNDEFINED) + value
    return head + vr + struct.pack(fmt + "H", ln & 0xFFFF) + value


def replace_value(data: bytes, el: Elem, value: bytes, lay: Layout) -> bytes:
    """The element rewritten with ``value`` and a matching length (its header form kept)."""
    explicit = el.meta or lay.explicit
    new = encode_elem(el.tag, el.vr if explicit else None, value, explicit, el.little)
    end = el.value_pos + (0 if el.length == UNDEFINED else el.length)
    return data[:el.pos] + new + data[end:]


def set_length(data: bytes, el: Elem, value: int) -> bytes:
    fmt = ("<" if el.little else ">") + ("I" if el.len_size == 4 else "H")
    packed = struct.pack(fmt, value & (UNDEFINED if el.len_size == 4 else 0xFFFF))
    return data[:el.len_pos] + packed + data[el.len_pos + el.len_size:]


def pad_even(value: bytes, pad: bytes = b" ") -> bytes:
    return value + pad if len(value) % 2 else value


def meta_elements(data: bytes, lay: Layout) -> list[tuple[int, bytes, bytes]]:
    return [(e.tag, e.vr or b"UN", data[e.value_pos:e.value_pos + e.length]) for e in lay.elems
            if e.meta and e.tag != 0x00020000 and e.length != UNDEFINED]


def build_meta(items: list[tuple[int, bytes, bytes]], group_length: str = "ok",
               rng: random.Random | None = None) -> bytes:
    """128 zero bytes, DICM, and a file meta group built from ``items``.

    ``group_length``: ``ok`` (correct), ``none`` (no (0002,0000)), ``huge``, ``small``, ``zero``.
    """
    body = b"".join(encode_elem(t, vr, v) for t, vr, v in items)
    gl = {"ok": len(body), "huge": 0xFFFFFFF0, "small": max(0, len(body) // 3), "zero": 0,
          "random": (rng or random).randrange(0, 1 << 32)}.get(group_length)
    head = b"" if gl is None else encode_elem(0x00020000, b"UL", struct.pack("<I", gl))
    return b"\0" * 128 + b"DICM" + head + body


# --------------------------------------------------------------------------------------------
# Mutations
# --------------------------------------------------------------------------------------------


@dataclass
class Ctx:
    """What mutations may draw on besides the input: other seeds, size limits."""

    seeds: dict[str, bytes]
    bomb_mib: tuple[int, ...] = (1, 8, 64, 300)  # inflated sizes of deflate bombs (smaller: likelier)
    max_flood: int = 10000  # most elements m_flood adds
    max_depth: int = 20000
    _chunk: bytes = field(default=b"", repr=False)

    def zero_chunk(self) -> bytes:
        """One MiB of zeros as raw deflate blocks ending on a full flush: repeatable."""
        if not self._chunk:
            comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
            self._chunk = comp.compress(bytes(MIB)) + comp.flush(zlib.Z_FULL_FLUSH)
        return self._chunk


Mutator = Callable[[random.Random, bytes, Ctx], bytes]


def m_flip(rng: random.Random, data: bytes, ctx: Ctx) -> bytes:
    """Flip bits or write interesting bytes; mostly in the first 4 KiB (the headers)."""
    if not data:
        return bytes([rng.randrange(256)])
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 8, 32))):
        hi = len(buf) if rng.random() < 0.3 else min(len(buf), 4096)
        i = rng.randrange(hi)
        if rng.random() < 0.5:
            buf[i] ^= 1 << rng.randrange(8)
        else:
            buf[i] = rng.choice(INTERESTING_BYTES)
    return bytes(buf)


def m_truncate(rng: random.Random, data: bytes, ctx: Ctx) -> bytes:
    """Cut the object: anywhere, or just inside / after an element header."""
    lay = layout(data)
    if lay.elems and rng.random() < 0.6:
        el = rng.choice(lay.elems)
        cut = el.pos + rng.choice((0, 1, 4, 6, 7, 8, 10, 12, 13)) + (el.value_pos - el.pos if rng.random() < 0.3 else 0)
        return data[:cut]
    return data[:rng.randrange(len(data) + 1)]


def m_length(rng: random.Random, data: bytes, ctx: Ctx) -> bytes:
    """Set an element's (or item's) length to a huge, odd, off-by-one or undefined value."""
    lay = layout(data)
    if not lay.elems:
        return m_flip(rng, data, ctx)
    el = rng.choice(lay.elems)
    choices = LEN32 if el.len_size == 4 else LEN16
    r = rng.random()
    if r < 0.5:
        value = rng.choice(choices)
    elif r < 0.8:
        value = el.length + rng.choice((-3, -2, -1, 1, 2, 3, 4, 1000))
    else:
        value = rng.choice((len(data), len(data) - el.value_pos, len(data) - el.value_pos + 1,
                            rng.randrange(1 << (8 * el.len_size))))
    return set_length(data, el, value)


def m_vr_swap(rng: random.Random, data: bytes, ctx: Ctx) -> bytes:
    """Replace an explicit VR with another (short and long header forms) or garbage."""
    lay = layout(data)
    cands = [e for e in lay.elems if e.vr is not None and (e.meta or lay.explicit)]
    if not cands:
        return m_flip(rng, data, ctx)
    el = rng.choice(cands)
    vr = rng.choice(GARBAGE_VRS)[:2] if rng.random() < 0.15 else rng.choice(ALL_VRS)
    out = data[:el.pos + 4] + vr + data[el.pos + 6:]
    if rng.random() < 0.5:  # also re-encode the header in the new VR's form
        explicit = True
        new = encode_elem(el.tag, vr, b"", explicit, el.little, length=el.length)
        out = data[:el.pos] + new + data[el.value_pos:]
    return out


def _seq_open(tag: int, explicit: bool, little: bool, length: int = UNDEFINED) -> bytes:
    return encode_elem(tag, b"SQ", b"", explicit, little, length=length)


def _item(little: bool, length: int = UNDEFINED) -> bytes:
    return encode_elem(0xFFFEE000, None, b"", True, little, length=length)


def _item_end(little: bool) -> bytes:
    return encode_elem(0xFFFEE00D, None, b"", True, little, length=0)


def _seq_end(little: bool) -> bytes:
    return encode_elem(0xFFFEE0DD, None, b"", True, little, length=0)


def sequence_bomb(depth: int, kind: str, explicit: bool = True, little: bool = True,
                  tag: int = 0x0040A730) -> bytes:
    """Nested sequences: ``closed`` (undefined lengths, delimited), ``open`` (no delimiters),
    ``defined`` (explicit lengths), ``wide`` (one sequence of ``depth`` empty items)."""
    if kind == "wide":
        return _seq_open(tag, explicit, little) + _item(little, 0) * depth + _seq_end(little)
    if kind == "defined":
        inner = b""
        for _ in range(depth):
            item = _item(little, len(inner)) + inner
            inner = _seq_open(tag, explicit, little, len(item)) + item
        return inner
    opening = _seq_open(tag, explicit, little) + _item(little)
    if kind == "open":
        return opening * depth
    return opening * depth + (_item_end(little) + _seq_end(little)) * depth


def m_seq_bomb(rng: random.Random, data: bytes, ctx: Ctx) -> bytes:
    """Insert deep / wide / undelimited sequence nesting at an element boundary."""
    lay = layout(data)
    if lay.deflated:
        return m_deflate(rng, data, ctx)
    depth = rng.choice((5, 50, 500, 1000, 3000, ctx.max_depth))
    kind = rng.choice(("closed", "closed", "open", "defined", "wide"))
    if kind == "defined":
        depth = min(depth, 3000)  # quadratic to build
    tag = rng.choice((0x0040A730, 0x00081115, 0x00091010 if lay.explicit else 0x0040A730))
    bomb = sequence_bomb(depth, kind, lay.explicit, lay.little, tag)
    body = lay.body
    at = rng.choice(body).pos if body else lay.meta_end
    if rng.random() < 0.3:
        at = lay.meta_end
    return data[:at] + bomb + data[at:]


def m_deflate(rng: random.Random, data: bytes, ctx: Ctx) -> bytes:
    """Re-deflate the data set: maybe a bomb, maybe corrupt, with varied file meta."""
    lay = layout(data)
    plain = data[lay.meta_end:]
    if lay.deflated:
        with contextlib.suppress(zlib.error):
            d = zlib.decompressobj(-zlib.MAX_WBITS)
            plain = d.decompress(plain, 8 * MIB)
    comp = zlib.compressobj(rng.choice((1, 6, 9)), zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = comp.compress(plain)
    if rng.random() < 0.5:  # decompression bomb: a pixel data element of N MiB of zeros
        mib = rng.choices(ctx.bomb_mib, [4, 3, 2, 2, 1][:len(ctx.bomb_mib)])[0]
        head = encode_elem(PIXEL_DATA, b"OB", b"", length=mib * MIB)
        if rng.random() < 0.05:  # no element around the zeros: N MiB / 8 empty (0000,0000) elements
            head, mib = b"", min(mib, 8)
        stream += comp.compress(head) + comp.flush(zlib.Z_FULL_FLUSH) + ctx.zero_chunk() * mib + b"\x03\x00"
    else:
        stream += comp.flush()
    r = rng.random()
    if r < 0.15:  # corrupt the stream
        buf = bytearray(stream)
        for _ in range(rng.choice((1, 4, 16))):
            i = rng.randrange(len(buf))
            buf[i] = rng.randrange(256)
        stream = bytes(buf)
    elif r < 0.25:
        stream = stream[:rng.randrange(len(stream) + 1)]
    elif r < 0.3:
        stream += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    items = meta_elements(data, lay) or [(0x00020010, b"UI", b"")]
    ts_value = pad_even(DEFLATED.encode(), b"\0")
    items = [(t, vr, ts_value if t == 0x00020010 else v) for t, vr, v in items]
    if not any(t == 0x00020010 for t, _, _ in items):
        items.append((0x00020010, b"UI", ts_value))
        items.sort()
    if rng.random() < 0.25:  # push the Transfer Syntax UID past the first KiB of the file
        items = [(t, vr, bytes(rng.choice((1024, 4096))) if t == 0x00020001 else v)
                 for t, vr, v in items]
        if not any(t == 0x00020001 for t, _, _ in items):
            items.insert(0, (0x00020001, b"OB", bytes(1024)))
    gl = rng.choice(("ok", "ok", "none", "huge", "small", "zero"))
    return build_meta(items, gl, rng) + stream


def m_huge_dims(rng: random.Random, data: bytes, ctx: Ctx) -> bytes:
    """Huge / zero / odd Rows, Columns, Bits Allocated, Samples, Number of Frames; short pixels."""
    lay = layout(data)
    if lay.deflated:
        return m_deflate(rng, data, ctx)
    out = data
    for tag in rng.sample((TAG_ROWS, TAG_COLUMNS, TAG_SPP, TAG_BITS_ALLOCATED), rng.randint(1, 4)):
        lay = layout(out)
        el = lay.find(tag)
        if el is None or el.length != 2:
            continue
        value = rng.choice((0, 1, 3, 0x7FFF, 0x8000, 0xFFFF, rng.randrange(1 << 16)))
        out = out[:el.value_pos] + struct.pack("<H" if el.little else ">H", value) + out[el.value_pos + 2:]
    lay = layout(out)
    if rng.random() < 0.7:
        frames = rng.choice((b"999999999", b"2147483648", b"-1", b"0", b"1e9", b"0x10", b"", b" 12 ",
                             b"1\\2", b"99999999999999999999", b"NaN", b"\xff\xfe"))
        el = lay.find(TAG_FRAMES)
        if el is not None:
            out = replace_value(out, el, pad_even(frames), lay)
        else:
            anchor = lay.find(TAG_ROWS) or lay.find(PIXEL_DATA)
            if anchor is not None:
                new = encode_elem(TAG_FRAMES, b"IS", pad_even(frames), lay.explicit, lay.little)
                out = out[:anchor.pos] + new + out[anchor.pos:]
    lay = layout(out)
    pix = lay.find(PIXEL_DATA)
    if pix is not None and rng.random() < 0.8:
        keep = rng.choice((0, 1, 2, 16, 1024))
        out = out[:pix.value_pos] + out[pix.value_pos:pix.value_pos + keep]
        if pix.length != UNDEFINED and rng.random() < 0.7:
            out = set_length(out, pix, len(out) - pix.value_pos)
    return out


def m_flood(rng: random.Random, data: bytes, ctx: Ctx) -> bytes:
    """Many tiny elements (zero-length, distinct or repeated tags) or a run of zero bytes."""
    lay = layout(data)
    explicit, little = (lay.explicit, lay.little) if not lay.deflated else (True, True)
    n = min(ctx.max_flood, rng.choice((100, 1000, 3000, 10000)))
    kind = rng.random()
    if kind < 0.3:
        flood = bytes(8 * n)  # (0000,0000) with length 0, over and over
    else:
        vr = rng.choice((b"UN", b"LO", b"OB", b"SQ", b"US")) if explicit else None
        group = rng.choice((0x0009, 0x0011, 0x7FE1))
        flood = b"".join(encode_elem((group << 16) | (k & 0xFFFF) if kind < 0.8 else (group << 16) | 0x1000,
                                     vr, b"", explicit, little) for k in range(n))
    body = lay.body
    at = rng.choice(body).pos if body and rng.random() < 0.5 else len(data)
    return data[:at] + flood + data[at:]


def m_after_preamble(rng: random.Random, data: bytes, ctx: Ctx) -> bytes:
    """Random bytes after a valid preamble: raw, after a valid meta, or as element-shaped noise."""
    n = rng.choice((0, 1, 8, 64, 512, 4096))
    noise = rng.randbytes(n)
    lay = layout(data)
    r = rng.random()
    if r < 0.3:
        return data[:132] + noise
    if r < 0.6:
        return data[:lay.meta_end] + noise
    parts = []
    explicit, little = (lay.explicit, lay.little) if not lay.deflated else (True, True)
    for _ in range(rng.randrange(1, 40)):
        tag = rng.choice((rng.randrange(1 << 32), 0x00080018, 0x0020000D, PIXEL_DATA, 0xFFFEE000,
                          0x00100010, 0x00091010))
        vr = rng.choice(ALL_VRS)
        value = rng.randbytes(rng.choice((0, 1, 2, 4, 8, 64)))
        length = len(value) if rng.random() < 0.8 else rng.choice(LEN32)
        parts.append(encode_elem(tag, vr, value, explicit, little, length))
    return data[:lay.meta_end] + b"".join(parts)


def m_ts_swap(rng: random.Random, data: bytes, ctx: Ctx) -> bytes:
    """Declare another Transfer Syntax than the one the data set is encoded in."""
    lay = layout(data)
    items = meta_elements(data, lay)
    if not items:
        return m_after_preamble(rng, data, ctx)
    ts = rng.choice(TRANSFER_SYNTAXES).encode()
    if rng.random() < 0.5:
        ts = pad_even(ts, b"\0")
    items = [(t, vr, ts if t == 0x00020010 else v) for t, vr, v in items]
    if rng.random() < 0.1:
        items = [i for i in items if i[0] != 0x00020010]
    gl = rng.choice(("ok", "ok", "ok", "none", "huge", "small"))
    return build_meta(items, gl, rng) + data[lay.meta_end:]


def m_meta(rng: random.Random, data: bytes, ctx: Ctx) -> bytes:
    """File meta games: no / lying group length, long version, dropped or duplicated elements."""
    lay = layout(data)
    items = meta_elements(data, lay)
    if not items:
        return m_after_preamble(rng, data, ctx)
    r = rng.random()
    if r < 0.25:
        del items[rng.randrange(len(items))]
    elif r < 0.5:
        items.insert(rng.randrange(len(items) + 1), rng.choice(items))
    elif r < 0.75:
        tag = rng.choice((0x00020001, 0x00020002, 0x00020003, 0x00020012, 0x00020013, 0x00020102))
        vr = b"OB" if tag in (0x00020001, 0x00020102) else b"UI"
        items = [i for i in items if i[0] != tag] + [(tag, vr, pad_even(rng.randbytes(rng.choice((0, 3, 64, 2000)))))]
        items.sort()
    else:
        rng.shuffle(items)
    gl = rng.choice(("ok", "none", "huge", "small", "zero", "random"))
    return build_meta(items, gl, rng) + data[lay.meta_end:]


def m_value(rng: random.Random, data: bytes, ctx: Ctx) -> bytes:
    """Garbage in a UID, text, person name or character set value (length kept consistent)."""
    lay = layout(data)
    cands = [e for e in lay.elems if e.length != UNDEFINED and e.tag >> 16 != 0xFFFE
             and (e.tag in UID_TAGS or e.vr in TEXT_VRS or e.tag in (0x00080005, 0x00100010))]
    if not cands:
        return m_flip(rng, data, ctx)
    el = rng.choice(cands)
    if rng.random() < 0.3:  # a character set, then (maybe) a name that does not fit it
        cs = lay.find(0x00080005)
        value = rng.choice((b"ISO 2022 IR 87", b"\\ISO 2022 IR 87", b"GB18030", b"ISO_IR 192", b"garbage",
                            b"ISO_IR 100\\ISO_IR 192", b"ISO 2022 IR 149\\", b"\xff\xfe", b"ISO_IR 13"))
        if cs is not None:
            data = replace_value(data, cs, pad_even(value), lay)
        else:
            new = encode_elem(0x00080005, b"CS", pad_even(value), lay.explicit, lay.little)
            body = lay.body
            at = body[0].pos if body else lay.meta_end
            data = data[:at] + new + data[at:]
        lay = layout(data)
        el = lay.find(0x00100010) or el
        if el.length == UNDEFINED or el.pos >= len(data):
            return data
    value = rng.choice((
        b"../../etc/passwd", b"1.2." + b"9" * 80, b"1.2.3\x00.4", b"\xff\xfe\xfd\xfc", b"\x1b$B\x1b(J",
        b"\x1b%G\xc3\x28", b"A" * rng.choice((65, 1000, 70000)), b"\\" * 50, b"=" * 10, b"^^^^=^^^^=",
        b"", b" ", b"\x00\x00", b"\xed\xa0\x80", b"1.2.840.10008.5.1.4.1.1.2", rng.randbytes(rng.randrange(1, 40)),
    ))
    if len(value) > 0xFFFF and el.len_size == 2:
        value = value[:0xFFFE]
    return replace_value(data, el, pad_even(value), lay)


def m_chunk(rng: random.Random, data: bytes, ctx: Ctx) -> bytes:
    """Delete, duplicate or overwrite a region, or splice in a piece of another seed."""
    if len(data) < 2:
        return m_after_preamble(rng, data, ctx)
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.choice((1, 4, 12, 64, 512, 4096)))
    r = rng.random()
    if r < 0.3:
        return data[:a] + data[b:]
    if r < 0.5:
        return data[:b] + data[a:b] * rng.choice((1, 2, 16)) + data[b:]
    other = ctx.seeds[rng.choice(sorted(ctx.seeds))] if ctx.seeds else data
    c = rng.randrange(len(other))
    piece = other[c:c + rng.choice((8, 64, 512, 4096))]
    if r < 0.75:
        return data[:a] + piece + data[a:]
    return data[:a] + other[c:]  # splice: head of one, tail of another


MUTATORS: dict[str, Mutator] = {
    "flip": m_flip,
    "truncate": m_truncate,
    "length": m_length,
    "vr_swap": m_vr_swap,
    "seq_bomb": m_seq_bomb,
    "deflate": m_deflate,
    "huge_dims": m_huge_dims,
    "after_preamble": m_after_preamble,
    "ts_swap": m_ts_swap,
    "meta": m_meta,
    "value": m_value,
    "chunk": m_chunk,
    "flood": m_flood,
}
#: How often each is chosen (structure-aware ones more than blind ones).
WEIGHTS: dict[str, int] = {"flip": 12, "truncate": 8, "length": 14, "vr_swap": 10, "seq_bomb": 6,
                           "deflate": 8, "huge_dims": 7, "after_preamble": 4, "ts_swap": 7,
                           "meta": 6, "value": 10, "chunk": 8, "flood": 3}


def mutate(data: bytes, ops: Sequence[tuple[str, int]], ctx: Ctx) -> bytes:
    """Apply ``(mutator name, rng seed)`` steps in order: the same steps give the same bytes."""
    for name, seed in ops:
        data = MUTATORS[name](random.Random(seed), data, ctx)
    return data


def draw_case(rng: random.Random, ctx: Ctx) -> tuple[str, list[tuple[str, int]]]:
    names = list(WEIGHTS)
    weights = [WEIGHTS[n] for n in names]
    seed = rng.choice(sorted(ctx.seeds))
    k = rng.choice((1, 1, 1, 2, 2, 3, 4))
    return seed, [(rng.choices(names, weights)[0], rng.randrange(1 << 32)) for _ in range(k)]


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


class Hang(BaseException):
    """One input ran past the time limit (a BaseException, so no ``except Exception`` eats it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    if seconds <= 0 or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang(f"input ran for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check_parse(data: bytes) -> tuple[str, BaseException | None]:
    """Run the parser and, on success, the record builder.

    Returns ``("accepted" | "invalid", None)``, ``("record", exc)`` when make_record raised
    (wrapped by ingest: not a crash), or raises what parse_part10 raised if it was not
    InvalidDicom.
    """
    try:
        parsed = parse_part10(data)
    except InvalidDicom:
        return "invalid", None
    try:
        make_record(parsed.dataset, sop_uid=parsed.sop_instance_uid, sop_class=parsed.sop_class_uid,
                    study_uid=parsed.study_uid, series_uid=parsed.series_uid,
                    transfer_syntax=parsed.transfer_syntax, blob_key="", size=len(data), source_ae="FUZZ")
    except Exception as exc:
        return "record", exc
    return "accepted", None


class Harness:
    """A MemoryStore + SQLite archive to feed, reopened now and then."""

    def __init__(self, work: Path, on_conflict: str = "keep") -> None:
        self.work = work
        self.on_conflict = on_conflict
        self.generation = 0
        self.archive: Any = None
        self.open()

    def open(self) -> None:
        from vesalius.archive import open_archive
        from vesalius.config import load_settings

        self.close()
        self.generation += 1
        data_dir = self.work / f"archive-{self.generation}"
        settings = load_settings(None, env={}, data_dir=data_dir, storage="memory",
                                 on_conflict=self.on_conflict, dicom_host="127.0.0.1", dicom_port=0)
        self.archive = open_archive(settings)
        self.data_dir = data_dir

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()
            self.archive = None
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def ingest(self, data: bytes, expected_sop_instance: str | None = None) -> Any:
        return self.archive.ingestor.ingest(data, "FUZZ", expected_sop_instance)

    def stored_bytes(self) -> int:
        store = self.archive.store
        return sum(len(v) for v in getattr(store, "_data", {}).values())

    def consistency(self) -> list[str]:
        """Problems: objects in storage without an index row, rows whose object is missing."""
        from sqlalchemy import select

        from vesalius.index.models import instances

        with self.archive.engine.connect() as conn:
            keys = {k for (k,) in conn.execute(select(instances.c.blob_key))}
        stored = set(self.archive.store.keys())
        problems = [f"object {k[:12]} in storage has no index row" for k in sorted(stored - keys)]
        problems += [f"index row's object {k[:12]} is missing from storage" for k in sorted(keys - stored)]
        return problems


# --------------------------------------------------------------------------------------------
# Crashes
# --------------------------------------------------------------------------------------------


def signature(kind: str, exc: BaseException | None, detail: str = "") -> str:
    """What makes two crashes the same: target, exception type, and where it left our code
    (the deepest ``vesalius`` frame, with its line) and where it was raised (the innermost
    ``vesalius`` or ``pydicom`` frame)."""
    if exc is None:
        return f"{kind}:{detail}"
    ours = raised = ""
    for fs in traceback.extract_tb(exc.__traceback__):
        name = f"{Path(fs.filename).name}:{fs.name}"
        if "/vesalius/" in fs.filename:
            ours = f"{name}:{fs.lineno}"
        if "/vesalius/" in fs.filename or "/pydicom/" in fs.filename:
            raised = name
    if isinstance(exc, RecursionError):
        raised = "*"  # wherever the stack happened to run out: one bug
    return f"{kind}:{type(exc).__module__}.{type(exc).__qualname__}@{ours}<-{raised}"


@dataclass
class Crash:
    kind: str  # parse | ingest | memory | hang | consistency | record (with --strict-record)
    sig: str
    data: bytes
    text: str
    case: str
    path: str = ""
    minimized_from: int = 0


def reproduce(kind: str, data: bytes, max_mib: float, timeout: float) -> str | None:
    """The crash signature ``data`` gives now, or None (used by the minimiser and --replay)."""
    try:
        with time_limit(timeout):
            if kind == "memory":
                tracemalloc.start()
                try:
                    tracemalloc.reset_peak()
                    base = tracemalloc.get_traced_memory()[0]
                    with contextlib.suppress(Exception):
                        check_parse(data)
                    peak = tracemalloc.get_traced_memory()[1] - base
                finally:
                    tracemalloc.stop()
                return signature("memory", None, f"peak over {max_mib:.0f} MiB") if peak > max_mib * MIB else None
            status, exc = check_parse(data)
            if kind == "record" and status == "record":
                return signature("record", exc)
            return None
    except Hang as exc:
        return signature("hang", None, "timeout") if kind == "hang" else signature("hang", exc)
    except Exception as exc:
        return signature("parse", exc)


def minimize(data: bytes, sig: str, kind: str, max_mib: float, timeout: float, budget_s: float) -> bytes:
    """Delta debugging lite: drop chunks (halving sizes) while the same signature reproduces."""
    if kind not in ("parse", "record") or reproduce(kind, data, max_mib, timeout) != sig:
        return data
    deadline = time.monotonic() + budget_s
    chunk = max(1, len(data) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        i, changed = 0, False
        while i < len(data) and time.monotonic() < deadline:
            cand = data[:i] + data[i + chunk:]
            if reproduce(kind, cand, max_mib, timeout) == sig:
                data, changed = cand, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    # then make bytes simpler: zero what need not be what it is (preamble etc.)
    for i in range(len(data)):
        if time.monotonic() >= deadline:
            break
        if data[i] != 0:
            cand = data[:i] + b"\0" + data[i + 1:]
            if reproduce(kind, cand, max_mib, timeout) == sig:
                data = cand
    return data


def save_crash(crash: Crash, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(crash.data).hexdigest()[:12]
    path = out_dir / f"fuzz-crash-{crash.kind}-{digest}.bin"
    path.write_bytes(crash.data)
    head = crash.data[:512].hex()
    path.with_suffix(".txt").write_text(
        f"signature: {crash.sig}\ncase: {crash.case}\nsize: {len(crash.data)} bytes"
        f"{f' (minimised from {crash.minimized_from})' if crash.minimized_from else ''}\n"
        f"hex (first 512 bytes): {head}\n\n{crash.text}\n")
    crash.path = str(path)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass
class Stats:
    iterations: int = 0
    parse: collections.Counter[str] = field(default_factory=collections.Counter)
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    mutators: collections.Counter[str] = field(default_factory=collections.Counter)
    record_exc: collections.Counter[str] = field(default_factory=collections.Counter)
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    index_failures: collections.Counter[str] = field(default_factory=collections.Counter)
    crashes: dict[str, Crash] = field(default_factory=dict)
    crash_counts: collections.Counter[str] = field(default_factory=collections.Counter)
    peak_input_bytes: int = 0
    peak_input_case: str = ""
    traced_max: int = 0  # highest tracemalloc total at any moment
    rss_jump_mib: float = 0.0
    rss_jump_case: str = ""
    slow: list[tuple[float, int, str]] = field(default_factory=list)  # (seconds, size, case)


def rss_mib() -> float:
    """Process RSS high-water mark (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (MIB if sys.platform == "darwin" else 1024)


def _reason_class(reason: str) -> str:
    return reason.split(":")[0].split("(")[0].strip()[:70]


def run(args: argparse.Namespace) -> int:
    logging.getLogger("vesalius").setLevel(logging.CRITICAL)
    warnings.simplefilter("ignore")
    seeds = load_seeds()
    ctx = Ctx(seeds, bomb_mib=tuple(m for m in (1, 8, 64, 300, 600) if m <= args.max_bomb_mib) or (1,))
    out_dir = Path(args.out_dir)
    work = Path(tempfile.mkdtemp(prefix="vesalius-fuzz-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    harness = Harness(work, args.on_conflict)
    stats = Stats()
    rss_before = rss_mib()
    if args.tracemalloc:
        tracemalloc.start()
    # every seed must be accepted as it is (else the seeds, not the inputs, are wrong)
    for name, data in seeds.items():
        status, exc = check_parse(data)
        rep = harness.ingest(data)
        print(f"seed {name:28s} {len(data):7d} B  parse={status:8s} ingest={rep.status.name} {rep.outcome}")
    harness.open()
    t0 = time.monotonic()
    deadline = t0 + args.seconds if args.iterations is None else float("inf")
    limit = args.iterations if args.iterations is not None else 1 << 62
    i = args.start
    last_print = t0

    def crash(kind: str, exc: BaseException | None, data: bytes, case: str, detail: str = "",
              text: str = "") -> None:
        sig = signature(kind, exc, detail)
        stats.crash_counts[sig] += 1
        if sig in stats.crashes and len(data) >= len(stats.crashes[sig].data):
            return
        text = "".join(traceback.format_exception(exc)) if exc is not None else (text or detail)
        lines = text.splitlines()
        if len(lines) > 120:  # RecursionError: thousands of frames
            text = "\n".join([*lines[:60], f"  ... {len(lines) - 100} lines ...", *lines[-40:]])
        stats.crashes[sig] = Crash(kind, sig, data, text, case)
        print(f"  CRASH #{i} {sig} ({len(data)} B) case={case}", flush=True)

    def ingest_one(data: bytes, expected: str | None, parse_status: str, case: str) -> None:
        try:
            with time_limit(args.timeout):
                rep = harness.ingest(data, expected)
        except Hang:
            crash("hang", None, data, case, f"Ingestor.ingest ran past {args.timeout} s")
            harness.open()
            return
        except Exception as exc:
            crash("ingest", exc, data, case)
            harness.open()
            return
        if not isinstance(getattr(rep, "status", None), Status) or not isinstance(rep.outcome, str):
            crash("ingest", None, data, case, f"ingest returned {rep!r}")
            return
        stats.statuses[f"{rep.status.name}/{rep.outcome}"] += 1
        if parse_status in ("invalid", "crash") and (rep.ok or rep.outcome != "invalid"):
            crash("ingest", None, data, case, f"parser refused it but ingest answered {rep}")
        if parse_status in ("invalid", "crash") and harness.archive.store.exists(hashlib.sha256(data).hexdigest()):
            crash("ingest", None, data, case, "a refused object was left in storage")
        if rep.outcome == "invalid":
            stats.reasons[_reason_class(rep.reason)] += 1
        if rep.outcome == "error":
            stats.index_failures[rep.reason[:80]] += 1

    while i - args.start < limit and time.monotonic() < deadline:
        rng = random.Random(f"{args.seed}:{i}")
        seed_name, ops = draw_case(rng, ctx)
        case = f"seed={args.seed} i={i} {seed_name} " + " ".join(f"{n}:{s}" for n, s in ops)
        for n, _ in ops:
            stats.mutators[n] += 1
        data = mutate(seeds[seed_name], ops, ctx)
        expected = None
        if rng.random() < 0.05:
            expected = rng.choice(("1.2.3", "", "../x", "1.2.3\0"))
        started = time.perf_counter()
        status = "crash"
        memory_hit = False
        # target 1: parse_part10 (+ make_record)
        rss_mark = rss_mib()
        if args.tracemalloc:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
        try:
            with time_limit(args.timeout):
                status, exc = check_parse(data)
            stats.parse[status] += 1
            if status == "record" and exc is not None:
                stats.record_exc[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                if args.strict_record:
                    crash("record", exc, data, case)
        except Hang:
            status = "hang"
            stats.parse["hang"] += 1
            crash("hang", None, data, case, f"parse_part10/make_record ran past {args.timeout} s")
        except Exception as exc:
            stats.parse["crash"] += 1
            crash("parse", exc, data, case)
        if args.tracemalloc:
            peak = tracemalloc.get_traced_memory()[1]
            stats.traced_max = max(stats.traced_max, peak)
            peak -= base
            if peak > stats.peak_input_bytes:
                stats.peak_input_bytes, stats.peak_input_case = peak, case
            if peak > args.max_mib * MIB:
                memory_hit = True
                crash("memory", None, data, case, f"peak over {args.max_mib:.0f} MiB",
                      f"parse_part10/make_record allocated {peak / MIB:.0f} MiB at peak "
                      f"(bound {args.max_mib:.0f} MiB) for a {len(data)} B input")
        rss_jump = rss_mib() - rss_mark  # > 0 only when this input raised the high-water mark
        if rss_jump > stats.rss_jump_mib:
            stats.rss_jump_mib, stats.rss_jump_case = rss_jump, case
        if rss_jump > args.max_mib and not memory_hit:
            memory_hit = True
            crash("memory", None, data, case, f"peak over {args.max_mib:.0f} MiB",
                  f"parse_part10/make_record raised the RSS high-water mark by {rss_jump:.0f} MiB "
                  f"(bound {args.max_mib:.0f} MiB) for a {len(data)} B input")
        # target 2: Ingestor.ingest: nothing may escape (skipped after a hang or a memory
        # crash: it would only repeat the parser's)
        if status == "hang" or memory_hit:
            stats.statuses["skipped"] += 1
        else:
            ingest_one(data, expected, status, case)
        elapsed = time.perf_counter() - started
        if len(stats.slow) < 5 or elapsed > stats.slow[-1][0]:
            stats.slow = sorted([*stats.slow, (elapsed, len(data), case)], reverse=True)[:5]
        i += 1
        stats.iterations += 1
        if (i - args.start) % args.reopen_every == 0 or harness.stored_bytes() > 64 * MIB:
            for problem in harness.consistency():
                crash("consistency", None, b"", case, problem)
            harness.open()
        now = time.monotonic()
        if now - last_print > 10:
            last_print = now
            print(f"  {stats.iterations} inputs, {stats.iterations / (now - t0):.0f}/s, "
                  f"{len(stats.crashes)} unique crashes, peak/input "
                  f"{stats.peak_input_bytes / MIB:.1f} MiB, rss {rss_mib():.0f} MiB", flush=True)
    elapsed = time.monotonic() - t0
    for problem in harness.consistency():
        crash("consistency", None, b"", "end of run", problem)
    harness.close()
    shutil.rmtree(work, ignore_errors=True)
    traced_peak = stats.traced_max
    if args.tracemalloc:
        tracemalloc.stop()
    for c in stats.crashes.values():
        if args.minimize and c.data:
            before = len(c.data)
            c.data = minimize(c.data, c.sig, c.kind, args.max_mib, args.timeout, args.minimize_s)
            c.minimized_from = before if len(c.data) < before else 0
        if c.data:
            save_crash(c, out_dir)
    report(stats, elapsed, rss_before, traced_peak, args, out_dir)
    return 1 if stats.crashes else 0


def report(stats: Stats, elapsed: float, rss_before: float, traced_peak: int, args: argparse.Namespace,
           out_dir: Path) -> None:
    rss = rss_mib()
    print(f"\n{stats.iterations} inputs in {elapsed:.1f} s: {stats.iterations / max(elapsed, 1e-9):.1f} inputs/s "
          f"(seed {args.seed}, tracemalloc {'on' if args.tracemalloc else 'off'})")
    print("parse_part10:", dict(stats.parse.most_common()))
    print("Ingestor.ingest:", dict(stats.statuses.most_common()))
    print("mutations:", dict(stats.mutators.most_common()))
    print("refusal reasons (top 12):")
    for reason, n in stats.reasons.most_common(12):
        print(f"  {n:7d}  {reason}")
    if stats.record_exc:
        print("make_record exceptions (ingest answers 0xC000; not crashes):")
        for what, n in stats.record_exc.most_common(10):
            print(f"  {n:7d}  {what}")
    if stats.index_failures:
        print("index failures (0xA700 for a malformed object):")
        for what, n in stats.index_failures.most_common(10):
            print(f"  {n:7d}  {what}")
    print(f"memory: peak per input {stats.peak_input_bytes / MIB:.1f} MiB (tracemalloc, bound {args.max_mib} MiB)"
          f" [{stats.peak_input_case}]; highest total traced {traced_peak / MIB:.1f} MiB; "
          f"RSS high-water {rss:.0f} MiB (at start {rss_before:.0f} MiB)")
    print(f"largest RSS rise by one input: {stats.rss_jump_mib:.0f} MiB [{stats.rss_jump_case}]")
    print("slowest inputs (both targets):")
    for sec, size, case in stats.slow:
        print(f"  {sec * 1000:8.0f} ms  {size:9d} B  {sec * 1e6 / max(size, 1):8.1f} us/B  [{case}]")
    unique_types = sorted({c.sig.split(":", 1)[1].split("@")[0] if c.kind in ("parse", "ingest", "record")
                           else c.kind for c in stats.crashes.values()})
    print(f"crashes: {len(stats.crashes)} unique ({sum(stats.crash_counts.values())} inputs); "
          f"exception types: {unique_types}")
    for c in stats.crashes.values():
        print(f"  {c.sig}  x{stats.crash_counts[c.sig]}  {len(c.data)} B  -> {c.path or '(no input)'}")
        print("    " + c.text.strip().splitlines()[-1][:200] if c.text.strip() else "")
    summary = {
        "iterations": stats.iterations, "seconds": round(elapsed, 2), "seed": args.seed,
        "inputs_per_s": round(stats.iterations / max(elapsed, 1e-9), 1),
        "parse": dict(stats.parse), "ingest": dict(stats.statuses), "mutators": dict(stats.mutators),
        "record_exceptions": dict(stats.record_exc), "index_failures": dict(stats.index_failures),
        "peak_per_input_mib": round(stats.peak_input_bytes / MIB, 1), "peak_per_input_case": stats.peak_input_case,
        "tracemalloc_peak_mib": round(traced_peak / MIB, 1), "rss_max_mib": round(rss, 1),
        "rss_rise_by_one_input_mib": round(stats.rss_jump_mib, 1), "rss_rise_case": stats.rss_jump_case,
        "slowest": [{"seconds": round(sec, 3), "size": size, "case": case} for sec, size, case in stats.slow],
        "crashes": [{"signature": c.sig, "kind": c.kind, "count": stats.crash_counts[c.sig], "case": c.case,
                     "size": len(c.data), "file": c.path, "hex": c.data[:4096].hex(),
                     "error": c.text.strip().splitlines()[-1] if c.text.strip() else ""}
                    for c in stats.crashes.values()],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "fuzz-ingest.json").write_text(json.dumps(summary, indent=1))


def replay(paths: Sequence[str], args: argparse.Namespace) -> int:
    """Run saved inputs through both targets and print what happens."""
    bad = 0
    work = Path(tempfile.mkdtemp(prefix="vesalius-fuzz-"))
    harness = Harness(work, args.on_conflict)
    try:
        for p in paths:
            data = Path(p).read_bytes()
            try:
                status, exc = check_parse(data)
                print(f"{p}: parse_part10 -> {status}" + (f" ({exc!r})" if exc else ""))
            except Exception:
                bad += 1
                print(f"{p}: parse_part10 CRASH\n{traceback.format_exc()}")
            try:
                print(f"{p}: ingest -> {harness.ingest(data)}")
            except Exception:
                bad += 1
                print(f"{p}: ingest CRASH\n{traceback.format_exc()}")
    finally:
        harness.close()
        shutil.rmtree(work, ignore_errors=True)
    return 1 if bad else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="run time (default 60)")
    ap.add_argument("--iterations", type=int, default=None, help="number of inputs instead of --seconds")
    ap.add_argument("--start", type=int, default=0, help="first input index (default 0)")
    ap.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    ap.add_argument("--max-mib", type=float, default=512.0, help="per-input memory bound in MiB (default 512)")
    ap.add_argument("--max-bomb-mib", type=int, default=300,
                    help="largest inflated size of generated deflate bombs (default 300)")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds one input may take (default 5)")
    ap.add_argument("--reopen-every", type=int, default=1000, help="fresh archive every N inputs (default 1000)")
    ap.add_argument("--on-conflict", default="keep", choices=("keep", "replace", "reject"))
    ap.add_argument("--no-tracemalloc", dest="tracemalloc", action="store_false",
                    help="skip per-input tracemalloc peaks (faster; RSS only)")
    ap.add_argument("--strict-record", action="store_true", help="make_record exceptions count as crashes")
    ap.add_argument("--no-minimize", dest="minimize", action="store_false", help="save crashing inputs as found")
    ap.add_argument("--minimize-s", type=float, default=20.0, help="time to minimise each crash (default 20)")
    ap.add_argument("--out-dir", default=str(OUT_DIR), help="where crashes and the summary go (bench-out)")
    ap.add_argument("--replay", nargs="+", metavar="FILE", help="run saved inputs and exit")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replay:
        return replay(args.replay, args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

"""Fuzzing the ingest parser (issue 4, "Bad input"): a short, derandomised hypothesis run.

The inputs are the mutations of ``benchmarks/fuzz_ingest.py`` (byte flips, truncations, length
and VR corruption, sequence bombs, deflate bombs, huge dimensions, Transfer Syntax swaps, random
bytes after a valid preamble...) stacked on small valid seeds. ``parse_part10`` may only return
or raise ``InvalidDicom``; ``Ingestor.ingest`` (MemoryStore archive) may raise nothing at all.

Crashes the fuzzer found are pinned below as ``xfail(strict=True)`` regression cases; until
they are fixed the property test tolerates exactly those (``_known_bug``), so it stays green
and still fails on anything new. When a fix lands, its regression case XPASSes (a failure
under ``strict``): remove the ``xfail`` mark and the matching entry in ``_known_bug``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import time
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from benchmarks.fuzz_ingest import (
    MIB,
    MUTATORS,
    PIXEL_DATA,
    Ctx,
    build_meta,
    encode_elem,
    layout,
    load_seeds,
    meta_elements,
    mutate,
    sequence_bomb,
)
from tests.conftest import make_settings
from vesalius.archive import Archive, open_archive
from vesalius.archive.ingest import Status
from vesalius.dicom import parse
from vesalius.dicom.parse import parse_part10
from vesalius.errors import InvalidDicom

TS_EXPLICIT = b"1.2.840.10008.1.2.1\0"
TS_DEFLATED = b"1.2.840.10008.1.2.1.99"


@functools.cache
def seeds() -> dict[str, bytes]:
    return load_seeds(small=True)


@functools.cache
def ctx() -> Ctx:
    # small bombs and floods: the large ones belong to the benchmark, not to every CI run
    return Ctx(seeds(), bomb_mib=(1,), max_depth=5000, max_flood=3000)


CASES = st.tuples(
    st.sampled_from(sorted(seeds())),
    st.lists(st.tuples(st.sampled_from(sorted(MUTATORS)), st.integers(0, 2**32 - 1)), min_size=1, max_size=4),
)
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])


def _known_bug(exc: BaseException) -> str | None:
    """Which pinned regression an exception escaping parse_part10 is, if any (none left:
    deep nesting, bypassed deflate checks and unconvertible values are now refused)."""
    return None


def _input(case: tuple[str, list[tuple[str, int]]]) -> bytes:
    seed, ops = case
    return mutate(seeds()[seed], ops, ctx())


@pytest.fixture(scope="module")
def memory_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    a = open_archive(make_settings(tmp_path_factory.mktemp("fuzz"), storage="memory"))
    yield a
    a.close()


def test_seeds_are_accepted() -> None:
    assert len(seeds()) >= 8
    for name, data in seeds().items():
        parsed = parse_part10(data)
        assert parsed.sop_instance_uid, name


@FUZZ
@given(CASES)
def test_parse_raises_only_invalid_dicom(case: tuple[str, list[tuple[str, int]]]) -> None:
    data = _input(case)
    try:
        parse_part10(data)
        event("accepted")
    except InvalidDicom as exc:
        event(f"refused: {str(exc).split(':')[0][:50]}")
    except Exception as exc:
        known = _known_bug(exc)
        if known is None:
            raise
        event(f"known bug: {known}")


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on undecodable text in make_record
@FUZZ
@given(CASES)
def test_ingest_never_raises(memory_archive: Archive, case: tuple[str, list[tuple[str, int]]]) -> None:
    data = _input(case)
    try:
        parse_part10(data)
        refused = False
    except InvalidDicom:
        refused = True
    except Exception:
        refused = True  # a known parser crash: ingest must still answer (0xC000)
    rep = memory_archive.ingestor.ingest(data, "FUZZ")
    assert isinstance(rep.status, Status) and isinstance(rep.outcome, str)
    event(f"{rep.status.name}/{rep.outcome}")
    if refused:
        assert rep.status == Status.CANNOT_UNDERSTAND and rep.outcome == "invalid" and rep.reason
        assert not memory_archive.store.exists(hashlib.sha256(data).hexdigest())


# --------------------------------------------------------------------------------------------
# Decompression bombs (MAX_INFLATED_BYTES lowered so that the cases stay small)
# --------------------------------------------------------------------------------------------


def _deflated(group_length: str, late_ts: bool = False, mib: int | None = 4) -> bytes:
    """The deflated CT seed with its file meta rebuilt; its pixel data replaced by ``mib`` MiB
    of zeros (a bomb) unless ``mib`` is None."""
    src = seeds()["gen_ct_deflated"]
    lay = layout(src)
    stream = src[lay.meta_end:]
    if mib is not None:
        plain = zlib.decompressobj(-zlib.MAX_WBITS).decompress(stream)
        plain = plain[:plain.rindex(b"\xe0\x7f\x10\x00")]
        comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        stream = comp.compress(plain + encode_elem(PIXEL_DATA, b"OB", b"", length=mib * MIB))
        stream += comp.flush(zlib.Z_FULL_FLUSH) + ctx().zero_chunk() * mib + b"\x03\x00"
    items = meta_elements(src, lay)
    if late_ts:  # a long (0002,0001) pushes the Transfer Syntax UID past the first KiB
        items = [(t, vr, bytes(1024) if t == 0x00020001 else v) for t, vr, v in items]
    return build_meta(items, group_length) + stream


@pytest.fixture
def small_inflate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse, "MAX_INFLATED_BYTES", 1 * MIB)


def test_deflate_bomb_with_group_length_is_refused(small_inflate_limit: None) -> None:
    with pytest.raises(InvalidDicom, match="decompression bomb"):
        parse_part10(_deflated("ok"))


def test_deflated_under_the_limit_is_accepted(small_inflate_limit: None) -> None:
    for group_length in ("ok", "none"):
        assert parse_part10(_deflated(group_length, mib=None)).transfer_syntax == TS_DEFLATED.decode()


@pytest.mark.parametrize("group_length,late_ts", [("none", False), ("huge", False), ("ok", True)])
def test_deflate_bomb_check_cannot_be_bypassed(small_inflate_limit: None, group_length: str,
                                               late_ts: bool) -> None:
    with pytest.raises(InvalidDicom):
        parse_part10(_deflated(group_length, late_ts))


# --------------------------------------------------------------------------------------------
# Crashes the fuzzer found (minimal inputs; see the hex in each docstring)
# --------------------------------------------------------------------------------------------


def _meta_only(ts: bytes, group_length: str = "ok") -> bytes:
    return build_meta([(0x00020010, b"UI", ts)], group_length)


@pytest.mark.parametrize("kind", ["closed", "open", "deflated"])
def test_deep_nesting_is_refused(kind: str) -> None:
    """Input: 00 x 128, then
    4449434d 0200100055491400 312e322e3834302e31303030382e312e322e3100 (DICM, Transfer Syntax
    Explicit VR Little Endian), then 300 x 400030a753510000ffffffff feff00e0ffffffff (Content
    Sequence, undefined length, holding an item of undefined length), for ``closed`` followed
    by 300 x feff0de000000000feffdde000000000 (the delimiters). ``deflated``: the same nesting
    deflated (a ~100-byte data set the deflate bomb check passes; the fuzzer's was 459 bytes)."""
    if kind == "deflated":
        comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = _meta_only(TS_DEFLATED) + comp.compress(sequence_bomb(300, "closed")) + comp.flush()
        assert len(data) < 400
    else:
        data = _meta_only(TS_EXPLICIT, "none") + sequence_bomb(300, kind)
    with pytest.raises(InvalidDicom):
        parse_part10(data)


@pytest.mark.parametrize("group_length", ["none", "huge"])
def test_corrupt_deflate_without_group_length_is_refused(group_length: str) -> None:
    """Input (178 bytes): 00 x 128, then
    4449434d 0200100055491600 312e322e3834302e31303030382e312e322e312e3939 (DICM, Transfer
    Syntax Deflated Explicit VR Little Endian, no (0002,0000)), then ff x 16."""
    with pytest.raises(InvalidDicom):
        parse_part10(_meta_only(TS_DEFLATED, group_length) + b"\xff" * 16)


def _with_vr(data: bytes, tag: int, vr: bytes) -> bytes:
    el = layout(data).find(tag)
    assert el is not None
    return data[:el.pos + 4] + vr + data[el.pos + 6:]


@pytest.mark.parametrize("where", ["meta group length", "meta group length, no VR", "SOPClassUID as UL",
                                   "SOPInstanceUID as ZZ", "Rows as UL", "Columns as ZZ"])
def test_unconvertible_values_are_refused(where: str) -> None:
    """``meta group length`` (171 bytes): 00 x 128, then 4449434d 02000000554c0300616263
    0200100055491400312e322e3834302e31303030382e312e322e3100: (0002,0000) UL with a 3-byte
    value. ``meta group length, no VR`` (141 bytes, as the fuzzer minimised it): 00 x 128,
    then 4449434d 020000000000020000. The others are the generated CT with one element's VR
    bytes replaced."""
    ct = seeds()["gen_ct_0"]
    data = {
        "meta group length": b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x03\x00abc"
        + encode_elem(0x00020010, b"UI", TS_EXPLICIT),
        "meta group length, no VR": b"\0" * 128 + bytes.fromhex("4449434d020000000000020000"),
        "SOPClassUID as UL": _with_vr(ct, 0x00080016, b"UL"),
        "SOPInstanceUID as ZZ": _with_vr(ct, 0x00080018, b"ZZ"),
        "Rows as UL": _with_vr(ct, 0x00280010, b"UL"),
        "Columns as ZZ": _with_vr(ct, 0x00280011, b"ZZ"),
    }[where]
    with pytest.raises(InvalidDicom):
        parse_part10(data)


def test_zero_element_flood_is_cheap() -> None:
    src = seeds()["gen_ct_deflated"]
    lay = layout(src)
    plain = zlib.decompressobj(-zlib.MAX_WBITS).decompress(src[lay.meta_end:])
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = comp.compress(plain) + comp.flush(zlib.Z_FULL_FLUSH) + ctx().zero_chunk() * 8 + b"\x03\x00"
    data = build_meta(meta_elements(src, lay), "ok") + stream
    assert len(data) < 16384
    started = time.perf_counter()
    with contextlib.suppress(InvalidDicom):  # refused or accepted: either way, quickly
        parse_part10(data)
    assert time.perf_counter() - started < 0.25

"""Real compressed files through the archive: kept as they arrived, transcoded on the way out.

dcmtk's ``storescu`` sends pydicom's and pydicom-data's sample files in their own transfer
syntax (PS3.5 Annex A); the archive keeps each as it arrived. Retrieval sends the stored
object unchanged when the peer accepts its syntax (``getscu +xv``, ``storescp +xa``) and a
decoded copy otherwise (PS3.4 C.4.2.1.4.1, C.4.3.1.3.1). A lossy syntax is never produced
from a lossless original (PS3.5 8.2).
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
)
from pynetdicom import AE, _config, build_role, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelGet,
)

from tests import peers
from tests.conftest import make_settings
from tests.dicomgen import compress, pydicom_test_file
from vesalius.archive import Archive, open_archive
from vesalius.archive.retrieve import InstanceRef
from vesalius.config import Remote
from vesalius.dimse.server import DimseServer

pytestmark = pytest.mark.skipif(
    not peers.dcmtk_available("storescu", "getscu", "storescp"),
    reason="dcmtk is not installed (apt-get install dcmtk)",
)
AET = "VESALIUS"
NATIVE = {str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian), str(ExplicitVRBigEndian)}
LOSSY = {str(JPEGBaseline8Bit), str(JPEGExtended12Bit), str(JPEG2000), str(JPEGLSNearLossless)}


@dataclass(frozen=True)
class Case:
    """A real file and the dcmtk options that propose / prefer its transfer syntax."""

    name: str
    propose: str  # storescu: propose this syntax (and the uncompressed ones)
    prefer: str  # getscu: prefer this syntax for the C-STORE sub-operations
    derive: str = ""  # transcode the file to this syntax first (none of the samples has it)

    @property
    def big_endian(self) -> bool:
        return self.propose == "-xb"

    @property
    def id(self) -> str:
        stem = self.name.removesuffix(".dcm")
        return f"{stem}-as-{UID(self.derive).keyword}" if self.derive else stem

    def source(self, work: Path) -> Path:
        """The file to send: the sample itself, or a transcoded copy (same SOP Instance UID)."""
        try:
            path = pydicom_test_file(self.name)
        except FileNotFoundError:
            pytest.skip(f"{self.name} is not installed (pip install pydicom-data)")
        if not self.derive:
            return path
        return compress(path, work / f"{self.id}.dcm", self.derive)


CASES = (
    Case("MR_small_jp2klossless.dcm", "-xv", "+xv"),  # JPEG 2000 lossless
    Case("JPEG2000.dcm", "-xw", "+xw"),  # JPEG 2000 (lossy)
    Case("693_J2KR.dcm", "-xv", "+xv"),  # CT 512x512, JPEG 2000 lossless
    Case("RG1_J2KR.dcm", "-xv", "+xv"),  # CR 1955x1841, JPEG 2000 lossless
    Case("MR_small_RLE.dcm", "-xr", "+xr"),  # RLE lossless
    Case("emri_small_RLE.dcm", "-xr", "+xr"),  # enhanced MR, 10 frames, RLE
    Case("emri_small_jpeg_ls_lossless.dcm", "-xt", "+xt"),  # enhanced MR, JPEG-LS lossless
    Case("emri_small_jpeg_2k_lossless.dcm", "-xv", "+xv"),  # enhanced MR, JPEG 2000 lossless
    Case("SC_rgb_jpeg_gdcm.dcm", "-xs", "+xs"),  # RGB JPEG lossless SV1
    Case("SC_rgb_jpeg_dcmtk.dcm", "-xy", "+xy"),  # RGB JPEG baseline (lossy)
    Case("JPGExtended.dcm", "-xx", "+xx"),  # 12-bit JPEG extended (lossy)
    Case("color3d_jpeg_baseline.dcm", "-xy", "+xy"),  # US, 120 frames, JPEG baseline
    Case("image_dfl.dcm", "-xd", "+xd"),  # deflated explicit VR little endian
    Case("ExplVR_BigEnd.dcm", "-xb", "+xb"),  # explicit VR big endian
    # JPEG-LS near-lossless: the samples that have it lack Study/Series UIDs; dcmcjpls makes one
    Case("emri_small.dcm", "-xu", "+xu", derive=str(JPEGLSNearLossless)),
)


# ------------------------------------------------------------------------------ helpers

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT",
             b"UV"}


def dataset_bytes(data: bytes) -> bytes:
    """The bytes of a Part-10 object after its File Meta Information (PS3.10 7.1)."""
    assert data[128:132] == b"DICM", "not a Part-10 object"
    off = 132
    while off + 8 <= len(data):
        group, _ = struct.unpack_from("<HH", data, off)
        if group != 0x0002:
            break
        vr = data[off + 4:off + 6]
        if vr in _LONG_VRS:
            off += 12 + struct.unpack_from("<I", data, off + 8)[0]
        else:
            off += 8 + struct.unpack_from("<H", data, off + 6)[0]
    return data[off:]


def comparable(ds: Dataset) -> dict[int, Any]:
    """Top-level values, without group lengths and trailing padding (dcmtk drops both).

    VRs are left out: dcmtk rightly sends encapsulated Pixel Data as OB where a file had OW.
    """
    return {int(e.tag): e.value for e in ds
            if e.tag.element != 0x0000 and int(e.tag) != 0xFFFCFFFC}


def pixels(ds: Dataset) -> np.ndarray[Any, Any]:
    return np.asarray(ds.pixel_array)


def image_keys(ds: Dataset) -> dict[str, str | None]:
    return {"StudyInstanceUID": str(ds.StudyInstanceUID),
            "SeriesInstanceUID": str(ds.SeriesInstanceUID),
            "SOPInstanceUID": str(ds.SOPInstanceUID)}


@dataclass
class Stored:
    """One sample file, sent with storescu into one of the shelf's archives."""

    case: Case
    source: Path
    original: Dataset
    archive: Archive
    server: DimseServer
    work: Path
    _expected: np.ndarray[Any, Any] | None = field(default=None, repr=False)
    _retrieved: dict[str, Dataset] = field(default_factory=dict, repr=False)

    @property
    def transfer_syntax(self) -> str:
        return str(self.original.file_meta.TransferSyntaxUID)

    @property
    def expected_pixels(self) -> np.ndarray[Any, Any]:
        """pydicom's decode of the original file (computed once)."""
        if self._expected is None:
            self._expected = pixels(self.original)
        return self._expected

    def ref(self) -> InstanceRef:
        (ref,) = self.archive.retrieval.instances_of(sop_uid=str(self.original.SOPInstanceUID))
        return ref

    def stored_bytes(self) -> bytes:
        return self.archive.read(self.ref())

    def get_native(self) -> Dataset:
        """``getscu`` proposing the uncompressed syntaxes only (its default); once."""
        if "get" not in self._retrieved:
            (got,) = peers.getscu("IMAGE", image_keys(self.original), AET, self.server.port,
                                  self.work / "get-native")
            self._retrieved["get"] = dcmread(got)
        return self._retrieved["get"]

    def move_native(self) -> Dataset:
        """C-MOVE into a ``storescp`` that accepts the uncompressed syntaxes only; once."""
        if "move" not in self._retrieved:
            with peers.StoreSCP(self.work / "move-native", aet="NATIVE", accept_all=False) as scp:
                self._retrieved["move"] = dcmread(move_into(self, scp))
        return self._retrieved["move"]


def move_into(stored: Stored, scp: peers.StoreSCP) -> Path:
    """C-MOVE the stored instance to ``scp`` (registered as a remote); the file it got."""
    stored.archive.add_remote(Remote("dest", scp.aet, scp.host, scp.port))
    peers.movescu("IMAGE", image_keys(stored.original), AET, stored.server.port,
                  move_destination=scp.aet)
    (got,) = scp.wait_for_files(1)
    return got


class Shelf:
    """A few archives (SQLite) that hold the sample files, each stored once per module.

    Variants of one image share a SOP Instance UID (``MR_small_*``, ``emri_small_*``), so
    each file goes to the first archive that does not hold its SOP Instance UID yet.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.slots: list[tuple[Archive, DimseServer, set[str]]] = []
        self.stored: dict[str, Stored] = {}

    def store(self, case: Case) -> Stored:
        if case.id in self.stored:
            return self.stored[case.id]
        work = self.root / case.id
        work.mkdir(exist_ok=True)
        source = case.source(work)
        original = dcmread(source)
        uid = str(original.SOPInstanceUID)
        free = [slot for slot in self.slots if uid not in slot[2]]
        if not free:
            archive = open_archive(make_settings(self.root / f"archive{len(self.slots)}"))
            server = DimseServer(archive, host="127.0.0.1", port=0)
            server.start()
            free = [(archive, server, set())]
            self.slots.append(free[0])
        archive, server, uids = free[0]
        peers.storescu([source], AET, server.port, [case.propose])
        uids.add(uid)
        self.stored[case.id] = Stored(case, source, original, archive, server, work)
        return self.stored[case.id]

    def close(self) -> None:
        for archive, server, _ in self.slots:
            server.stop(grace=5.0)
            archive.close()


@pytest.fixture(scope="module")
def shelf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shelf]:
    s = Shelf(tmp_path_factory.mktemp("shelf"))
    yield s
    s.close()


@pytest.fixture(params=CASES, ids=lambda c: c.id)
def stored(request: pytest.FixtureRequest, shelf: Shelf) -> Stored:
    return shelf.store(request.param)


@pytest.fixture(scope="module")
def replacing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DimseServer]:
    """An archive whose conflict policy lets each variant of one image replace the last."""
    archive = open_archive(make_settings(tmp_path_factory.mktemp("replacing"),
                                         on_conflict="replace"))
    server = DimseServer(archive, host="127.0.0.1", port=0)
    server.start()
    yield server
    server.stop(grace=5.0)
    archive.close()


# ------------------------------------------------------------------------------ ingest


def test_kept_in_the_transfer_syntax_it_arrived_in(stored: Stored) -> None:
    ref = stored.ref()  # exactly one instance with this SOP Instance UID
    assert ref.transfer_syntax == stored.transfer_syntax
    data = stored.stored_bytes()
    assert ref.blob_key == hashlib.sha256(data).hexdigest()
    kept = dcmread(io.BytesIO(data))
    meta = kept.file_meta
    assert meta.TransferSyntaxUID == stored.transfer_syntax
    assert meta.MediaStorageSOPClassUID == stored.original.SOPClassUID
    assert meta.MediaStorageSOPInstanceUID == stored.original.SOPInstanceUID
    # storescu re-encodes the data set it sends (it drops group lengths and trailing padding
    # and may change sequence length encoding), so compare values, and the encoded pixel data
    # byte for byte: compressed frames must never be touched.
    assert comparable(kept) == comparable(stored.original)
    assert kept.PixelData == stored.original.PixelData
    if stored.transfer_syntax == DeflatedExplicitVRLittleEndian:
        zlib.decompress(dataset_bytes(data), -15)  # still deflated, as it arrived


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_pynetdicom_send_is_kept_byte_exact(case: Case, replacing_server: DimseServer,
                                            monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    """A sender that sends the file's own data set bytes gets exactly those bytes archived."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # send the file as is
    source = case.source(tmp_path)
    original = dcmread(source, stop_before_pixels=True)
    ts = str(original.file_meta.TransferSyntaxUID)
    ae = AE("PYSTORE")
    ae.add_requested_context(original.SOPClassUID, [ts])
    assoc = ae.associate("127.0.0.1", replacing_server.port, ae_title=AET)
    assert assoc.is_established
    try:
        status = assoc.send_c_store(source)
    finally:
        assoc.release()
    assert status.Status == 0x0000
    archive = replacing_server.archive
    (ref,) = archive.retrieval.instances_of(sop_uid=str(original.SOPInstanceUID))
    assert ref.transfer_syntax == ts
    assert dataset_bytes(archive.read(ref)) == dataset_bytes(source.read_bytes())


# ------------------------------------------------------------------------------ C-GET


def test_get_uncompressed_only_gets_it_decoded(stored: Stored, request: pytest.FixtureRequest
                                               ) -> None:
    ds = stored.get_native()
    assert str(ds.file_meta.TransferSyntaxUID) in NATIVE
    assert ds.PatientName == stored.original.PatientName
    assert ds.StudyInstanceUID == stored.original.StudyInstanceUID
    np.testing.assert_array_equal(pixels(ds), stored.expected_pixels)


def test_get_in_the_stored_syntax_is_byte_identical(stored: Stored) -> None:
    (got,) = peers.getscu("IMAGE", image_keys(stored.original), AET, stored.server.port,
                          stored.work / "get-as-stored", extra_args=["+B", stored.case.prefer])
    data = got.read_bytes()
    got.unlink()
    assert dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == stored.transfer_syntax
    assert dataset_bytes(data) == dataset_bytes(stored.stored_bytes())


# ------------------------------------------------------------------------------ C-MOVE


def test_move_to_storescp_accepting_uncompressed_only_is_decoded(stored: Stored) -> None:
    """storescp's default accepts the uncompressed syntaxes only (lossy originals included)."""
    ds = stored.move_native()
    ts = str(ds.file_meta.TransferSyntaxUID)
    assert ts in NATIVE
    if stored.transfer_syntax in NATIVE:
        assert ts == stored.transfer_syntax  # big endian is uncompressed: sent as stored
    assert ds.PatientName == stored.original.PatientName
    np.testing.assert_array_equal(pixels(ds), stored.expected_pixels)


def test_move_to_storescp_accepting_all_gets_it_as_stored(stored: Stored) -> None:
    with peers.StoreSCP(stored.work / "move-all", aet="ANYTS", accept_all=True,
                        extra_args=["+B"]) as scp:
        got = move_into(stored, scp)
    data = got.read_bytes()
    assert dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == stored.transfer_syntax
    assert dataset_bytes(data) == dataset_bytes(stored.stored_bytes())


def test_decoded_copy_keeps_the_sop_instance_uid(stored: Stored, request: pytest.FixtureRequest
                                                 ) -> None:
    """A transcoded copy is the same instance in another syntax (PS3.5 Annex A): same UIDs."""
    copies = [stored.move_native(), stored.get_native()]
    for ds in copies:
        assert ds.SOPInstanceUID == stored.original.SOPInstanceUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == stored.original.SOPInstanceUID
        assert ds.SOPClassUID == stored.original.SOPClassUID


# ------------------------------------------------------------------------------ lossy / lossless


def _shelved(shelf: Shelf, name: str, propose: str) -> Stored:
    return shelf.store(Case(name, propose, ""))


def _c_get(stored: Stored, accepted: list[str]) -> tuple[list[tuple[str, Dataset]], int]:
    """C-GET one instance, accepting its SOP class in ``accepted`` syntaxes only.

    Each syntax gets its own presentation context. Returns what arrived (transfer syntax,
    data set) and the final C-GET status.
    """
    original = stored.original
    sop_class = UID(original.SOPClassUID)
    ae = AE("PYGET")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for ts in accepted:
        ae.add_requested_context(sop_class, [ts])
    received: list[tuple[str, Dataset]] = []

    def on_store(event: Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        received.append((str(event.context.transfer_syntax), ds))
        return 0x0000

    assoc = ae.associate("127.0.0.1", stored.server.port, ae_title=AET,
                         ext_neg=[build_role(sop_class, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    for key, value in image_keys(original).items():
        setattr(query, key, value)
    final = -1
    try:
        for status, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
            if status and "Status" in status and status.Status not in (0xFF00, 0xFF01):
                final = int(status.Status)
    finally:
        assoc.release()
    return received, final


def test_lossless_original_is_never_sent_lossy(shelf: Shelf) -> None:
    stored = _shelved(shelf, "MR_small_jp2klossless.dcm", "-xv")
    received, final = _c_get(stored, [str(JPEG2000), str(JPEGBaseline8Bit)])
    assert received == []  # nothing, rather than a lossy copy
    assert final != 0x0000


def test_lossless_original_is_reencoded_losslessly_for_a_compressed_only_peer(shelf: Shelf
                                                                              ) -> None:
    """RLE original, peer takes JPEG 2000 lossy or lossless: it gets JPEG 2000 lossless."""
    stored = _shelved(shelf, "MR_small_RLE.dcm", "-xr")
    original = stored.original
    received, final = _c_get(stored, [str(JPEG2000), str(JPEG2000Lossless)])
    assert final == 0x0000
    ((ts, ds),) = received
    assert ts == JPEG2000Lossless
    assert ts not in LOSSY
    np.testing.assert_array_equal(pixels(ds), pixels(original))


def test_lossy_original_is_decompressed_for_an_uncompressed_only_peer(shelf: Shelf) -> None:
    stored = _shelved(shelf, "SC_rgb_jpeg_dcmtk.dcm", "-xy")
    original = stored.original
    received, final = _c_get(stored, [str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)])
    assert final == 0x0000
    ((ts, ds),) = received
    assert ts in NATIVE
    np.testing.assert_array_equal(pixels(ds), pixels(original))
    # ... and a lossy original may go on in its own lossy syntax
    received, final = _c_get(stored, [str(JPEGBaseline8Bit)])
    assert final == 0x0000
    assert [ts for ts, _ in received] == [JPEGBaseline8Bit]


def test_little_endian_original_to_a_big_endian_only_peer(shelf: Shelf) -> None:
    stored = _shelved(shelf, "CT_small.dcm", "-xe")
    original = stored.original
    received, final = _c_get(stored, [str(ExplicitVRBigEndian)])
    assert final == 0x0000
    ((ts, ds),) = received
    assert ts == ExplicitVRBigEndian
    np.testing.assert_array_equal(pixels(ds), pixels(original))


def test_explicit_original_to_an_implicit_only_peer(shelf: Shelf) -> None:
    """Implicit VR Little Endian is the one syntax every peer supports (PS3.5 10.1)."""
    stored = _shelved(shelf, "CT_small.dcm", "-xe")
    original = stored.original
    received, final = _c_get(stored, [str(ImplicitVRLittleEndian)])
    assert final == 0x0000
    ((ts, ds),) = received
    assert ts == ImplicitVRLittleEndian
    np.testing.assert_array_equal(pixels(ds), pixels(original))

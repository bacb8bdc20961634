"""docs/conformance.md stays true to the code."""

from __future__ import annotations

from pathlib import Path

from vesalius.dicom import uids
from vesalius.dicom.keys import KEYS
from vesalius.dicom.parse import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION

DOC = (Path(__file__).parent.parent / "docs" / "conformance.md").read_text(encoding="utf-8")


def test_every_accepted_transfer_syntax_is_listed() -> None:
    for ts in uids.STORAGE_TRANSFER_SYNTAXES:
        assert f"`{ts}`" in DOC, ts


def test_every_query_key_is_listed() -> None:
    for kw in KEYS:
        assert f"| {kw} |" in DOC, kw


def test_identity_and_sop_classes() -> None:
    assert str(IMPLEMENTATION_CLASS_UID) in DOC and IMPLEMENTATION_VERSION in DOC
    for uid in (uids.VERIFICATION, uids.STORAGE_COMMITMENT_PUSH, *uids.PATIENT_ROOT_MODELS,
                *uids.STUDY_ROOT_MODELS):
        assert uid in DOC, uid

"""Sample studies for ``make demo``: pydicom's bundled test files (and pydicom-data if present)."""

from __future__ import annotations

from pathlib import Path

_NAMES = ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm",
          "emri_small.dcm", "rtdose.dcm", "liver.dcm", "RG1_UNCR.dcm",
          "693_J2KR.dcm", "color3d_jpeg_baseline.dcm", "MR2_J2KR.dcm", "US1_UNCR.dcm")


def sample_files() -> list[Path]:
    """Paths of the sample files available locally (never downloads)."""
    import pydicom

    roots = [Path(pydicom.__file__).parent / "data" / "test_files"]
    try:
        import data_store  # type: ignore[import-not-found]  # the pydicom-data package

        roots.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    found = []
    for name in _NAMES:
        for root in roots:
            hits = list(root.rglob(name))
            if hits:
                found.append(hits[0])
                break
    return found

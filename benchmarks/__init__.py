"""Side-by-side benchmarks: Vesalius against Orthanc and the dcmtk ``storescp`` floor.

Run the scripts directly (``.venv/bin/python benchmarks/ingest.py``); see ``README.md``.
"""

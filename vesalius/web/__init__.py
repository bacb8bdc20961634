"""The HTTP interface (ASGI, Starlette): health now; DICOMweb and the viewer next."""

"""The project's exceptions.

Each boundary (DIMSE, HTTP, CLI) turns these into its own protocol's answer: a DIMSE
status (PS3.4 Annex B/C, PS3.7 Annex C), an HTTP status with a JSON body, or a CLI
message with an exit code. Messages name the problem and, where possible, the fix.
"""

from __future__ import annotations


class VesaliusError(Exception):
    """Base class of every error the project raises on purpose."""


class ConfigError(VesaliusError):
    """The settings are invalid; the message says which key and why."""


class InvalidDicom(VesaliusError):
    """The bytes are not a DICOM object we can accept (not DICOM, truncated, bad UIDs...)."""


class NotFound(VesaliusError):
    """The requested patient, study, series, instance or remote does not exist."""


class Conflict(VesaliusError):
    """An instance with the same SOP Instance UID but different content was refused."""


class StorageError(VesaliusError):
    """The blob store could not write or read an object (disk full, missing, corrupt)."""


class AccessDenied(VesaliusError):
    """The caller may not do this."""


class QueryError(VesaliusError):
    """A query identifier is malformed (wrong level, unsupported key, bad range)."""

"""One typed settings object for every interface.

Values come, in increasing priority, from the defaults below, a TOML file (``--config``),
``VESALIUS_*`` environment variables and command-line options. Remote DICOM nodes are
``[[remote]]`` tables in the TOML file.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from vesalius.errors import ConfigError

OnConflict = Literal["keep", "replace", "reject"]
_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 6.2 AE: no backslash, no control


def check_ae_title(value: str, what: str = "AE title") -> str:
    """Validate an Application Entity title (PS3.5 6.2, VR AE: 1-16 chars, no backslash)."""
    v = value.strip()
    if not v or not _AE_RE.match(v):
        raise ConfigError(f"{what} {value!r} is not a valid AE title (1-16 printable characters, no backslash)")
    return v


@dataclass(frozen=True)
class Remote:
    """A remote DICOM node (C-MOVE destination, C-STORE target)."""

    name: str
    ae_title: str
    host: str
    port: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", check_ae_title(self.ae_title, f"remote {self.name!r} ae_title"))
        if not (0 < int(self.port) < 65536):
            raise ConfigError(f"remote {self.name!r}: port {self.port} is out of range 1-65535")


@dataclass(frozen=True)
class Settings:
    """Every setting of a Vesalius process; see docs/architecture.md for their meaning."""

    data_dir: Path = Path("vesalius-data")
    ae_title: str = "VESALIUS"
    dicom_host: str = "0.0.0.0"
    dicom_port: int = 11112
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    db: str = ""  # empty: SQLite file in data_dir
    on_conflict: OnConflict = "keep"
    case_insensitive_names: bool = True
    max_find_results: int = 50000  # C-FIND answers at most this many matches (0: no limit)
    max_associations: int = 64  # per DICOM worker process
    dicom_workers: int = 1  # processes sharing the DICOM port (SO_REUSEPORT), for parallel ingest
    max_pdu_size: int = 262144
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    storage: str = "filesystem"  # filesystem | memory
    encryption_key: str = ""  # encryption at rest: "file:/path/keys.json" or "env:VARNAME"; empty: off
    remotes: tuple[Remote, ...] = field(default_factory=tuple)
    log_level: str = "INFO"
    # DICOMweb (PS3.18)
    qido_max_results: int = 10000  # QIDO-RS answers at most this many matches per request
    stow_max_bytes: int = 4 << 30  # largest STOW-RS request body accepted
    cors_origins: str = ""  # comma-separated origins allowed by CORS ("*" for any); empty: CORS off
    render_cache_mb: int = 128  # rendered images and thumbnails kept in memory
    public_url: str = ""  # base URL clients reach us at (behind a proxy); empty: from the request
    # Security
    session_idle_minutes: float = 15.0  # browser sessions end after this much inactivity
    oidc_issuer: str = ""  # OpenID Connect issuer whose bearer tokens are accepted (empty: none)
    oidc_audience: str = "vesalius"
    oidc_jwks: str = ""  # JWKS URL (https://...) or file path of the issuer's keys

    def __post_init__(self) -> None:
        check_ae_title(self.ae_title)
        if self.on_conflict not in ("keep", "replace", "reject"):
            raise ConfigError(f"on_conflict must be keep, replace or reject, not {self.on_conflict!r}")
        for name in ("dicom_port", "http_port"):
            port = getattr(self, name)
            if not (0 <= port < 65536):
                raise ConfigError(f"{name} {port} is out of range 0-65535")
        if not 1 <= self.dicom_workers <= 64:
            raise ConfigError("dicom_workers must be between 1 and 64")
        if self.dicom_workers > 1 and self.dicom_port == 0:
            raise ConfigError("dicom_workers > 1 needs a fixed dicom_port")
        if self.max_find_results < 0:
            raise ConfigError("max_find_results must be 0 (no limit) or positive")
        if self.max_associations < 1:
            raise ConfigError("max_associations must be at least 1")
        if self.max_pdu_size != 0 and self.max_pdu_size < 4096:
            raise ConfigError("max_pdu_size must be 0 (unlimited) or at least 4096 bytes")
        if self.qido_max_results < 1:
            raise ConfigError("qido_max_results must be at least 1")
        if self.stow_max_bytes < 1024:
            raise ConfigError("stow_max_bytes must be at least 1024")
        if self.render_cache_mb < 0:
            raise ConfigError("render_cache_mb must be 0 or positive")
        if self.oidc_issuer and not self.oidc_jwks:
            raise ConfigError("oidc_issuer needs oidc_jwks (the issuer's JWKS URL or file)")
        if self.session_idle_minutes <= 0:
            raise ConfigError("session_idle_minutes must be positive")
        if self.storage not in ("filesystem", "memory"):
            raise ConfigError(f"storage must be filesystem or memory, not {self.storage!r}")
        if self.encryption_key and not self.encryption_key.startswith(("file:", "env:")):
            raise ConfigError('encryption_key must be "file:/path/keys.json" or "env:VARNAME" (empty: no encryption)')

    @property
    def db_url(self) -> str:
        """The SQLAlchemy URL of the index (default: SQLite file in the data dir)."""
        if self.db:
            return self.db
        return f"sqlite:///{(self.data_dir / 'index.sqlite').resolve()}"


_FIELD_TYPES = {f.name: f.type for f in fields(Settings)}


def _coerce(name: str, value: Any) -> Any:
    kind = str(_FIELD_TYPES[name])
    if name == "data_dir":
        return Path(value).expanduser()
    if name == "remotes":
        return value
    if "int" in kind:
        return int(value)
    if "float" in kind:
        return float(value)
    if "bool" in kind:
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in ("1", "true", "yes", "on")
    return str(value)


def load_settings(config: Path | None = None, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from defaults, a TOML file, ``VESALIUS_*`` env vars and overrides.

    Overrides whose value is None are ignored, so CLI options left unset fall through.
    """
    values: dict[str, Any] = {}
    remotes: list[Remote] = []
    if config is not None:
        try:
            raw = tomllib.loads(Path(config).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {config} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config} is not valid TOML: {exc}") from exc
        for key, val in raw.items():
            if key == "remote":
                if not isinstance(val, list):
                    raise ConfigError("[[remote]] must be an array of tables")
                for r in val:
                    try:
                        remotes.append(Remote(str(r["name"]), str(r["ae_title"]), str(r["host"]), int(r["port"])))
                    except KeyError as exc:
                        raise ConfigError(f"[[remote]] entry is missing {exc}; needs name, ae_title, host, port") from exc
            elif key in _FIELD_TYPES and key != "remotes":
                values[key] = _coerce(key, val)
            elif isinstance(val, dict):
                continue  # tables of later features ([ai], [security] ...) are read by them
            else:
                raise ConfigError(f"unknown setting {key!r} in {config}")
    environ = os.environ if env is None else env
    for name in _FIELD_TYPES:
        if name == "remotes":
            continue
        ev = environ.get(f"VESALIUS_{name.upper()}")
        if ev is not None and ev != "":
            values[name] = _coerce(name, ev)
    for name, val in overrides.items():
        if val is None:
            continue
        if name not in _FIELD_TYPES:
            raise ConfigError(f"unknown setting {name!r}")
        values[name] = _coerce(name, val)
    values["remotes"] = tuple(remotes)
    try:
        return Settings(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc

"""The ``vesalius`` command: serve, send, import, query the archive's state.

Every command takes ``--config``, ``--data-dir`` and ``--db``. Errors print one line
naming the problem and exit non-zero (1: failure, 2: usage or configuration).
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from vesalius import __version__
from vesalius.config import Remote, Settings, load_settings
from vesalius.errors import ConfigError, VesaliusError


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--db", default=None, help="Index URL (default: SQLite in the data dir; postgresql+psycopg://...).")(f)
    f = click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data directory.")(f)
    f = click.option("--config", "config", type=click.Path(path_type=Path), default=None, help="TOML settings file.")(f)
    return f


def _settings(config: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, **overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


@contextmanager
def _archive(settings: Settings, recover: bool = True) -> Iterator[Any]:
    from vesalius.archive import open_archive

    try:
        archive = open_archive(settings, recover=recover)
    except VesaliusError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        raise click.ClickException(f"cannot open the archive: {type(exc).__name__}: {exc}") from None
    try:
        yield archive
    finally:
        archive.close()


def _progress(total: int, label: str) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    transient=False, disable=not sys.stderr.isatty(), console=None)


@click.group()
@click.version_option(__version__, prog_name="vesalius")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Vesalius: DICOM archive, DICOMweb, viewer and AI in one process."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# ---------------------------------------------------------------------------- serve
@main.command()
@_common
@click.option("--ae-title", default=None, help="Our AE title (default VESALIUS).")
@click.option("--dicom-port", type=int, default=None, help="DICOM port (default 11112).")
@click.option("--http-port", type=int, default=None, help="HTTP port (default 8080).")
@click.option("--dicom-host", default=None, help="Address the DICOM listener binds (default 0.0.0.0).")
@click.option("--http-host", default=None, help="Address the HTTP listener binds (default 127.0.0.1).")
@click.option("--on-conflict", type=click.Choice(["keep", "replace", "reject"]), default=None,
              help="Same SOP Instance UID, different content (default keep).")
@click.option("--dicom-workers", type=int, default=None,
              help="Processes sharing the DICOM port, for parallel ingest (default 1).")
def serve(config: Path | None, data_dir: Path | None, db: str | None, ae_title: str | None,
          dicom_port: int | None, http_port: int | None, dicom_host: str | None, http_host: str | None,
          on_conflict: str | None, dicom_workers: int | None) -> None:
    """Run the DICOM listener and the HTTP server until SIGTERM/SIGINT."""
    from vesalius.runner import serve as run_server

    settings = _settings(config, data_dir=data_dir, db=db, ae_title=ae_title, dicom_port=dicom_port,
                         http_port=http_port, dicom_host=dicom_host, http_host=http_host,
                         on_conflict=on_conflict, dicom_workers=dicom_workers)
    logging.getLogger("vesalius").setLevel(logging.INFO)
    try:
        run_server(settings, announce=lambda msg: click.echo(msg, err=True))
    except VesaliusError as exc:
        raise click.ClickException(str(exc)) from None


# ---------------------------------------------------------------------------- echo / send
@main.command()
@_common
@click.argument("target")
@click.option("--calling-ae", default=None, help="Our AE title on the association.")
def echo(config: Path | None, data_dir: Path | None, db: str | None, target: str, calling_ae: str | None) -> None:
    """C-ECHO a peer given as AE@HOST:PORT."""
    from vesalius.dimse import scu

    settings = _settings(config, data_dir=data_dir, db=db)
    try:
        peer = scu.parse_target(target)
        status = scu.echo(peer, calling_ae or settings.ae_title)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except (ConnectionError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if status != 0:
        raise click.ClickException(f"C-ECHO answered status 0x{status:04X}")
    click.echo(f"C-ECHO {peer.ae_title}@{peer.host}:{peer.port}: success")


def _expand(paths: tuple[Path, ...], tmp: Path,
            labels: dict[Path, str] | None = None) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files under ``paths`` (folders recursed, zip archives extracted into ``tmp``).

    Zip members are extracted under numbered names (never the names inside the archive);
    ``labels`` maps each extracted file to ``archive.zip:'member'`` for messages.
    """
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    for p in paths:
        if not p.exists():
            problems.append((str(p), "no such file or folder"))
            continue
        candidates = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
        for f in candidates:
            if zipfile.is_zipfile(f):
                dest = tmp / f"zip{len(files)}_{f.stem}"
                try:
                    with zipfile.ZipFile(f) as z:
                        for info in z.infolist():
                            if info.is_dir():
                                continue
                            # never trust names inside the archive: number the members
                            target = dest / f"{len(files):08d}"
                            target.parent.mkdir(parents=True, exist_ok=True)
                            with z.open(info) as src, target.open("wb") as out:
                                out.write(src.read(4 * 1024**3))
                            files.append(target)
                            if labels is not None:
                                labels[target] = f"{f}:{info.filename!r}"
                except (zipfile.BadZipFile, OSError) as exc:
                    problems.append((str(f), f"bad zip archive: {exc}"))
            else:
                files.append(f)
    return files, problems


@main.command()
@_common
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--to", "target", required=True, help="Destination AE@HOST:PORT.")
@click.option("--calling-ae", default=None, help="Our AE title on the association.")
def send(config: Path | None, data_dir: Path | None, db: str | None, paths: tuple[Path, ...], target: str,
         calling_ae: str | None) -> None:
    """C-STORE files, folders or zip archives to a peer."""
    from vesalius.dimse import scu

    settings = _settings(config, data_dir=data_dir, db=db)
    try:
        peer = scu.parse_target(target)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    with tempfile.TemporaryDirectory() as tmp:
        files, problems = _expand(paths, Path(tmp))
        with _progress(len(files), "sending") as bar:
            task = bar.add_task("send", total=len(files))
            try:
                rep = scu.send(peer, files, calling_ae or settings.ae_title, lambda n: bar.advance(task, n))
            except (ConnectionError, OSError) as exc:
                raise click.ClickException(str(exc)) from None
    for f, why in problems + rep.skipped + rep.failed:
        click.echo(f"{f}: {why}", err=True)
    click.echo(f"sent {rep.sent}, failed {len(rep.failed)}, skipped {len(rep.skipped) + len(problems)}")
    if rep.failed or ((problems or rep.skipped) and not rep.sent):
        sys.exit(1)


# ---------------------------------------------------------------------------- import
@main.command(name="import")
@_common
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--samples", is_flag=True, help="Import the sample studies shipped with pydicom (demo).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def import_(config: Path | None, data_dir: Path | None, db: str | None, paths: tuple[Path, ...], samples: bool,
            as_json: bool) -> None:
    """Import files, folders and zip archives into the archive (same rules as C-STORE)."""
    settings = _settings(config, data_dir=data_dir, db=db)
    if samples:
        from vesalius.samples import sample_files

        paths = paths + tuple(sample_files())
    if not paths:
        raise click.UsageError("give at least one PATH (or --samples)")
    counts: dict[str, int] = {}
    refused: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp, _archive(settings) as archive:
        labels: dict[Path, str] = {}
        files, problems = _expand(paths, Path(tmp), labels)
        refused.extend(problems)
        with _progress(len(files), "importing") as bar:
            task = bar.add_task("import", total=len(files))
            for f in files:
                try:
                    data = f.read_bytes()
                except OSError as exc:
                    refused.append((str(f), exc.strerror or "unreadable"))
                    bar.advance(task)
                    continue
                rep = archive.store_bytes(data, source_ae="")
                counts[rep.outcome] = counts.get(rep.outcome, 0) + 1
                if not rep.ok:
                    refused.append((labels.get(f, str(f)), rep.reason or rep.outcome))
                bar.advance(task)
    for name, why in refused:
        click.echo(f"skipped {name}: {why}", err=True)
    summary = {"files": sum(counts.values()), **counts, "skipped": len(refused)}
    click.echo(json.dumps(summary) if as_json else ", ".join(f"{k} {v}" for k, v in summary.items()))
    if not any(counts.get(k, 0) for k in ("stored", "duplicate", "replaced", "kept")) and refused:
        sys.exit(1)


# ---------------------------------------------------------------------------- state
@main.command()
@_common
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(config: Path | None, data_dir: Path | None, db: str | None, as_json: bool) -> None:
    """Counts per level and stored bytes."""
    with _archive(_settings(config, data_dir=data_dir, db=db), recover=False) as archive:
        s = archive.stats()
    if as_json:
        click.echo(json.dumps(s))
    else:
        for k, v in s.items():
            click.echo(f"{k:>10}: {v}")


@main.command()
@_common
@click.option("--orphans", is_flag=True, help="Also scan storage for objects no index row references.")
def verify(config: Path | None, data_dir: Path | None, db: str | None, orphans: bool) -> None:
    """Re-hash every stored object; report missing or altered ones (exit 1 if any)."""
    from vesalius.archive import maintenance

    with _archive(_settings(config, data_dir=data_dir, db=db), recover=False) as archive:
        total = archive.stats()["instances"]
        with _progress(total, "verifying") as bar:
            task = bar.add_task("verify", total=total)
            rep = maintenance.verify(archive.engine, archive.store, lambda n: bar.advance(task, n))
        extra = maintenance.find_orphans(archive.engine, archive.store) if orphans else []
    for uid in rep.missing:
        click.echo(f"MISSING  {uid}")
    for uid in rep.corrupt:
        click.echo(f"ALTERED  {uid}")
    for key in extra:
        click.echo(f"ORPHAN   {key}")
    click.echo(f"checked {rep.checked}: ok {rep.ok}, missing {len(rep.missing)}, altered {len(rep.corrupt)}"
               + (f", orphans {len(extra)}" if orphans else ""))
    if not rep.clean:
        sys.exit(1)


@main.command()
@_common
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def conflicts(config: Path | None, data_dir: Path | None, db: str | None, as_json: bool) -> None:
    """List recorded conflicts (re-sent instances with other content, study under another patient)."""
    from vesalius.archive import maintenance

    with _archive(_settings(config, data_dir=data_dir, db=db), recover=False) as archive:
        rows = list(maintenance.list_conflicts(archive.engine))
    for r in rows:
        if as_json:
            click.echo(json.dumps({k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}))
        else:
            click.echo(f"{r['at']:%Y-%m-%d %H:%M:%S} {r['kind']:<8} {r['action']:<9} sop={r['sop_uid']} "
                       f"study={r['study_uid']} from={r['source_ae'] or '-'}: {r['detail']}")
    if not rows and not as_json:
        click.echo("no conflicts")


# ---------------------------------------------------------------------------- remotes
@main.group()
def remote() -> None:
    """Manage remote DICOM nodes (C-MOVE destinations)."""


@remote.command("add")
@_common
@click.argument("name")
@click.argument("ae_title")
@click.argument("host")
@click.argument("port", type=int)
def remote_add(config: Path | None, data_dir: Path | None, db: str | None, name: str, ae_title: str, host: str,
               port: int) -> None:
    """Add or update a remote: NAME AE_TITLE HOST PORT."""
    try:
        r = Remote(name, ae_title, host, port)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    with _archive(_settings(config, data_dir=data_dir, db=db), recover=False) as archive:
        try:
            archive.add_remote(r)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"remote {name}: {ae_title}@{host}:{port}")


@remote.command("list")
@_common
def remote_list(config: Path | None, data_dir: Path | None, db: str | None) -> None:
    """List remotes from the config file and the database."""
    with _archive(_settings(config, data_dir=data_dir, db=db), recover=False) as archive:
        for r in archive.remotes():
            click.echo(f"{r.name}\t{r.ae_title}\t{r.host}\t{r.port}")


@remote.command("remove")
@_common
@click.argument("name")
def remote_remove(config: Path | None, data_dir: Path | None, db: str | None, name: str) -> None:
    """Remove a remote added with 'remote add'."""
    with _archive(_settings(config, data_dir=data_dir, db=db), recover=False) as archive:
        if not archive.remove_remote(name):
            raise click.ClickException(f"no remote named {name!r} in the database")
    click.echo(f"removed {name}")


@main.group()
def user() -> None:
    """Manage user accounts (argon2-hashed passwords, roles, scopes, API tokens)."""


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@user.command("add")
@_common
@click.argument("name")
@click.option("--role", "roles", multiple=True, required=True,
              help="admin, radiologist, technologist, referring, auditor or researcher (repeatable).")
@click.option("--person-name", default="", help="The user's DICOM name (FAMILY^GIVEN), for referring physicians.")
@click.option("--institution", "institutions", multiple=True, help="Limit to studies of this InstitutionName.")
@click.option("--department", "departments", multiple=True,
              help="Limit to studies of this InstitutionalDepartmentName.")
@click.option("--issuer", "issuers", multiple=True, help="Limit to patients of this IssuerOfPatientID.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def user_add(config: Path | None, data_dir: Path | None, db: str | None, name: str, roles: tuple[str, ...],
             person_name: str, institutions: tuple[str, ...], departments: tuple[str, ...],
             issuers: tuple[str, ...], password_stdin: bool) -> None:
    """Create user NAME."""
    password = _password(password_stdin)
    with _archive(_settings(config, data_dir=data_dir, db=db), recover=False) as archive:
        try:
            archive.identities.add_user(name, password, list(roles), person_name=person_name,
                                        institutions=institutions, departments=departments, issuers=issuers)
        except VesaliusError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"user {name}: {', '.join(roles)}")


@user.command("passwd")
@_common
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def user_passwd(config: Path | None, data_dir: Path | None, db: str | None, name: str,
                password_stdin: bool) -> None:
    """Set NAME's password (ends the user's sessions and API tokens)."""
    password = _password(password_stdin)
    with _archive(_settings(config, data_dir=data_dir, db=db), recover=False) as archive:
        try:
            archive.identities.set_password(name, password)
        except VesaliusError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"password of {name} changed")


@user.command("disable")
@_common
@click.argument("name")
@click.option("--enable", is_flag=True, help="Enable the account again.")
def user_disable(config: Path | None, data_dir: Path | None, db: str | None, name: str, enable: bool) -> None:
    """Disable (or --enable) user NAME."""
    with _archive(_settings(config, data_dir=data_dir, db=db), recover=False) as archive:
        try:
            archive.identities.set_disabled(name, not enable)
        except VesaliusError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"{name} {'enabled' if enable else 'disabled'}")


@user.command("list")
@_common
def user_list(config: Path | None, data_dir: Path | None, db: str | None) -> None:
    """List users, their roles and state."""
    with _archive(_settings(config, data_dir=data_dir, db=db), recover=False) as archive:
        for u in archive.identities.list_users():
            state = "disabled" if u["disabled"] else ("locked" if u["locked"] else "active")
            click.echo(f"{u['name']}\t{','.join(u['roles'])}\t{state}")


@user.command("token")
@_common
@click.argument("name")
@click.option("--label", default="", help="What the token is for.")
@click.option("--days", type=float, default=None, help="Expire after this many days.")
def user_token(config: Path | None, data_dir: Path | None, db: str | None, name: str, label: str,
               days: float | None) -> None:
    """Create an API token for NAME (printed once)."""
    with _archive(_settings(config, data_dir=data_dir, db=db), recover=False) as archive:
        try:
            click.echo(archive.identities.create_token(name, label, days))
        except VesaliusError as exc:
            raise click.ClickException(str(exc)) from None


if __name__ == "__main__":
    main()

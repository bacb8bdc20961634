"""`vesalius user ...` against a real index (Alembic migration 0003)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from vesalius.cli import main


def run(*args: str, stdin: str = "") -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args), input=stdin)
    return r.exit_code, r.output


def test_user_commands(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path / "data")]
    code, out = run("user", "add", "admin1", "--role", "admin", "--password-stdin", *d,
                    stdin="a long admin password\n")
    assert code == 0, out
    code, out = run("user", "add", "ref1", "--role", "referring", "--person-name", "JONES^CAROL",
                    "--password-stdin", *d, stdin="another long password\n")
    assert code == 0, out
    code, out = run("user", "add", "bad", "--role", "admin", "--password-stdin", *d, stdin="short\n")
    assert code != 0 and "at least" in out
    code, out = run("user", "add", "x", "--role", "wizard", "--password-stdin", *d, stdin="long long password\n")
    assert code != 0 and "roles must be" in out
    code, out = run("user", "list", *d)
    assert "admin1\tadmin\tactive" in out and "ref1\treferring\tactive" in out
    code, token = run("user", "token", "ref1", "--label", "script", *d)
    assert code == 0 and token.startswith("vsl_")
    assert run("user", "disable", "ref1", *d)[0] == 0
    assert "ref1\treferring\tdisabled" in run("user", "list", *d)[1]
    assert run("user", "passwd", "nobody", "--password-stdin", *d, stdin="long long password\n")[0] != 0

"""What the CLI test files share: an in-process typer runner and the one-line error check."""
from __future__ import annotations

from typer.testing import CliRunner

from escmvq.cli.main import app

runner = CliRunner()


def run(*args):
    """``escmvq ARGS`` in-process; returns typer's ``Result`` (stdout, stderr, exit_code)."""
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(res_or_stderr, match: str, code: int | None = None, exit_code: int | None = None):
    """The command failed with exactly one line ``error: ...`` containing ``match`` and no
    traceback. ``res_or_stderr``: a ``Result``, or stderr text with its ``exit_code``;
    ``code``: the exit code it must have (any non-zero if None)."""
    if isinstance(res_or_stderr, str):
        err, got, out = res_or_stderr, exit_code, ""
    else:
        err, got, out = res_or_stderr.stderr, res_or_stderr.exit_code, res_or_stderr.stdout
    assert got != 0, err + out
    if code is not None:
        assert got == code, (got, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert match in lines[0], lines[0]
    assert "Traceback" not in err + out

"""Shared by the tests of every layer that runs the CLI."""

from __future__ import annotations


def assert_clean_error(result, fragment: str):
    assert result.exit_code != 0
    err = result.stderr if result.stderr_bytes is not None else result.output
    assert "Traceback" not in result.output and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], lines[0]

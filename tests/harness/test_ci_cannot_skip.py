"""tests/conftest.py's promise: a missing component is a skip on a developer's machine, listed
at the end of the run, and a failure naming it under CI, as is any other skip.

A child pytest runs tests/support/skip_cases.py with a PATH that hides redis-server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
CASES = TESTS / "support" / "skip_cases.py"


def run_cases(ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = str(Path(sys.executable).parent)  # python and pytest, not redis-server
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(CASES), "-p", "no:cacheprovider", "-q", "-rN"],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_locally_missing_components_skip_and_the_summary_says_why():
    proc = run_cases(ci=None)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert out.rstrip().splitlines()[-1].startswith("1 passed, 3 skipped, 1 xfailed"), out
    summary = out[out.index("skipped (a failure under CI=true)") :]
    assert "2 tests  missing component redis-server: redis-server is not installed" in summary
    assert "1 test   a hand-written skip" in summary


def test_under_ci_every_skip_is_a_failure_naming_its_cause():
    proc = run_cases(ci="true")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    # A marker's requirement fails in setup (an error), require() inside the test a failure.
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("2 failed, 1 passed, 1 xfailed, 1 error"), out
    assert out.count("missing component redis-server under CI") == 2
    assert "skipped under CI, which must not skip: a hand-written skip" in out
    assert "skipped (a failure under CI=true)" not in out


@pytest.mark.parametrize(
    ("value", "strict"),
    [("true", True), ("1", True), ("TRUE", True), ("yes", True), ("", False), ("false", False)],
)
def test_what_counts_as_ci(monkeypatch, value, strict):
    from conftest import in_ci  # tests/conftest.py, on sys.path as the rootdir conftest

    monkeypatch.setenv("CI", value)
    assert in_ci() is strict


def test_ci_run_script_sets_ci():
    # .ci/run must make scripts/test strict even if the CI runner forgot CI=true.
    text = (TESTS.parent / ".ci" / "run").read_text()
    assert "export CI=true" in text and text.rstrip().endswith("exec scripts/test")

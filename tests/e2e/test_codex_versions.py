"""Every e2e test runs once per pinned Codex release (support/codex.py): the harness a test
builds the usual way, and a script the test starts, run the release of that test's id."""

from __future__ import annotations

import os
import subprocess

import pytest
from support.codex import BIN_VAR, CODEX_VERSIONS, CodexHarness, codex_bin


@pytest.mark.e2e
def test_the_release_in_the_test_id_is_the_one_that_runs(codex_version, request):
    assert request.node.callspec.id == f"codex-{codex_version}"
    harness = CodexHarness(base_url="http://127.0.0.1:1/v1")
    try:
        assert harness.version == codex_version
        for binary in (harness.binary, os.environ[BIN_VAR]):  # in-process, and for subprocesses
            out = subprocess.run(
                [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=True
            )
            assert out.stdout.strip() == f"codex-cli {codex_version}"
    finally:
        harness.cleanup()


def test_both_releases_are_pinned_newest_first():
    # Not e2e: a plain test sees no version, and the newest is the default.
    assert CODEX_VERSIONS == ("0.171.0", "0.169.0")
    assert codex_bin().parts[-4] == CODEX_VERSIONS[0]


@pytest.fixture(scope="module")
def shared_harness():
    harness = CodexHarness(base_url="http://127.0.0.1:1/v1")
    yield harness
    harness.cleanup()


@pytest.mark.e2e
def test_a_harness_shared_by_a_module_runs_each_tests_release(codex_version, shared_harness):
    out = subprocess.run(
        [str(shared_harness.binary), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == f"codex-cli {codex_version}"

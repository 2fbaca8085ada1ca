"""Sample tests for tests/harness/test_ci_cannot_skip.py, run in a child pytest (the name keeps
the main run from collecting them): one needs redis-server, which the child's PATH hides, one
skips by hand, one is an expected failure (never a skip)."""

import pytest


@pytest.mark.requires("redis-server")
def test_needs_redis():
    pass


def test_needs_redis_at_run_time(require):
    require("redis-server")


def test_skips_by_hand():
    pytest.skip("a hand-written skip")


@pytest.mark.xfail(reason="expected", strict=True)
def test_expected_failure():
    raise AssertionError


def test_passes():
    pass

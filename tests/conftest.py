"""Shared test setup.

- ``tests/support`` is importable as ``support`` from every test directory.
- **A CI that cannot skip.** Tests that need a real component (support/components.py: the
  Codex CLI, redis-server, chromium, network namespaces, iptables, wireguard-go, sudo,
  /dev/net/tun, cgroup2 for local mode) declare it with ``@pytest.mark.requires("name", ...)``
  or call ``require("name")`` (a fixture, and a plain function here). On a developer's machine
  a missing component is a skip, and the end of the run lists what was skipped and why. Under
  CI (``CI`` set to true/1/yes, as ``.ci/run`` does) it is a failure naming the component, and
  so is *any* other skip, however it was raised (``pytest.skip``, ``importorskip``): a CI run
  that skipped cannot be green.
- **Two Codex versions.** Every test marked ``e2e`` runs once per pinned Codex release
  (support/codex.py's docstring), through the autouse ``codex_version`` fixture; the version
  is required like any component.
- ``redis_url``: a real redis-server (loopback, a free port, no persistence) per session.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.codex import CODEX_VERSIONS, use_version
from support.components import missing
from support.local_servers import start_redis

_SKIP_PREFIX = "missing component "  # every skip require() makes starts with it


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(name: str, *args: str) -> None:
    """Go on only if component ``name`` is usable (``args``: e.g. a Codex version): otherwise
    skip, or under CI fail, naming it and how to get it."""
    why = missing(name, *args)
    if why is None:
        return
    label = " ".join((name, *args))
    if in_ci():
        pytest.fail(f"{_SKIP_PREFIX}{label} under CI: {why}", pytrace=False)
    pytest.skip(f"{_SKIP_PREFIX}{label}: {why}")


@pytest.fixture(name="require")
def require_fixture():
    """``require`` for tests that decide at run time what they need."""
    return require


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires(*names): real components the test needs (tests/support/components.py); "
        "missing: a skip locally, a failure under CI",
    )
    config.addinivalue_line(
        "markers",
        "codex_versions(*versions): run this e2e test only against these Codex releases",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("requires"):
        for name in marker.args:
            require(name)


# ---------------------------------------------------------------------- Codex versions


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("e2e") is None:
        return
    only = metafunc.definition.get_closest_marker("codex_versions")
    versions = list(only.args) if only else list(CODEX_VERSIONS)
    metafunc.parametrize(
        "codex_version", versions, ids=[f"codex-{v}" for v in versions], indirect=True
    )


@pytest.fixture(autouse=True)
def codex_version(request: pytest.FixtureRequest):
    """The Codex release an e2e test runs against (None for other tests); current for the
    test's duration, so ``CodexHarness()`` and scripts started by the test run it."""
    version = getattr(request, "param", None)
    if version is None:
        yield None
        return
    require("codex", version)
    with use_version(version):
        yield version


# ---------------------------------------------------------------------- skips: CI and summary


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and in_ci():
        reason = _skip_reason(report)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, which must not skip: {reason}"


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    reasons = Counter(_skip_reason(r) for r in skipped if not hasattr(r, "wasxfail"))
    if not reasons:
        return
    terminalreporter.section("skipped (a failure under CI=true)", sep="-", yellow=True)
    for reason, count in sorted(reasons.items()):
        terminalreporter.line(f"{count:4d} test{'s' if count > 1 else ' '}  {reason}")


# ---------------------------------------------------------------------- shared servers


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    require("redis-server")
    started = start_redis(tmp_path_factory.mktemp("redis"))
    assert started is not None  # require() saw redis-server
    proc, url = started
    yield url
    proc.terminate()
    proc.wait(timeout=10)

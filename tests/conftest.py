"""Shared test setup: ``tests/support`` importable as ``support`` from every test directory,
and a real redis-server (loopback, a free port, no persistence) for the Redis state backend."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.local_servers import start_redis


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    started = start_redis(tmp_path_factory.mktemp("redis"))
    if started is None:
        pytest.skip("redis-server is not installed (scripts/test installs it from Debian)")
    proc, url = started
    yield url
    proc.terminate()
    proc.wait(timeout=10)

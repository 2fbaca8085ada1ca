"""Waiting for something another process or thread does, without asserting on time: a check
is polled until it holds, and only a deadline far beyond the expected wait fails the test."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(check: Callable[[], Any], what: str, timeout_s: float = 10.0) -> Any:
    """``check()``'s first true result; ``AssertionError`` naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.02)

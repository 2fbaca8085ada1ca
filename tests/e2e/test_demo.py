"""scripts/demo works as a newcomer runs it: real Codex, real relay, fake upstream, no API key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.codex import scrubbed_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_demo_creates_and_runs_the_program() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo")],
        env=scrubbed_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "apply_patch  -> add " in out and "squares.py [completed]" in out
    assert "python3 squares.py' (exit 0)" in out
    assert "it printed: 1, 4, 9, 16, 25." in out
    assert out.count(" model=deepseek-chat ") == 3
    assert out.rstrip().endswith("OK")

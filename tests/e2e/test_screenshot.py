"""scripts/screenshot produces a real PNG of mitmweb after a real Codex exchange."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from support.codex import CODEX_VERSIONS, scrubbed_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
# A picture of mitmweb for the README: the newest Codex is enough.
@pytest.mark.codex_versions(CODEX_VERSIONS[0])
@pytest.mark.requires("chromium")
def test_screenshot_of_mitmweb(tmp_path: Path) -> None:
    out = tmp_path / "mitmweb.png"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "screenshot"), "--out", str(out)],
        env=scrubbed_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1440, 900)
    assert "#/flows/" in proc.stdout  # it showed a relayed flow, not an empty list

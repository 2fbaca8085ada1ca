"""The Codex CLI 0.169 requests captured in tests/fixtures/codex-0.169 (copied from the shared
fixtures), as the bodies tests feed the relay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "codex-0.169"


def request_bodies() -> dict[str, Any]:
    """File name -> request body, for every captured request (HTTP) or frame (websocket)."""
    bodies = {}
    for path in sorted(FIXTURES.glob("*.json")):
        if path.name.endswith((".request.json", ".frame.json")):
            body = json.loads(path.read_text()).get("body")
            if body:
                bodies[path.name] = body
    return bodies

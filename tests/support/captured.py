"""The Codex CLI requests captured in tests/fixtures, as the bodies tests feed the relay.

``codex-0.169/`` (the pinned version) is keyed by file name, as tests look entries up;
``codex-0.171/`` (the newest release, captured the same way by tests/fixtures/capture_codex.py)
is keyed ``codex-0.171/<file name>``, so every test parametrised over all bodies checks both
versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "codex-0.169"
NEWER = {"codex-0.171": FIXTURES.parent / "codex-0.171"}


def _bodies(folder: Path, prefix: str = "") -> dict[str, Any]:
    bodies = {}
    for path in sorted(folder.glob("*.json")):
        if path.name.endswith((".request.json", ".frame.json")):
            body = json.loads(path.read_text()).get("body")
            if body:
                bodies[prefix + path.name] = body
    return bodies


def request_bodies() -> dict[str, Any]:
    """Name -> request body, for every captured request (HTTP) or frame (websocket)."""
    bodies = _bodies(FIXTURES)
    for label, folder in NEWER.items():
        bodies |= _bodies(folder, f"{label}/")
    return bodies

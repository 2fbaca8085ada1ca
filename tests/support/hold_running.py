"""A mitmdump script for tests, loaded before addon/relay.py: its ``running`` hook waits until
the file ``$MITMRELAY_TEST_RELEASE`` names exists (at most 30 s).

mitmdump listens before ``running`` and, when an ERROR was logged while starting, exits right
after it (docs/mitmproxy-notes.md §7). Holding ``running`` keeps that window open, so a test can
send requests to a relay that refused its configuration and see what they get."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


class Hold:
    async def running(self) -> None:
        release = Path(os.environ["MITMRELAY_TEST_RELEASE"])
        for _ in range(600):
            if release.exists():
                return
            await asyncio.sleep(0.05)


addons = [Hold()]

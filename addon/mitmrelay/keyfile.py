"""The relay's reasoning key: 32 random bytes in mitmproxy's confdir, made once, mode 0600.

It seals the reasoning the relay hands to Codex (core/carrier.py), so it must survive restarts
(Codex replays sealed reasoning after ``resume``) and stay private like the CA key beside it:
whoever holds it can read the upstream reasoning of every conversation that went through the
relay. Deleting it only costs the sealed extras of older conversations; their readable summary
still comes back.
"""

from __future__ import annotations

import os
from pathlib import Path

from .core.carrier import KEY_BYTES

KEY_FILE = "mitmrelay-reasoning.key"


def load_or_create_key(confdir: Path) -> bytes:
    """The key in ``confdir``, created atomically with mode 0600 on first use.

    Raises ``ValueError`` when the file exists but does not hold a key.
    """
    confdir.mkdir(parents=True, exist_ok=True)
    path = confdir / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        text = path.read_text().strip()
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) != KEY_BYTES:
            raise ValueError(f"{path} does not hold a {KEY_BYTES}-byte hex key") from None
        return key
    key = os.urandom(KEY_BYTES)
    with os.fdopen(fd, "w") as f:  # O_EXCL: two relays starting together cannot both write
        f.write(key.hex() + "\n")
    return key

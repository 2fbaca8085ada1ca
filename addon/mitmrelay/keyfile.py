"""The relay's reasoning key: 32 random bytes in mitmproxy's confdir, made once, mode 0600.

It seals the reasoning the relay hands to Codex (core/carrier.py), so it must survive restarts
(Codex replays sealed reasoning after ``resume``) and stay private like the CA key beside it:
whoever holds it can read the upstream reasoning of every conversation that went through the
relay. Deleting it only costs the sealed extras of older conversations; their readable summary
still comes back.

So an existing file is refused when other users may read or write it (any group or other
permission bit, as ssh refuses a private key: a readable key is a leaked one, a writable one
lets another user choose the key), with one line saying how to fix it. The mode is read from
the opened file (``fstat``), so what is checked is what is read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .core.carrier import KEY_BYTES

KEY_FILE = "mitmrelay-reasoning.key"


def load_or_create_key(confdir: Path) -> bytes:
    """The key in ``confdir``, created atomically with mode 0600 on first use.

    Raises ``ValueError`` (one line) when the file exists but does not hold a key, or when
    users other than its owner may read or write it.
    """
    confdir.mkdir(parents=True, exist_ok=True)
    path = confdir / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fd = None
    if fd is None:  # read outside the except: a refusal carries no FileExistsError context
        return _read_key(path)
    key = os.urandom(KEY_BYTES)
    with os.fdopen(fd, "w") as f:  # O_EXCL: two relays starting together cannot both write
        f.write(key.hex() + "\n")
    return key


def _read_key(path: Path) -> bytes:
    with open(path, "rb") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        raw = f.read(4 * KEY_BYTES)
    try:
        key = bytes.fromhex(raw.decode("ascii").strip())
    except ValueError:  # UnicodeDecodeError included
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path} does not hold a {KEY_BYTES}-byte hex key")
    if mode & 0o077:
        raise ValueError(
            f"{path} is open to other users (mode {mode:04o}); it must be private to its owner: "
            f"run chmod 600 {path}"
        )
    return key

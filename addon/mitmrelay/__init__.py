"""mitmrelay: a mitmproxy addon that lets the Codex CLI use any Chat Completions provider.

The package is split in two, and the split is the architecture:

- ``mitmrelay.core`` and ``mitmrelay.models`` are sans-IO: bytes and plain values in, bytes and
  plain values out. They import neither mitmproxy nor sockets, and they read no clock.
- ``mitmrelay.addon`` (with ``webview`` and ``cli``) is the thin mitmproxy layer that routes
  flows into the core.
"""

__version__ = "0.1.0"

"""The script for ``mitmdump -s addon/relay.py`` (or mitmweb / mitmproxy).

    CODEX_RELAY_API_KEY=sk-... mitmdump -s addon/relay.py \\
        --mode reverse:http://127.0.0.1:1@4444 --set relay_upstream=https://api.deepseek.com/v1

It only makes the ``mitmrelay`` package importable from a plain checkout and registers the addon.
"""

import sys
from pathlib import Path

_here = str(Path(__file__).resolve().parent)
if _here not in sys.path:
    sys.path.insert(0, _here)

from mitmrelay import webview  # noqa: E402  (registers the mitmweb content views)
from mitmrelay.addon import Relay  # noqa: E402
from mitmrelay.usage_addon import Usage  # noqa: E402

webview.register()
relay = Relay()
# After the relay: the usage addon reads relay_state, which the relay declares.
usage = Usage(status=relay.usage_status)
relay.requires(usage.refusal)  # a usage option refused: nothing is relayed either
addons = [relay, usage]

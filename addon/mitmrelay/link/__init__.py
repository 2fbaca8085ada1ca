"""The upstream link: a loopback HTTP/1.1 server on mitmproxy's event loop that makes the
upstream call of each relayed flow and, for a streamed call, translates the stream.

Why it exists. mitmproxy alone cannot do three things the relay needs
(docs/mitmproxy-notes.md §5-§6): a ``.stream`` callable runs only when upstream bytes arrive, so
nothing can reach Codex while a reasoning model thinks before its first byte; an unreachable,
TLS-failing or silent upstream becomes mitmproxy's fixed HTML 502; and a connection cut mid-stream
becomes a truncated body. So the relay reroutes a flow here (``register`` + ``JOB_HEADER``), and the
link calls the upstream itself, adding the relay's key (which therefore never sits on a flow that
mitmweb shows or ``-w`` saves), and answers mitmproxy with what the client should get.

Split by what changes together:

- ``server.py``: mitmproxy's side (an h11 server per connection) and the job registry;
- ``call.py``: one job's call: its attempts, the phase of the client's answer, the heartbeat;
- ``connection.py``: one upstream connection, read as an ``asyncio.Protocol`` through h11;
- ``pool.py``: opening connections (TLS, upstream proxy) and keeping them alive;
- ``job.py``: what the relay and the link hand each other; ``clock.py``: the link's time.

Standard library and h11 only: mitmproxy's standalone builds cannot import httpx
(docs/mitmproxy-notes.md §0), and h11 is one of mitmproxy's own dependencies (its HTTP/1
layer parses with it; the h11 behaviours the link relies on: docs/mitmproxy-notes.md §14). No
mitmproxy import, so it runs and is tested on a bare event loop.
"""

from .call import COMMIT_GRACE_S, KEEPALIVE_GAP_S, MAX_ERROR_BODY, MAX_WHOLE_BODY, Phase
from .clock import Clock, LoopClock, Timer
from .job import (
    JOB_HEADER,
    LOCAL_HEADER,
    MAX_RECORDED,
    AttemptFailure,
    AttemptRecord,
    LinkAttempt,
    LinkJob,
    NextAttempt,
    answer_headers,
)
from .server import LinkSettings, UpstreamLink

__all__ = [
    "COMMIT_GRACE_S",
    "JOB_HEADER",
    "KEEPALIVE_GAP_S",
    "LOCAL_HEADER",
    "MAX_ERROR_BODY",
    "MAX_RECORDED",
    "MAX_WHOLE_BODY",
    "AttemptFailure",
    "AttemptRecord",
    "Clock",
    "LinkAttempt",
    "LinkJob",
    "LinkSettings",
    "LoopClock",
    "NextAttempt",
    "Phase",
    "Timer",
    "UpstreamLink",
    "answer_headers",
]

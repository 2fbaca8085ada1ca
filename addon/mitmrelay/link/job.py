"""What the relay hands the link for one flow (a ``LinkJob`` and its ``LinkAttempt``s), what the
link hands back (the outcome fields, one ``AttemptRecord`` per attempt), and the names both
sides share (headers, limits).

A job is the request side of one exchange: the first attempt (URL, the provider's headers, the
Chat body in memory, the stream translator for a streamed call) and, optionally, a policy that
names the next attempt when one fails before the client got any output. The link fills in the
outcome as it goes; the relay reads it for its log line, mitmweb's legs and the usage ledger
once the flow ends.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from mitmrelay.core.body import Body
from mitmrelay.core.exchange import Translator
from mitmrelay.core.upstream_errors import MappedError
from mitmrelay.core.wires import CHAT, Wire

JOB_HEADER = "x-mitmrelay-link"  # names the LinkJob of a request; unknown names get a 403
LOCAL_HEADER = "x-mitmrelay-answer"  # on answers the link made: "translated", "transport-error"
MAX_RECORDED = 8 * 1024 * 1024  # upstream bytes, and translated bytes, kept per job
# Headers of mitmproxy's request to the link that describe that hop, not the upstream call.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "content-length",
        "host",
        "te",
        "trailer",
        "upgrade",
        JOB_HEADER,
    }
)


def answer_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The upstream's response headers that describe its answer rather than its connection or
    framing: the link decodes the body, so ``content-encoding`` goes too."""
    return [(k, v) for k, v in headers if k not in HOP_BY_HOP and k != "content-encoding"]


@dataclass
class LinkAttempt:
    """One upstream call: where, with which headers (the provider's key among them, added to
    the headers mitmproxy's request carried), which body, and for a streamed call the
    translator whose events answer the client. ``label`` names it in records (the provider);
    ``upstream`` names it in error messages (default: the link's ``LinkSettings.upstream``).
    ``wire`` is the API the upstream speaks (core/wires.py): how its error answers map and
    how a whole answer becomes the translator's stream."""

    url: urllib.parse.SplitResult
    headers: dict[str, str]
    body: Body = b""  # bytes, or a large body written a chunk at a time (core/body.py)
    translator: Translator | None = None
    label: str = ""
    method: str = "POST"
    upstream: str = ""
    wire: Wire = CHAT


@dataclass(frozen=True)
class AttemptFailure:
    """Why an attempt was given up, for the policy to decide on the next one.

    ``error`` is the failure as the client would get it; ``status`` the upstream's HTTP status
    (None for a transport failure: no answer, a cut, a timeout); ``body`` the upstream's error
    body (at most ``MAX_ERROR_BODY`` bytes; ``b""`` when there was none)."""

    attempt: LinkAttempt
    error: MappedError
    status: int | None
    body: bytes = b""


# The policy: given a failed attempt, (delay in seconds, the next attempt), or None to give up.
# It is asked only while the client has no output item and no terminal event, so another
# attempt can still answer it unnoticed; an exception it raises gives up (and is logged).
NextAttempt = Callable[[AttemptFailure], tuple[float, LinkAttempt] | None]


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt as it ended: its label and URL, the upstream's HTTP status (None when none
    came), and the failure that ended it (None for the attempt that served the answer)."""

    label: str
    url: str
    status: int | None
    failure: MappedError | None = None


@dataclass
class LinkJob:
    """One exchange's upstream side. The relay fills the request side; the link the outcome.

    Times (``registered``, ``first_byte_at``, ``ended_at``) are readings of the link's clock,
    ``time.monotonic()`` seconds in production (``clock.py``)."""

    attempt: LinkAttempt  # the attempt in progress (or the last one, once the job ended)
    next_attempt: NextAttempt | None = None
    record_limit: int = MAX_RECORDED  # upstream bytes kept for inspection (0: none)
    registered: float = 0.0
    # outcome, for mitmweb, the log and the usage ledger
    attempts: list[AttemptRecord] = field(default_factory=list)
    status: int | None = None  # of the current attempt's upstream answer
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    recorded: bytearray = field(default_factory=bytearray)  # the current attempt's raw answer
    answered: bytearray = field(default_factory=bytearray)  # what the translator sent
    failure: MappedError | None = None  # the failure the link itself answered the client with
    committed_at: float | None = None  # when the client got 200 text/event-stream from the link
    first_byte_at: float | None = None  # when the first byte of the answer went to the client
    ended_at: float | None = None  # when the client's answer ended

    @property
    def url(self) -> urllib.parse.SplitResult:
        return self.attempt.url

    @property
    def headers(self) -> dict[str, str]:
        return self.attempt.headers

    @property
    def translator(self) -> Translator | None:
        return self.attempt.translator

    @property
    def sent_body(self) -> bytes:
        """The body of the last attempt, as it went upstream (a large body written out whole:
        only a flow list asks for it)."""
        return bytes(self.attempt.body)

    @property
    def committed(self) -> bool:
        """The client's answer is the link's translated stream (events, ``response.failed``)."""
        return self.committed_at is not None

    @property
    def retried(self) -> bool:
        return len(self.attempts) > 1

    def begin(self, attempt: LinkAttempt) -> None:
        """A new attempt: the outcome fields describe it from now on."""
        self.attempt = attempt
        self.status = None
        self.response_headers = []
        self.recorded.clear()

    def record(self, data: bytes) -> None:
        room = self.record_limit - len(self.recorded)
        if room > 0:
            self.recorded += data[:room]

    def answer(self, data: bytes) -> None:
        room = MAX_RECORDED - len(self.answered)
        if room > 0:
            self.answered += data[:room]

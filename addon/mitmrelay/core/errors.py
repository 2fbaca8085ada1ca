"""The relay's error hierarchy. Errors split by blame, each with the HTTP status it implies.

- ``ClientRequestError``: the client's request cannot be translated (invalid body, tool-name
  collision, unknown previous_response_id). The addon answers it locally with a
  Responses-shaped 4xx; nothing goes upstream.
- ``UpstreamProtocolError``: the upstream broke the Chat Completions protocol (malformed SSE or
  JSON, a limit exceeded, a stream cut short). It ends the stream with ``response.failed``.
"""

from __future__ import annotations


class RelayError(Exception):
    """Base class. ``status`` is the HTTP status hint, ``code`` the Responses error code."""

    status: int = 500
    code: str = "relay_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.param = param


class ClientRequestError(RelayError):
    status = 400
    code = "invalid_request_error"


class UpstreamProtocolError(RelayError):
    status = 502
    code = "upstream_protocol_error"

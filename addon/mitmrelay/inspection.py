"""What mitmweb shows of a relayed exchange: its two legs, as two flows.

The flow mitmproxy carried went from the client to the relay's upstream link (link.py), with
the translated Chat request. Once it ends it is turned into the **client leg**: the Responses
request as the client sent it and the translated answer the client got. Beside it, a synthetic
flow shows the **upstream leg**: the Chat request as the link sent it to ``relay_upstream``
(after a self-healing retry, the retried one) and the upstream's own answer, status, headers
and raw bytes (docs/mitmproxy-notes.md §8, "companion flows"). Both carry ``~meta mitmrelay`` and
name each other in their comments. Keys never appear: the client's is hidden here, the
relay's was never on a flow.

The upstream leg joins the flow list of mitmweb and the console (their ``view`` addon);
mitmdump has no flow list, so there only the client leg exists.
"""

from __future__ import annotations

from mitmproxy import ctx, flow, http

from .link import JOB_HEADER, LinkJob, answer_headers

META = "mitmrelay"
HIDDEN = "[hidden by mitmrelay]"


def show_client_leg(
    f: http.HTTPFlow, client_request: http.Request, *, listener: tuple[str, int] | None = None
) -> None:
    """Show the request as the client sent it (the flow's own request went to the link).
    ``listener``: in reverse mode, the address the client called; mitmproxy rewrote the
    request to the dummy reverse target before any hook ran (docs/mitmproxy-notes.md §2)."""
    request = client_request.copy()
    if listener is not None:
        request.host, request.port = listener
    hide_client_key(request)
    f.request = request
    f.metadata.setdefault(META, {})["leg"] = "client"


def hide_client_key(request: http.Request) -> None:
    """The client's key stays off every flow the relay handles (mitmweb shows flows, ``-w``
    saves them), including the ones it answers itself."""
    if "authorization" in request.headers:
        request.headers["authorization"] = HIDDEN


def upstream_leg(f: http.HTTPFlow, link_request: http.Request, job: LinkJob) -> http.HTTPFlow:
    """A flow for the call the link made to the upstream on ``f``'s behalf."""
    leg = f.copy()
    request = link_request.copy()
    request.url = job.url.geturl()  # where the link went (Host follows: docs/mitmproxy-notes.md §2)
    request.headers.pop(JOB_HEADER, None)
    if "authorization" in job.headers:
        request.headers["authorization"] = HIDDEN
    if job.sent_body:
        request.content = job.sent_body
    leg.request = request
    failure = job.failure.message if job.failure else None
    if job.status is not None:
        headers = [(k.encode(), v.encode()) for k, v in answer_headers(job.response_headers)]
        leg.response = http.Response.make(job.status, bytes(job.recorded), headers)
        leg.response.timestamp_start = f.response.timestamp_start if f.response else None
        leg.error = flow.Error(failure) if failure else None
    else:
        leg.response = None
        leg.error = flow.Error(failure or (f.error.msg if f.error else "no answer"))
    status = job.status if job.status is not None else "no answer"
    retried = " (after one self-healing retry)" if job.retried else ""
    leg.comment = f"mitmrelay upstream leg of {f.id[:8]}: {status}{retried}"
    if failure:
        leg.comment += f" | {failure}"
    leg.marked = ":x:" if failure or (job.status or 0) >= 400 else ""
    leg.metadata = {META: {"leg": "upstream", "client_flow": f.id, "status": status}}
    f.metadata.setdefault(META, {})["upstream_flow"] = leg.id
    f.comment = f"{f.comment} | upstream leg {leg.id[:8]}" if f.comment else leg.comment
    return leg


def has_flow_list() -> bool:
    """mitmweb and the console have one (their ``view`` addon); mitmdump has none."""
    return ctx.master.addons.get("view") is not None


def add_to_flow_list(leg: http.HTTPFlow) -> None:
    ctx.master.addons.get("view").add([leg])

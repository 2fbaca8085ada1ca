"""The Responses wire: providers that serve ``/responses`` themselves, cleaned up per family.

- ``rules``: what each family's endpoint takes (``ResponsesRules``, ``RULES``);
- ``request``: a Codex request -> the request for one provider (``clean_request``);
- ``stream``: the provider's SSE -> what Codex and the openai SDK validate
  (``ResponsesNormaliser``), and ``completion`` for whole Response objects;
- ``errors``: the provider's errors -> the Chat wire's mapping (``map_http_error``).

All pure (no IO, clock or randomness): the link and the addon inject ids, time and the
reasoning carrier, as on the Chat wire.
"""

from .completion import normalise_response
from .errors import map_http_error
from .request import clean_request
from .rules import RULES, ResponsesRules, rules_for
from .stream import ResponsesNormaliser

__all__ = [
    "RULES",
    "ResponsesNormaliser",
    "ResponsesRules",
    "clean_request",
    "map_http_error",
    "normalise_response",
    "rules_for",
]

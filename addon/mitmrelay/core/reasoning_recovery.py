"""Self-healing for thinking providers whose reasoning did not survive.

DeepSeek and Kimi reject an assistant tool-call message that lacks the ``reasoning_content``
they produced. The sealed carrier brings it back whenever the relay emitted it; it cannot when a
thread began on another model or before the relay. Then the relay retries once, with a
placeholder on every assistant tool-call message that has none (the remedy LiteLLM's DeepSeek
adapter uses: BerriAI/litellm#26660). The wordings are the providers' own (providers.md §1.2).
"""

from __future__ import annotations

import copy
import re
from typing import Any

MISSING_REASONING = re.compile(
    "|".join(
        (
            # DeepSeek V4 thinking mode
            r"reasoning_content in the thinking mode must be passed back",
            # older deepseek-reasoner
            r"Missing reasoning_content field in the assistant message",
            # Kimi / Moonshot, also via OpenRouter
            r"reasoning_content is missing in assistant tool call message",
        )
    ),
    re.IGNORECASE,
)
PLACEHOLDER = " "


def is_missing_reasoning_error(status: int, body: bytes) -> bool:
    return status == 400 and bool(MISSING_REASONING.search(body.decode("utf-8", "replace")))


def with_reasoning_placeholders(
    chat: dict[str, Any], field: str = "reasoning_content", placeholder: str = PLACEHOLDER
) -> tuple[dict[str, Any], int]:
    """A copy of the Chat request with ``placeholder`` on every assistant tool-call message
    lacking ``field``, and how many messages changed."""
    healed = copy.deepcopy(chat)
    changed = 0
    for message in healed.get("messages", ()):
        if (
            message.get("role") == "assistant"
            and message.get("tool_calls")
            and not message.get(field)
        ):
            message[field] = placeholder
            changed += 1
    return healed, changed

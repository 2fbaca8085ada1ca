"""Remote compaction for Codex's built-in provider (docs/codex-contract.md §9).

Codex's built-in ``openai`` provider (an unmodified Codex behind the system proxy) compacts its
history remotely: it sends an ordinary Responses request whose ``input`` ends with
``{"type": "compaction_trigger"}`` and requires **exactly one** output item
``{"type": "compaction", "id", "encrypted_content"}`` back (anything else: "remote compaction v2
expected exactly one compaction output item"). Later requests replay that item verbatim in
place of the history it summarises.

Chat upstreams know nothing of this, so the relay does what Codex does for custom providers
(local compaction): it asks the upstream for a handoff summary with Codex's own prompt, seals
the summary into the compaction item, and on replay opens it into the user message Codex itself
writes after a local compaction. Both texts are Codex 0.169's, verbatim
(fixtures 11-local-compaction and 12-after-local-compaction).
"""

from __future__ import annotations

# Codex 0.169's local-compaction prompt (fixture 11, last user message).
COMPACTION_PROMPT = (
    "You are performing a CONTEXT CHECKPOINT COMPACTION. Create a handoff summary for another "
    "LLM that will resume the task.\n\nInclude:\n- Current progress and key decisions made\n"
    "- Important context, constraints, or user preferences\n- What remains to be done (clear "
    "next steps)\n- Any critical data, examples, or references needed to continue\n\nBe "
    "concise, structured, and focused on helping the next LLM seamlessly continue the work.\n"
)

# What Codex puts before the summary after a local compaction (fixture 12).
SUMMARY_PREFIX = (
    "Another language model started to solve this problem and produced a summary of its "
    "thinking process. You also have access to the state of the tools that were used by that "
    "language model. Use this to build on the work that has already been done and avoid "
    "duplicating work. Here is the summary produced by the other language model, use the "
    "information in this summary to assist with your own analysis:\n"
)


def summary_message(summary: str) -> dict[str, str]:
    """The Chat user message that stands for a replayed compaction item."""
    return {"role": "user", "content": SUMMARY_PREFIX + summary}

"""Every text the bot sends a model, and the fixed answers it gives without one.

Kept apart from the code that uses them so wording can be tuned (and reviewed) in one place.
Passages are numbered [1], [2], ... in the order given; the answer cites those numbers, and the
sources listed under the answer carry the same numbers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.citations import Source

ANSWER_SYSTEM = """\
You answer questions for a team from the numbered passages of their documents that come with \
each question.

- Take every fact from the passages. Right after each statement, cite the passages that support \
it by their numbers in square brackets, like [1] or [2][3]. Cite only passages you used.
- If the passages don't answer the question, say so plainly in one sentence, then say in a few \
words what they do cover, so the person can ask again. Do not guess, and do not answer from \
general knowledge.
- Messages from chat carry noise: greetings, ticket numbers, tags, names, typos. Answer the \
question inside them.
- For small talk ("are you there?", "thanks!") reply briefly and kindly, without citations.
- Be brief and direct: a few sentences or a short list. Use light Markdown (bold, lists, inline \
code, code blocks); no tables, no headings.
- Earlier messages in the conversation are context for follow-up questions; the passages are \
your only source of facts.
"""

CONDENSE_SYSTEM = """\
Rewrite the user's follow-up question as one standalone question that can be understood \
without the conversation: resolve pronouns and references, keep names, numbers and technical \
terms. Reply with the question only, in the user's language.
"""

DONT_KNOW = (
    "I have no documents to answer from yet (the knowledge folder is empty or not indexed), so "
    "I don't know. An operator can add documents and run `bot ingest`."
)

NO_KEY_INTRO = (
    "This workspace has no API key for the language model yet, so I can't write an answer. "
    "These passages from the documents look most relevant:"
)
NO_KEY_DECLINE = "I couldn't find that in the documents I answer from."
NO_KEY_OUTRO = "An admin can set a key with `/setkey` to get written answers with citations."
# Where `/setkey` isn't the way: each says what the person reading it can do.
NO_KEY_OUTROS = {
    "web:": "Set a model API key in Settings to get written answers with citations.",
    "cli:": "Set `OPENAI_API_KEY` (in `.env` or the environment) to get written answers with "
    "citations.",
    # A Discord user install: no server of theirs can hold a key (`/setkey` is for servers).
    "discord:user:": "Ask in a server whose admins set a key with `/setkey` to get written "
    "answers with citations.",
}


def no_key_outro(workspace: str) -> str:
    """How to get written answers, said so the reader of this workspace can act on it."""
    for prefix, outro in NO_KEY_OUTROS.items():
        if workspace.startswith(prefix):
            return outro
    return NO_KEY_OUTRO


# Under an answer that cites no passage (small talk, or the documents don't cover it).
NO_CITATIONS = "_No sources: this reply cites none of the documents._"

PASSAGE_PROMPT_CHARS = 4000  # a passage longer than this is cut in the prompt
CONDENSE_TURN_CHARS = 600  # each earlier message is cut to this in the condensing prompt
HISTORY_TURN_CHARS = 4000  # each earlier message is cut to this in the answer prompt
# Characters per token when sizing a prompt without the model's tokenizer: English prose runs at
# about 4, code and other languages lower; 3 errs on the side of fitting.
CHARS_PER_TOKEN = 3
PROMPT_MARGIN_TOKENS = 200  # message framing and the tokenizer estimate's slack
_CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def passages_block(sources: Sequence[Source], texts: Sequence[str]) -> str:
    """The numbered passages as the model sees them."""
    parts = []
    for source, text in zip(sources, texts, strict=True):
        parts.append(f"[{source.number}] {source.label}\n{clip(text, PASSAGE_PROMPT_CHARS)}")
    return "\n\n".join(parts)


def answer_request(question: str, sources: Sequence[Source], texts: Sequence[str]) -> str:
    """The final user message: the passages, then the question."""
    return f"Passages:\n\n{passages_block(sources, texts)}\n\nQuestion: {question}"


def condense_request(transcript: Sequence[tuple[str, str]], question: str) -> str:
    """The user message asking for a standalone question; `transcript` is (role, text) pairs."""
    lines = [f"{role.capitalize()}: {clip(text, CONDENSE_TURN_CHARS)}" for role, text in transcript]
    return "Conversation:\n" + "\n".join(lines) + f"\n\nFollow-up question: {question}"


def no_key_passage(source: Source) -> str:
    """One passage in the answer given without a model: its number, where it is from, an excerpt."""
    quoted = "\n".join(f"> {line}" if line else ">" for line in source.excerpt.splitlines())
    return f"[{source.number}] {source.label}\n{quoted}"


def clip(text: str, limit: int) -> str:
    """`text` cut at a word boundary to at most `limit` characters, marked with an ellipsis."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def cited_numbers(text: str) -> set[int]:
    """The passage numbers `text` cites: [2], [1][3] and [1, 3] all count."""
    return {int(n) for group in _CITATION.findall(text) for n in group.split(",")}


def estimate_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1

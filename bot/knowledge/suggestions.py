"""Suggested questions: a few questions a newcomer could ask, made from the knowledge's headings
("Installing the relay" -> "How do I install the relay?"). Slack's assistant threads offer them
as suggested prompts and the web chat on its first screen.

Plain rules, no model call, so the same documents always give the same questions: headings that
say nothing on their own (Introduction, numbered, one word) are skipped, a document's shallowest
headings come first, and the documents take turns so the questions cover several of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bot.knowledge.chunking import Chunk

# Headings that name a part of a document, not something to ask about.
JUNK_HEADINGS = frozenset(
    {
        "abstract", "about", "acknowledgements", "acknowledgments", "appendix", "background",
        "changelog", "change log", "conclusion", "contents", "example", "examples", "faq",
        "further reading", "glossary", "index", "intro", "introduction", "license", "misc",
        "miscellaneous", "more", "next steps", "notes", "other", "overview", "preface",
        "references", "related", "see also", "summary", "table of contents", "todo", "toc",
    }
)  # fmt: skip
MIN_WORDS = 2  # "Configuration" alone says too little to make a question of
MAX_HEADING_CHARS = 80  # longer ones are sentences cut into headings, not topics
_NUMBERED = re.compile(
    r"^\s*(?:\d+(?:\.\d+)*[.)]?|[ivxlc]+[.)]|(?:step|chapter|part|section|appendix|page)\s+\w+)"
    r"(?:\s|:|$)",
    re.IGNORECASE,
)
_MARKUP = re.compile(r"[*`\"“”]+|(?<!\w)_+|_+(?!\w)")  # emphasis, code, quotes; not snake_case
# A heading that is a sentence or two topics ("The bot does not answer", "Asking: mentions").
_SENTENCE_MARKERS = frozenset(
    {"is", "are", "was", "were", "does", "do", "did", "not", "can", "cannot", "can't", "don't",
     "doesn't", "won't", "isn't", "aren't", "should", "must", "will"}
)  # fmt: skip
_MARKUP_LEFT = re.compile(r"[<>{}\[\]|]")

_QUESTION_WORDS = frozenset({"how", "what", "why", "when", "where", "which", "who", "whom"})
_AUXILIARIES = frozenset({"is", "are", "was", "were"})
_SUBJECT_PRONOUNS = frozenset({"i", "you", "we", "they"})
# These may ask about the subject ("Which adapters start"): no "do" goes after them.
_SUBJECT_QUESTION_WORDS = frozenset({"what", "which", "who"})
_ASKING_AUXILIARIES = frozenset(
    {"can", "could", "do", "does", "did", "is", "are", "should", "will", "would", "may", "must"}
)
# Verbs a heading may start with as an instruction ("Add your documents").
_IMPERATIVES = frozenset(
    {
        "add", "ask", "build", "change", "check", "choose", "clear", "configure", "connect",
        "create", "delete", "deploy", "disable", "edit", "enable", "export", "find", "fix", "get",
        "import", "index", "install", "invite", "keep", "make", "manage", "migrate", "monitor",
        "move", "open", "pick", "register", "remove", "rename", "request", "reset", "restart",
        "restore", "rotate", "run", "save", "search", "send", "set", "share", "sign", "start",
        "stop", "submit", "switch", "test", "turn", "update", "upgrade", "upload", "use", "write",
    }
)  # fmt: skip
# After a verb in -ing, these words show it is a verb ("Setting the key") rather than a noun
# ("Logging settings").
_VERB_FOLLOWERS = frozenset(
    {
        "a", "an", "the", "your", "my", "our", "their", "its", "this", "that", "these", "those",
        "it", "them", "yourself", "you", "with", "from", "to", "in", "into", "on", "for", "by",
        "up", "out", "down", "off", "over", "back", "around", "started", "each", "every", "all",
        "more", "new", "multiple", "several", "one", "two",
    }
)  # fmt: skip
# -ing forms the rules below get wrong.
_IRREGULAR_BASES = {
    "adding": "add", "arranging": "arrange", "caching": "cache", "causing": "cause",
    "changing": "change", "completing": "complete", "continuing": "continue",
    "creating": "create", "deleting": "delete", "exchanging": "exchange", "inviting": "invite",
    "issuing": "issue", "parsing": "parse", "pausing": "pause", "queuing": "queue",
    "exploring": "explore", "ignoring": "ignore", "raising": "raise", "refusing": "refuse",
    "releasing": "release", "restoring": "restore", "reusing": "reuse", "routing": "route",
    "using": "use", "writing": "write",
}  # fmt: skip
_PRONOUNS = {"your": "my", "you": "I", "yours": "mine", "yourself": "myself"}
_VOWELS = frozenset("aeiou")
# Unstressed endings that take no silent e back ("opening" -> "open", not "opene").
_NO_SILENT_E = ("en", "er", "on", "or", "it", "et", "el", "al", "ol", "om", "um", "op", "us")


@dataclass(frozen=True)
class _Candidate:
    path: str
    depth: int  # headings above it: 0 for a document's title
    order: int  # position in its document
    heading: str


def suggested_questions(chunks: Iterable[Chunk], limit: int) -> list[str]:
    """Up to `limit` questions from the chunks' headings: per document its shallowest headings
    first, the documents (in path order) taking turns; no question twice."""
    by_path: dict[str, dict[str, _Candidate]] = {}
    texts: dict[str, list[str]] = {}
    for chunk in chunks:
        texts.setdefault(chunk.path, []).append(chunk.text)
        heading = _clean(chunk.heading or "")
        if not _askable(heading):
            continue
        found = by_path.setdefault(chunk.path, {})
        if heading not in found:
            depth = len(chunk.context.split(" / ")) if chunk.context else 0
            found[heading] = _Candidate(chunk.path, depth, len(found), heading)
    queues = [
        sorted(found.values(), key=lambda c: (c.depth, c.order))
        for _, found in sorted(by_path.items())
    ]
    questions: list[str] = []
    while len(questions) < limit and any(queues):
        for queue in queues:
            if not queue or len(questions) >= limit:
                continue
            candidate = queue.pop(0)
            question = as_question(candidate.heading, " ".join(texts[candidate.path]))
            if question is not None and question not in questions:
                questions.append(question)
    return questions


def as_question(heading: str, document: str = "") -> str | None:
    """`heading` asked as a question, or None when these rules can't ask it well (a sentence,
    "How answers are made" without a verb to move). `document` is its document's text: the
    heading's first word is lower-cased inside the question only if the document does so too
    ("vacation policy", but "Slack settings")."""
    heading = _clean(heading)
    words = heading.split()
    if not words:
        return None
    first = words[0].lower()
    rest = " ".join(_pronoun(word) for word in words[1:])
    if heading.endswith("?"):
        return heading
    if first in _QUESTION_WORDS:
        return _wh_question(words)
    if first.endswith("ing") and len(first) > 4 and _is_verb(words):
        return _sentence("How do I", gerund_base(first), rest)
    if first in _IMPERATIVES and len(words) > 1:
        return _sentence("How do I", first, rest)
    if any(word.lower() in _SENTENCE_MARKERS for word in words):
        return None
    return _sentence("What should I know about", _lowered(words[0], document), rest)


def gerund_base(word: str) -> str:
    """The verb of an -ing form: "installing" -> "install", "running" -> "run",
    "creating" -> "create"."""
    word = word.lower()
    if word in _IRREGULAR_BASES:
        return _IRREGULAR_BASES[word]
    prefix, _, last = word.rpartition("-")  # "re-indexing" -> "re-" + "index"
    stem = last[:-3]
    if len(stem) >= 4 and stem[-1] == stem[-2] and stem[-1] not in _VOWELS | set("lsfz"):
        stem = stem[:-1]  # "runn" -> "run" ("install", "pass" keep theirs)
    elif len(stem) == 2 or (
        len(stem) >= 3
        and stem[-3] not in _VOWELS
        and stem[-2] in _VOWELS
        and stem[-1] not in _VOWELS | set("wxy")
        and (_syllables(stem) == 1 or not stem.endswith(_NO_SILENT_E))
    ):
        stem += "e"  # "mak" -> "make", "configur" -> "configure", "stor" -> "store"
    elif stem.endswith(("bl", "dl", "gl", "pl", "tl", "kl", "zl", "cl", "iv", "ov", "av", "rv")):
        stem += "e"  # "enabl" -> "enable", "remov" -> "remove", "serv" -> "serve"
    return f"{prefix}-{stem}" if prefix else stem


def _askable(heading: str) -> bool:
    words = heading.split()
    return (
        len(words) >= MIN_WORDS
        and len(heading) <= MAX_HEADING_CHARS
        and ":" not in heading  # "Asking questions: mentions" is two topics
        and not _MARKUP_LEFT.search(heading)  # HTML or a template left in a heading
        and heading.lower() not in JUNK_HEADINGS
        and not _NUMBERED.match(heading)
    )


def _clean(heading: str) -> str:
    return " ".join(_MARKUP.sub("", heading).split()).rstrip(".;,!")


def _syllables(stem: str) -> int:
    return len(re.findall(r"[aeiouy]+", stem))


def _is_verb(words: list[str]) -> bool:
    return len(words) == 1 or words[1].lower() in _VERB_FOLLOWERS or "/" in words[1]


def _wh_question(words: list[str]) -> str | None:
    """ "How keys are stored" -> "How are keys stored?", "Where things live" -> "Where do
    things live?", "Who can use /setkey" and "Which key answers a question" stay."""
    lowered = [w.lower() for w in words]
    if len(words) < 2 or lowered[1] in _ASKING_AUXILIARIES:
        return _sentence(*(_pronoun(w) for w in words))
    verb = next((i for i in range(2, len(words)) if lowered[i] in _AUXILIARIES), None)
    if verb is not None:
        words = [words[0], lowered[verb], *words[1:verb], *words[verb + 1 :]]
    elif lowered[1] in _SUBJECT_PRONOUNS or (
        lowered[0] not in _SUBJECT_QUESTION_WORDS
        and len(words) > 2
        and _plural(lowered[1])
        and not lowered[2].endswith("s")
    ):
        words = [words[0], "do", *words[1:]]  # "Where things live", "What you need"
    elif lowered[0] not in _SUBJECT_QUESTION_WORDS:
        return None  # "How the bot answers": no subject question, and no "do" fits for sure
    return _sentence(*(_pronoun(w) for w in words))


def _plural(word: str) -> bool:
    return word.endswith("s") and not word.endswith("ss")


def _sentence(*parts: str) -> str:
    return " ".join(part for part in parts if part) + "?"


def _pronoun(word: str) -> str:
    return _PRONOUNS.get(word.lower(), word)


def _lowered(word: str, document: str) -> str:
    """`word` lower-cased unless its document writes it capitalized inside sentences only (a
    name: "Slack"); "API", "iOS", "manifest.yml" stay as written."""
    if not word[:1].isupper() or not word[1:].islower():
        return word
    lower = word.lower()
    if re.search(rf"(?<![\w/.\-]){re.escape(lower)}(?![\w/\-])", document):
        return lower
    inside = re.search(rf"[\w,;]\s+{re.escape(word)}(?![\w/\-])", document)
    return word if inside else lower

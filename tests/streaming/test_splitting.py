"""Splitting answers at platform limits, and closing what a half-written answer left open.

What "the parts give back the text" means precisely: every `Part` is `prefix + body + suffix`,
the bodies joined are exactly the original text, and the only additions are fence lines: a
`suffix` that closes a code block cut by the split ("```", after a newline if the body lacks one)
and the next part's `prefix` that reopens it with its original opening line (language included).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.slack.mrkdwn import to_mrkdwn
from bot.streaming.splitting import Part, close_open, open_fence, split

WORD_CHARS = st.characters(
    categories=("Lu", "Ll", "Nd"), include_characters="&<>*_-,'é漢🙂", exclude_characters="`~"
)
words = st.text(WORD_CHARS, min_size=1, max_size=14)
sentence = st.builds(
    lambda ws, end: " ".join(ws) + end,
    st.lists(words, min_size=1, max_size=12),
    st.sampled_from([".", "!", "?", ""]),
)
paragraph = st.lists(sentence, min_size=1, max_size=6).map(" ".join)
code_line = st.text(
    st.characters(categories=("Lu", "Ll", "Nd", "Zs"), include_characters="=()<>&*#_"),
    max_size=70,
)
code_block = st.builds(
    lambda lang, lines: f"```{lang}\n" + "".join(line + "\n" for line in lines) + "```",
    st.sampled_from(["", "python", "js", "sh"]),
    st.lists(code_line, max_size=20),
)
bullets = st.lists(sentence, min_size=1, max_size=6).map(
    lambda items: "\n".join("- " + item for item in items)
)
documents = st.lists(st.one_of(paragraph, code_block, bullets), min_size=1, max_size=12).map(
    "\n\n".join
)
limits = st.integers(min_value=80, max_value=700)

FENCE_PREFIX = re.compile(r"^```\w*\n$")
FENCE_SUFFIX = re.compile(r"^\n?```$")


def chars_fit(limit: int) -> Callable[[Part], bool]:
    return lambda part: len(close_open(part.text)) <= limit


def slack_fit(limit: int) -> Callable[[Part], bool]:
    return lambda part: len(to_mrkdwn(close_open(part.text)).encode()) <= limit


def check_parts(text: str, parts: list[Part], fits: Callable[[Part], bool]) -> None:
    assert "".join(part.body for part in parts) == text
    assert all(part.body for part in parts)
    for index, part in enumerate(parts):
        assert fits(part), f"part {index} over the limit"
        assert open_fence(part.text) is None, f"part {index} leaves a code fence open"
        assert part.prefix == "" or FENCE_PREFIX.match(part.prefix)
        assert part.suffix == "" or FENCE_SUFFIX.match(part.suffix)
        if part.suffix:
            opening = open_fence(part.prefix + part.body)
            assert parts[index + 1].prefix == f"{opening}\n"


@settings(max_examples=150, deadline=None)
@given(documents, limits)
def test_parts_give_back_the_text_fit_and_balance_fences(text: str, limit: int) -> None:
    fits = chars_fit(limit)
    check_parts(text, split(text, fits), fits)


@settings(max_examples=60, deadline=None)
@given(documents, st.integers(min_value=200, max_value=1500))
def test_parts_fit_when_measured_as_slack_mrkdwn_bytes(text: str, limit: int) -> None:
    fits = slack_fit(limit)
    check_parts(text, split(text, fits), fits)


@settings(max_examples=150, deadline=None)
@given(st.text(), st.integers(min_value=1, max_value=300))
def test_any_text_is_split_without_losing_a_character(text: str, limit: int) -> None:
    parts = split(text, lambda part: len(part.text) <= limit)
    assert "".join(part.body for part in parts) == text
    assert len(parts) <= max(1, len(text))


def test_a_paragraph_boundary_is_preferred_over_later_sentences() -> None:
    text = "word " * 14 + "end.\n\n" + "Short one. " * 10
    head = split(text, chars_fit(120))[0]
    assert head.body == "word " * 14 + "end.\n\n"


def test_then_a_sentence_boundary() -> None:
    text = "One sentence that goes on. Another sentence is here! And a third one, long " * 4
    for part in split(text, chars_fit(100))[:-1]:
        assert part.body.rstrip().endswith((".", "!"))


def test_a_cut_code_block_is_closed_and_reopened_with_its_language() -> None:
    code = "```python\n" + "".join(f"total = total + {i}\n" for i in range(40)) + "```\nDone."
    parts = split("Here is the code:\n\n" + code, chars_fit(300))
    assert len(parts) >= 3
    assert parts[0].text.endswith("```")
    for part in parts[1:]:
        assert part.text.startswith("```python\n")
    assert parts[-1].text.endswith("```\nDone.")


def test_close_open_closes_a_fence_for_display() -> None:
    assert close_open("Look:\n\n```sh\nls -la") == "Look:\n\n```sh\nls -la\n```"
    assert close_open("Look:\n\n~~~~\nx\n") == "Look:\n\n~~~~\nx\n~~~~"
    assert close_open("```\nclosed\n```\nafter") == "```\nclosed\n```\nafter"


def test_close_open_closes_bold_and_code_spans_but_not_inside_code() -> None:
    assert close_open("This is **important") == "This is **important**"
    assert close_open("**done** and **again") == "**done** and **again**"
    assert close_open("run `pip install") == "run `pip install`"
    assert close_open("literal `**` here") == "literal `**` here"
    assert close_open("**bold**\n\nnew paragraph") == "**bold**\n\nnew paragraph"
    assert close_open("```\n**not bold\n") == "```\n**not bold\n```"

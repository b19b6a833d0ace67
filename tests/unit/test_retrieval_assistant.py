"""The offline retrieval assistant: what it says, how it quotes and cites, and how it streams."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

import pytest
from markdown_it import MarkdownIt

from chat_app.services.assistant import HistoryTurn
from chat_app.services.assistant.retrieval import (
    INTRO,
    QUOTE_CHARS,
    RetrievalAssistant,
    compose_reply,
    escape_markdown,
    quote,
)
from chat_app.services.retrieval import Passage
from tests.aio import run_async

EVIL = "*evil*[x](javascript:alert(1))<b>"
# Raw HTML enabled: the worst renderer the reply could meet; escaping must hold even there.
MARKDOWN = MarkdownIt("commonmark", {"html": True})

POLICY = Passage("f-1", "travel_policy.md", None, 2,
                 "Hotels in Tokyo are reimbursed up to 240 USD per night.")
HANDBOOK = Passage("f-2", "handbook.pdf", 3, 5,
                   "The fog horn is sounded whenever visibility falls below two nautical miles.\n"
                   "Keepers log each blast.")


def render(markdown: str) -> str:
    return MARKDOWN.render(markdown)


def visible_text(rendered_html: str) -> str:
    """What a reader sees: the rendered HTML without its tags."""
    return html.unescape(re.sub(r"<[^>]+>", "", rendered_html))


def stream(assistant: RetrievalAssistant, passages: Sequence[Passage],
           files: Sequence[str]) -> list[str]:
    async def main() -> list[str]:
        history = [HistoryTurn("user", "What does it say?")]
        return [token async for token in assistant.stream_reply(history, passages, files=files)]

    return run_async(main)


# --- what it says ----------------------------------------------------------------------------


def test_without_files_it_says_what_it_can_do() -> None:
    reply = compose_reply([], [])
    assert "attach" in reply.lower()
    assert "txt, md, csv, json or pdf" in reply
    assert "file name and page" in reply
    assert ">" not in reply and "—" not in reply  # nothing quoted, nothing cited


def test_with_files_but_no_passage_it_found_nothing_and_names_the_files() -> None:
    reply = compose_reply([], ["travel_policy.md", "handbook.pdf"])
    assert reply.startswith("I found nothing about that in your files")
    assert "(travel_policy.md, handbook.pdf)" in visible_text(render(reply))
    assert "will not guess" in reply
    assert INTRO not in reply
    assert "\n>" not in reply and not reply.startswith(">") and "—" not in reply
    assert reply != compose_reply([], [])


def test_passages_are_quoted_and_cited_in_rank_order() -> None:
    reply = compose_reply([HANDBOOK, POLICY], ["travel_policy.md", "handbook.pdf"])
    assert reply.split("\n\n") == [
        INTRO,
        "> The fog horn is sounded whenever visibility falls below two nautical miles.\n"
        "> Keepers log each blast.",
        "— *handbook.pdf, page 3*",
        "> Hotels in Tokyo are reimbursed up to 240 USD per night.",
        "— *travel\\_policy.md*",
    ]
    rendered = render(reply)
    assert rendered.count("<blockquote>") == 2
    assert "<em>handbook.pdf, page 3</em>" in rendered
    assert "<em>travel_policy.md</em>" in rendered  # the escaped underscore shows as itself


def test_the_same_passages_give_the_same_reply() -> None:
    assert compose_reply([POLICY, HANDBOOK], ["a"]) == compose_reply([POLICY, HANDBOOK], ["a"])


# --- quote -----------------------------------------------------------------------------------


def test_a_short_text_is_quoted_whole_line_by_line() -> None:
    assert quote("First line.\n\nThird line.") == "> First line.\n>\n> Third line."


def test_a_long_text_is_cut_at_a_word_boundary() -> None:
    words = [f"lantern{n:03d}" for n in range(200)]  # about 2,000 characters
    text = " ".join(words)
    quoted = quote(text)
    assert quoted.startswith("> ") and quoted.endswith(" …")
    kept = quoted[2:-2]
    assert len(kept) <= QUOTE_CHARS
    assert len(kept) > QUOTE_CHARS - len(words[0]) - 2  # cut at the last boundary, not earlier
    assert kept.split() == words[: len(kept.split())]  # whole words only


def test_a_long_text_of_short_lines_is_cut_at_a_line_break() -> None:
    rows = [f"M{n},Annual-membership-price-in-zone-{n},89" for n in range(40)]  # no spaces
    quoted = quote("\n".join(rows))
    assert quoted.endswith(" …")
    lines = quoted.removesuffix(" …").split("\n")
    assert [line.removeprefix("> ") for line in lines] == rows[: len(lines)]


def test_a_text_without_any_boundary_is_cut_at_quote_chars() -> None:
    assert quote("x" * 2_000) == "> " + "x" * QUOTE_CHARS + " …"


# --- escaping file names ---------------------------------------------------------------------


def test_escape_markdown_makes_a_hostile_name_render_literally() -> None:
    rendered = render(f"Sources: {escape_markdown(EVIL)}")
    assert "<a" not in rendered and "<em>" not in rendered and "<b>" not in rendered
    assert visible_text(rendered).strip() == f"Sources: {EVIL}"


def test_hostile_names_stay_literal_in_the_citation_and_the_file_list() -> None:
    cited = compose_reply([Passage("f-3", EVIL, 2, 0, "Some quoted text.")], [EVIL])
    rendered = render(cited)
    assert "<a" not in rendered and "<b>" not in rendered
    assert f"<em>{html.escape(EVIL, quote=False)}, page 2</em>" in rendered
    listed = render(compose_reply([], [EVIL, "notes.md"]))
    assert "<a" not in listed and "<em>" not in listed and "<b>" not in listed
    assert f"({EVIL}, notes.md)" in visible_text(listed)


@pytest.mark.parametrize("name", ["a_b_c.md", "x`y`.txt", "![img](x).csv", "tab|le.json", "~~s~~"])
def test_other_markdown_in_names_renders_literally(name: str) -> None:
    assert visible_text(render(escape_markdown(name))).strip() == name


# --- streaming -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("passages", "files"),
    [([], []), ([], ["handbook.pdf"]), ([HANDBOOK, POLICY], ["handbook.pdf", "travel.md"])],
    ids=["no-files", "no-match", "passages"],
)
def test_stream_reply_yields_words_that_join_to_the_composed_reply(
    passages: list[Passage], files: list[str]
) -> None:
    tokens = stream(RetrievalAssistant(pace_s=0), passages, files)
    assert "".join(tokens) == compose_reply(passages, files)
    assert len(tokens) > 10  # word by word, not one block
    assert all(token.strip() and len(token.split()) == 1 for token in tokens)


def test_stream_reply_is_deterministic() -> None:
    assistant = RetrievalAssistant(pace_s=0)
    first = stream(assistant, [HANDBOOK, POLICY], ["handbook.pdf"])
    assert stream(assistant, [HANDBOOK, POLICY], ["handbook.pdf"]) == first
    assert stream(RetrievalAssistant(pace_s=0.0001), [HANDBOOK, POLICY], ["handbook.pdf"]) == first

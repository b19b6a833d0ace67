"""The offline assistant: quotes the session's best passages, cites them, never invents."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence

from chat_app.services.assistant.base import HistoryTurn
from chat_app.services.retrieval import Passage

NO_FILES = (
    "I answer from the files you attach to this session, and I work offline. "
    "Attach a txt, md, csv, json or pdf file with **Attach files**, then ask about what "
    "it says: I will quote the passages that answer you, with the file name and page."
)
NO_MATCH = (
    "I found nothing about that in your files ({files}). I only answer from what they say, "
    "so I will not guess. Try the words the document itself would use, or attach a file "
    "that covers it."
)
INTRO = "Here is what your files say about that:"
#: A quote longer than this is cut at a word boundary; the file holds the rest.
QUOTE_CHARS = 600
#: Pause between words: a reply that appears in one frame reads like a page jump.
PACE_S = 0.004
_TOKENS = re.compile(r"\S+\s*|\s+")
# Mid-line, only these start inline Markdown (emphasis, code, links, images, autolinks, tables).
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]!|~<>])")


class RetrievalAssistant:
    """Deterministic: the same question over the same files gives the same reply."""

    name = "retrieval"

    def __init__(self, *, pace_s: float = PACE_S) -> None:
        self._pace_s = pace_s

    async def stream_reply(
        self,
        history: Sequence[HistoryTurn],
        passages: Sequence[Passage],
        *,
        files: Sequence[str] = (),
    ) -> AsyncIterator[str]:
        """Yield the composed reply word by word."""
        for index, token in enumerate(_TOKENS.findall(compose_reply(passages, files))):
            if index and self._pace_s:
                await asyncio.sleep(self._pace_s)
            yield token


def compose_reply(passages: Sequence[Passage], files: Sequence[str]) -> str:
    """The whole reply as Markdown."""
    if not passages:
        if not files:
            return NO_FILES
        return NO_MATCH.format(files=", ".join(escape_markdown(name) for name in files))
    parts = [INTRO]
    for passage in passages:
        parts.append(quote(passage.text))
        parts.append(f"— *{escape_markdown(passage.label)}*")
    return "\n\n".join(parts)


def quote(text: str) -> str:
    """`text` as a Markdown block quote, cut to QUOTE_CHARS at a word boundary."""
    if len(text) > QUOTE_CHARS:
        # Any whitespace is a word boundary: PDF and CSV passages break lines, not only words.
        cut = max(text.rfind(" ", 0, QUOTE_CHARS), text.rfind("\n", 0, QUOTE_CHARS))
        text = text[: cut if cut > QUOTE_CHARS // 2 else QUOTE_CHARS].rstrip() + " …"
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.split("\n"))


def escape_markdown(text: str) -> str:
    """A file name shown literally, whatever Markdown it contains."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text)

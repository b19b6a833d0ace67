"""Text extraction at upload: txt/md/csv/json/pdf into passages for the retrieval assistant.

Passages are what the assistant quotes, so they follow the document's own paragraphs (and a
PDF's pages) rather than fixed windows: a quote then reads like the source.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

log = logging.getLogger(__name__)

EXTRACTABLE_EXTENSIONS = frozenset({"txt", "md", "csv", "json", "pdf"})
#: A passage is about a paragraph: long enough to answer, short enough to quote.
PASSAGE_CHARS = 700
#: Text beyond this is not indexed: it bounds the index (and its memory) per file.
MAX_TEXT_CHARS = 1_000_000
#: Bytes of a text file read for extraction: MAX_TEXT_CHARS of UTF-8 at up to 4 bytes each.
MAX_TEXT_BYTES = MAX_TEXT_CHARS * 4
MAX_PDF_PAGES = 2_000

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_SPACES = re.compile(r"[ \t\f\v\xa0]+")


@dataclass(frozen=True)
class TextChunk:
    """One passage of a file, in reading order."""

    ordinal: int
    text: str
    #: 1-based page for PDFs, None otherwise.
    page: int | None = None


class ExtractionFailed(Exception):
    """The file's text could not be read (a damaged or encrypted PDF)."""


def extract_chunks(extension: str, source: BinaryIO) -> list[TextChunk]:
    """The passages of a stored file; [] for types without text."""
    if extension not in EXTRACTABLE_EXTENSIONS:
        return []
    if extension == "pdf":
        pages = _pdf_pages(source)
    else:
        text = source.read(MAX_TEXT_BYTES).decode("utf-8-sig", errors="replace")
        # Windows and old Mac line ends: a paragraph break is "\r\n\r\n" there.
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        pages = [(None, _TEXT_READERS.get(extension, _plain)(text))]
    return _number(pages)


def read_limit(extension: str) -> int | None:
    """How many bytes of a stored file extraction needs: all of a PDF, the head of a text."""
    if extension not in EXTRACTABLE_EXTENSIONS:
        return 0
    return None if extension == "pdf" else MAX_TEXT_BYTES


def _number(pages: Iterable[tuple[int | None, Iterable[str]]]) -> list[TextChunk]:
    chunks: list[TextChunk] = []
    budget = MAX_TEXT_CHARS
    for page, passages in pages:
        for passage in passages:
            if budget <= 0:
                return chunks
            chunks.append(TextChunk(len(chunks), passage[:budget], page))
            budget -= len(passage)
    return chunks


def _plain(text: str) -> list[str]:
    return list(pack(_clean(paragraph) for paragraph in _PARAGRAPH_BREAK.split(text)))


def _csv(text: str) -> list[str]:
    # Each passage repeats the header row, so a quoted row still says what its columns are.
    lines = [line for line in _clean(text).split("\n") if line.strip()]
    if len(lines) < 2 or len(lines[0]) > PASSAGE_CHARS // 2:
        # A header that long would crowd out the rows (or leave no room at all): pack plainly.
        return list(pack(lines))
    header, rows = lines[0], lines[1:]
    return [f"{header}\n{block}" for block in pack(rows, limit=PASSAGE_CHARS - len(header) - 1)]


def _json(text: str) -> list[str]:
    try:
        document = json.loads(text)
        # One line per leaf ("path: value") reads better than braces and ranks on the key names.
        return list(pack(_json_lines(document, "")))
    except (ValueError, RecursionError):
        # Not JSON, or nested deeper than Python recurses: still text worth quoting.
        return _plain(text)


def _json_lines(value: object, path: str) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _json_lines(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_lines(item, f"{path}[{index}]")
    else:
        # JSON's own spelling of scalars (true, null), not Python's (True, None).
        shown = value if isinstance(value, str) else json.dumps(value)
        yield f"{path or 'value'}: {_clean(shown)}"


_TEXT_READERS = {"csv": _csv, "json": _json}


def _pdf_pages(source: BinaryIO) -> list[tuple[int | None, list[str]]]:
    from pypdf import PdfReader  # imported on first PDF: it is not needed to serve a page

    try:
        reader = PdfReader(source)
        # Many PDFs are encrypted only to restrict printing or editing: their user password is
        # empty and any reader opens them. Only a real password keeps the text out.
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionFailed("the PDF is encrypted")
        pages = []
        for number, page in enumerate(reader.pages[:MAX_PDF_PAGES], start=1):
            pages.append((number, _plain(page.extract_text() or "")))
        return pages
    except ExtractionFailed:
        raise
    except Exception as exc:
        # pypdf raises a wide range of types on damaged files (PdfReadError, LimitReachedError,
        # KeyError, RecursionError, ...); none of them is the user's fault or a server error.
        raise ExtractionFailed(type(exc).__name__) from exc


def _clean(text: str) -> str:
    """Drop control characters (keep newlines), collapse runs of spaces."""
    text = "".join(
        ch for ch in text
        if ch in "\n\t" or unicodedata.category(ch) not in {"Cc", "Cf", "Co", "Cs"}
    )
    return "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n")).strip()


def pack(pieces: Iterable[str], limit: int = PASSAGE_CHARS) -> Iterator[str]:
    """Join consecutive short pieces up to `limit` characters; split longer ones on sentences."""
    if limit < 1:
        raise ValueError("limit must be at least 1")  # a smaller one would cut forever
    current = ""
    for piece in pieces:
        piece = piece.strip()
        if not piece:
            continue
        for part in _split_long(piece, limit):
            if current and len(current) + 1 + len(part) > limit:
                yield current
                current = ""
            current = f"{current}\n{part}" if current else part
    if current:
        yield current


def _split_long(text: str, limit: int) -> Iterator[str]:
    if len(text) <= limit:
        yield text
        return
    current = ""
    for sentence in _SENTENCE_END.split(text):
        while len(sentence) > limit:  # one endless "sentence": cut at a space
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            yield sentence[:cut].strip()
            sentence = sentence[cut:].strip()
        if current and len(current) + 1 + len(sentence) > limit:
            yield current
            current = ""
        current = f"{current} {sentence}" if current else sentence
    if current:
        yield current

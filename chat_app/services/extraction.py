"""Text extraction at upload: txt/md/csv/json/pdf into passages for the retrieval assistant.

Passages are what the assistant quotes, so they follow the document's own paragraphs (and a
PDF's pages) rather than fixed windows: a quote then reads like the source.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
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
#: An upload's copy for extraction stays in memory up to this size (a text's head always does),
#: then spools to a temporary file (a long PDF).
SPOOL_BYTES = 8 * 2**20

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
# Only runs of two or more: matching every single space (once per word) made this pass several
# times slower on long texts, and a lone " " is already what a run becomes.
_SPACE_RUNS = re.compile(" {2,}")
# Every character of Unicode 14 (Python 3.11's unicodedata) in the categories Cc, Cf, Co and Cs,
# except "\t" and "\n": controls, invisible format marks, private use and lone surrogates. One
# regex pass instead of unicodedata.category() per character (~0.5 us each, 2 s for 4 MB of
# text); tests/unit/test_extraction.py checks it against unicodedata for every code point.
_INVISIBLE = re.compile(
    "["
    "\x00-\x08\x0b-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2"
    "\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ud800-\uf8ff\ufeff"
    "\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f\U000f0000-\U000ffffd"
    "\U00100000-\U0010fffd"
    "]+"
)
#: The ASCII part of _INVISIBLE, for str.translate: about ten times faster than the regex.
_ASCII_INVISIBLE = dict.fromkeys([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F])


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
    """How many bytes of a file extraction needs: all of a PDF, the head of a text."""
    if extension not in EXTRACTABLE_EXTENSIONS:
        return 0
    return None if extension == "pdf" else MAX_TEXT_BYTES


class ExtractionCopy:
    """What extraction will read of an upload, kept as the bytes stream past: a text's head, or
    a whole PDF (pypdf needs all of it; the upload size limit bounds it). Reading the file back
    from the store after its commit cost a GET and a second pass over the bytes."""

    def __init__(self, extension: str, limit: int | None) -> None:
        self._extension = extension
        self._limit = limit
        # Not a `with` block: the copy lives across the upload's feed() calls, closed by close().
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115

    def keep(self, data: bytes) -> None:
        """Copy what extraction still needs of the next bytes."""
        room = len(data) if self._limit is None else self._limit - self.size
        if room > 0:
            self._file.write(data[:room])

    @property
    def size(self) -> int:
        """Bytes kept so far."""
        return self._file.tell()

    def chunks(self) -> list[TextChunk]:
        """The passages of everything kept (ExtractionFailed for an unreadable PDF)."""
        self._file.seek(0)
        return extract_chunks(self._extension, self._file)

    def close(self) -> None:
        """Free the memory or the temporary file; safe to call more than once."""
        self._file.close()


def copy_for(extension: str) -> ExtractionCopy | None:
    """An empty copy for an upload of this type; None when the type has no text to index."""
    limit = read_limit(extension)
    return None if limit == 0 else ExtractionCopy(extension, limit)


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


def _plain(text: str) -> Iterator[str]:
    # Lazy: _number stops pulling at MAX_TEXT_CHARS, so the paragraphs past it are never cleaned.
    return pack(_clean(paragraph) for paragraph in _PARAGRAPH_BREAK.split(text))


def _csv(text: str) -> Iterable[str]:
    # Each passage repeats the header row, so a quoted row still says what its columns are.
    lines = [line for line in _clean(text).split("\n") if line.strip()]
    if len(lines) < 2 or len(lines[0]) > PASSAGE_CHARS // 2:
        # A header that long would crowd out the rows (or leave no room at all): pack plainly.
        return pack(lines)
    header, rows = lines[0], lines[1:]
    return (f"{header}\n{block}" for block in pack(rows, limit=PASSAGE_CHARS - len(header) - 1))


def _json(text: str) -> Iterable[str]:
    try:
        document = json.loads(text)
        # One line per leaf ("path: value") reads better than braces and ranks on the key names;
        # list(): a RecursionError from walking a deep document must be raised inside this try.
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


def _pdf_pages(source: BinaryIO) -> list[tuple[int | None, Iterable[str]]]:
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
    # "\f" and "\v" are controls, gone already; tabs and no-break spaces count as spaces.
    text = text.translate(_ASCII_INVISIBLE) if text.isascii() else _INVISIBLE.sub("", text)
    text = text.replace("\t", " ").replace("\xa0", " ")
    text = _SPACE_RUNS.sub(" ", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


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
    for sentence in _sentences(text):
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


def _sentences(text: str) -> Iterator[str]:
    """`_SENTENCE_END.split(text)`, lazily: a paragraph of megabytes is split only as far as the
    passages taken from it reach (MAX_TEXT_CHARS)."""
    start = 0
    for gap in _SENTENCE_END.finditer(text):
        yield text[start:gap.start()]
        start = gap.end()
    yield text[start:]

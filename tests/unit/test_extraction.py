"""Text extraction at upload: passages of txt/md/csv/json/pdf for the retrieval assistant."""

from __future__ import annotations

import io
import json
import re
import sys
import unicodedata
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from chat_app.services import extraction
from chat_app.services.extraction import (
    MAX_TEXT_BYTES,
    PASSAGE_CHARS,
    ExtractionFailed,
    TextChunk,
    copy_for,
    extract_chunks,
    pack,
)

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
HANDBOOK = (CORPUS / "handbook.pdf").read_bytes()


def extract(extension: str, data: bytes | str) -> list[TextChunk]:
    raw = data.encode() if isinstance(data, str) else data
    return extract_chunks(extension, io.BytesIO(raw))


def texts(chunks: list[TextChunk]) -> list[str]:
    return [chunk.text for chunk in chunks]


def sentence(n: int) -> str:
    """A distinct sentence of about 60 characters."""
    return f"Sentence number {n:03d} talks about kettles, lanterns and rope."


def assert_numbered(chunks: list[TextChunk]) -> None:
    """Ordinals run 0, 1, 2, ... and no passage is empty or over PASSAGE_CHARS."""
    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert 0 < len(chunk.text) <= PASSAGE_CHARS, len(chunk.text)


# --- txt and md: paragraphs -------------------------------------------------------------


@pytest.mark.parametrize("extension", ["txt", "md"])
def test_paragraphs_become_passages_of_at_most_passage_chars(extension: str) -> None:
    paragraphs = [f"Paragraph {i}. " + " ".join(sentence(i * 10 + j) for j in range(3))
                  for i in range(12)]
    chunks = extract(extension, "\n\n".join(paragraphs) + "\n")
    assert_numbered(chunks)
    assert len(chunks) > 1
    assert all(chunk.page is None for chunk in chunks)
    # Short paragraphs are never cut: each lies whole in exactly one passage, in order.
    homes = [[i for i, text in enumerate(texts(chunks)) if paragraph in text]
             for paragraph in paragraphs]
    assert all(len(home) == 1 for home in homes), homes
    assert [home[0] for home in homes] == sorted(home[0] for home in homes)
    # ... and consecutive short paragraphs share a passage rather than one passage each.
    assert len(chunks) < len(paragraphs)


def test_short_paragraphs_are_joined_by_a_line_break() -> None:
    chunks = extract("md", "# Title\n\nFirst paragraph.\n \t\nSecond paragraph.\n")
    assert texts(chunks) == ["# Title\nFirst paragraph.\nSecond paragraph."]


def test_windows_line_ends_still_separate_paragraphs() -> None:
    paragraphs = [" ".join(sentence(i * 10 + j) for j in range(8)) for i in range(3)]
    unix = extract("txt", "\n\n".join(paragraphs))
    windows = extract("txt", "\r\n\r\n".join(paragraphs))
    assert texts(windows) == texts(unix)
    assert len(windows) == 3 and "\r" not in "".join(texts(windows))


def test_a_long_paragraph_is_split_between_sentences() -> None:
    sentences = [sentence(n) for n in range(40)]  # one paragraph of about 2,500 characters
    paragraph = " ".join(sentences)
    chunks = extract("txt", paragraph)
    assert_numbered(chunks)
    assert len(chunks) >= 3
    for chunk in chunks:
        assert chunk.text.startswith("Sentence number ") and chunk.text.endswith("rope.")
    assert " ".join(texts(chunks)) == paragraph  # nothing lost, nothing cut mid-sentence


def test_an_endless_sentence_is_cut_between_words() -> None:
    words = [f"word{n:04d}" for n in range(400)]
    chunks = extract("txt", " ".join(words))
    assert_numbered(chunks)
    assert len(chunks) >= 4
    assert " ".join(texts(chunks)).split() == words  # no word split in two


@pytest.mark.timeout(10)
def test_pack_refuses_a_limit_below_one() -> None:
    with pytest.raises(ValueError):
        list(pack(["some text"], limit=0))


def test_control_and_invisible_characters_are_dropped() -> None:
    raw = "Tea\x00 time\x07 at\u200b four\ufeff\x1b[31m o'clock\u202e.\tKettle   on.\n"
    assert texts(extract("txt", raw)) == ["Tea time at four[31m o'clock. Kettle on."]


def reference_clean(text: str) -> str:
    """What cleaning means, one character at a time (the fast version must agree exactly)."""
    text = "".join(
        ch for ch in text
        if ch in "\n\t" or unicodedata.category(ch) not in {"Cc", "Cf", "Co", "Cs"}
    )
    spaces = re.compile(r"[ \t\f\v\xa0]+")
    return "\n".join(spaces.sub(" ", line).strip() for line in text.split("\n")).strip()


def every_code_point(start: int, stop: int) -> str:
    """Each code point in [start, stop) once, a word character between them so that nothing
    is stripped for being at the end of a line."""
    return "x".join(chr(code) for code in range(start, stop))


@pytest.mark.parametrize(
    ("start", "stop"), [(0, 0x80), (0, 0x10000), (0x10000, sys.maxunicode + 1)],
    ids=["ascii", "bmp", "astral"],
)
def test_cleaning_agrees_with_unicodedata_for_every_code_point(start: int, stop: int) -> None:
    # Pure ASCII takes str.translate, the rest the regex: both are held to the definition. If
    # this fails after a Python upgrade, regenerate _INVISIBLE from the new unicodedata.
    text = every_code_point(start, stop)
    assert extraction._clean(text) == reference_clean(text)


@pytest.mark.parametrize("text", [
    "a \t b\xa0\xa0c  \t  d", " \tlead and trail\t ", "tab\there\n\n  next  line  ",
    "\u3000ideographic\u2028space\u2029", "caf\u00e9 \x00\x85 \u200b cr\u00e8me",
    "\x0b\x0cvertical and form feed\x0c", "\ud800lone surrogate\udfff \ue000private",
])
def test_cleaning_collapses_blanks_like_the_definition(text: str) -> None:
    assert extraction._clean(text) == reference_clean(text)


def test_a_utf8_byte_order_mark_is_not_text() -> None:
    assert texts(extract("txt", b"\xef\xbb\xbfHello there.")) == ["Hello there."]


def test_blank_text_has_no_passages() -> None:
    assert extract("txt", " \n\n\t\n") == []
    assert extract("md", b"") == []


def test_text_beyond_max_text_chars_is_not_indexed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extraction, "MAX_TEXT_CHARS", 2_000)
    paragraphs = [" ".join(sentence(i * 10 + j) for j in range(5)) for i in range(20)]
    chunks = extract("txt", "\n\n".join(paragraphs))
    assert_numbered(chunks)
    assert sum(len(text) for text in texts(chunks)) == 2_000
    assert chunks[0].text.startswith(paragraphs[0])
    assert paragraphs[-1] not in "\n".join(texts(chunks))


def test_one_huge_paragraph_is_cut_at_max_text_chars_like_many_small_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Passages are made lazily and stop at the budget: what is indexed must be the same as if
    # the whole text had been packed first.
    monkeypatch.setattr(extraction, "MAX_TEXT_CHARS", 5_000)
    text = " ".join(sentence(n) for n in range(1_000))  # ~60,000 characters, no paragraph break
    chunks = extract("txt", text)
    assert_numbered(chunks)
    whole = list(pack([text]))
    assert texts(chunks)[:-1] == whole[:len(chunks) - 1]
    assert whole[len(chunks) - 1].startswith(chunks[-1].text)
    assert sum(len(chunk.text) for chunk in chunks) == 5_000


# --- csv: the header travels with every passage ------------------------------------------------


def test_every_csv_passage_repeats_the_header() -> None:
    header = "section,rule_id,rule,value"
    rows = [f"Riding,R{n},Rule number {n} about bells and brakes on the bike,{n} minutes"
            for n in range(60)]
    chunks = extract("csv", "\n".join([header, *rows]) + "\n")
    assert_numbered(chunks)
    assert len(chunks) > 2
    for chunk in chunks:
        assert chunk.text.split("\n")[0] == header
    bodies = [line for chunk in chunks for line in chunk.text.split("\n")[1:]]
    assert bodies == rows  # every row once, in order


def test_a_passage_with_the_header_still_fits_passage_chars() -> None:
    header = "h" * 101
    rows = ["r" * 299, "s" * 299, "t" * 299, "u" * 299]
    chunks = extract("csv", "\n".join([header, *rows]))
    # Two rows and their line break (599) plus the header and its line break make 701.
    assert_numbered(chunks)
    assert [chunk.text.split("\n")[1:] for chunk in chunks] == [[row] for row in rows]


@pytest.mark.timeout(10)
def test_a_csv_header_longer_than_a_passage_does_not_hang() -> None:
    header = ",".join(f"column_{n}" for n in range(100))  # about 900 characters
    rows = [",".join(str(n * k) for k in range(100)) for n in range(5)]
    chunks = extract("csv", "\n".join([header, *rows]))
    assert_numbered(chunks)
    joined = " ".join(texts(chunks))
    assert all(value in joined for value in ("column_0", "column_99", rows[-1][-20:]))


def test_a_one_line_csv_longer_than_a_passage_is_split() -> None:
    line = ", ".join(f"value {n}" for n in range(300))
    chunks = extract("csv", line)
    assert_numbered(chunks)
    assert len(chunks) > 1


# --- json: one "path: value" line per leaf -----------------------------------------------------


def test_json_is_flattened_to_path_value_lines() -> None:
    document = {
        "product": "Kestrel K7",
        "coverage": [{"part": "motor", "years": 5}, {"part": "battery", "years": 2}],
        "claim": {"step_1": "Find the serial number."},
        "transferable": False,
        "fee": None,
        "ratio": 0.5,
    }
    chunks = extract("json", json.dumps(document, indent=2))
    assert texts(chunks) == ["\n".join([
        "product: Kestrel K7",
        "coverage[0].part: motor",
        "coverage[0].years: 5",
        "coverage[1].part: battery",
        "coverage[1].years: 2",
        "claim.step_1: Find the serial number.",
        "transferable: false",
        "fee: null",
        "ratio: 0.5",
    ])]


def test_a_json_scalar_document_gets_a_path() -> None:
    assert texts(extract("json", '"just a string"')) == ["value: just a string"]


def test_large_json_is_packed_into_passages() -> None:
    document = {"rules": [{"id": n, "text": sentence(n)} for n in range(50)]}
    chunks = extract("json", json.dumps(document))
    assert_numbered(chunks)
    lines = [line for chunk in chunks for line in chunk.text.split("\n")]
    assert lines[:2] == ["rules[0].id: 0", f"rules[0].text: {sentence(0)}"]
    assert len(lines) == 100


def test_invalid_json_falls_back_to_text() -> None:
    raw = '{"broken": "no closing brace"\n\nSecond paragraph of notes.'
    expected = '{"broken": "no closing brace"\nSecond paragraph of notes.'
    assert texts(extract("json", raw)) == [expected]


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_json_nested_too_deep_falls_back_to_text(depth: int) -> None:
    chunks = extract("json", "[" * depth + '"deep"' + "]" * depth)
    assert_numbered(chunks)
    assert '"deep"' in "".join(texts(chunks))


# --- pdf: pages numbered from 1 ----------------------------------------------------------------


def test_pdf_passages_carry_their_page_from_one() -> None:
    chunks = extract("pdf", HANDBOOK)
    assert_numbered(chunks)
    assert sorted({chunk.page for chunk in chunks}) == [1, 2, 3, 4, 5]
    pages = [chunk.page for chunk in chunks]
    assert pages == sorted(pages)  # reading order
    for number in range(1, 6):
        on_page = "\n".join(chunk.text for chunk in chunks if chunk.page == number)
        assert f"Page {number}:" in on_page
        assert f"Page {number} of 5" in on_page
        assert all(f"Page {other}:" not in on_page for other in range(1, 6) if other != number)
    assert "Agnes Tulloch" in "".join(c.text for c in chunks if c.page == 1)


def _self_referencing_pdf() -> bytes:
    # Two bytes changed (found by fuzzing) make pypdf raise LimitReachedError, which is not
    # one of its PdfReadError family.
    damaged = bytearray(HANDBOOK)
    damaged[40], damaged[156] = ord("R"), 0xC0
    return bytes(damaged)


DAMAGED_PDFS = {
    "not-a-pdf": b"%PDF-1.4\nthis is no PDF at all\n",
    "empty": b"",
    "truncated": HANDBOOK[: len(HANDBOOK) // 3],
    "self-reference": _self_referencing_pdf(),
}


@pytest.mark.parametrize("data", DAMAGED_PDFS.values(), ids=DAMAGED_PDFS.keys())
def test_a_damaged_pdf_fails_with_extraction_failed(data: bytes) -> None:
    with pytest.raises(ExtractionFailed):
        extract("pdf", data)


def _encrypted_handbook(*, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(HANDBOOK)))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_password_protected_pdf_fails_with_extraction_failed() -> None:
    with pytest.raises(ExtractionFailed, match="encrypted"):
        extract("pdf", _encrypted_handbook(user_password="secret"))


def test_a_pdf_encrypted_without_a_user_password_is_read() -> None:
    chunks = extract("pdf", _encrypted_handbook(user_password=""))
    assert texts(chunks) == texts(extract("pdf", HANDBOOK))


# --- types without text ------------------------------------------------------------------------


@pytest.mark.parametrize("extension", ["png", "jpg", "jpeg", "gif", "webp", "exe", ""])
def test_types_without_text_have_no_passages(extension: str) -> None:
    source = io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    assert extract_chunks(extension, source) == []
    assert source.tell() == 0  # not even read



# --- the copy an upload keeps for extraction -----------------------------------------------------


def feed(copy: extraction.ExtractionCopy, data: bytes, piece: int) -> None:
    for start in range(0, len(data), piece):
        copy.keep(data[start:start + piece])


@pytest.mark.parametrize("piece", [1, 999, 4_096, 65_536])
def test_the_copy_of_a_long_text_is_exactly_its_head(
    monkeypatch: pytest.MonkeyPatch, piece: int
) -> None:
    monkeypatch.setattr(extraction, "MAX_TEXT_BYTES", 10_000)  # binds before MAX_TEXT_CHARS
    data = ("\n\n".join(sentence(n) for n in range(200)) + "\n").encode()
    cut = sentence(10_000 // 61)  # a sentence and its blank line take 61 bytes: this one is cut
    start = data.index(cut.encode())
    assert start < 10_000 < start + len(cut)
    copy = copy_for("md")
    assert copy is not None
    feed(copy, data, piece)
    assert copy.size == 10_000
    chunks = copy.chunks()
    copy.close()
    # What reading the stored file back gave: extraction of its first MAX_TEXT_BYTES.
    assert chunks == extract_chunks("md", io.BytesIO(data))
    indexed = "\n".join(texts(chunks))
    assert indexed.endswith(cut[:10_000 - start])
    assert cut not in indexed and sentence(199) not in indexed


def test_the_copy_of_a_text_stops_at_max_text_bytes() -> None:
    copy = copy_for("txt")
    assert copy is not None
    feed(copy, b"a few words.\n" * (MAX_TEXT_BYTES // 13 + 1_000), 1_048_576)
    assert copy.size == MAX_TEXT_BYTES  # the memory it holds, whatever the file's size
    copy.close()


def test_the_copy_of_a_pdf_is_whole_even_past_the_memory_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(extraction, "SPOOL_BYTES", 4_096)  # the handbook then spools to disk
    copy = copy_for("pdf")
    assert copy is not None
    feed(copy, HANDBOOK, 1_000)
    assert copy.chunks() == extract("pdf", HANDBOOK)
    copy.close()
    copy.close()  # twice is harmless


@pytest.mark.parametrize("extension", ["png", "jpg", "gif", "webp"])
def test_types_without_text_keep_no_copy(extension: str) -> None:
    assert copy_for(extension) is None

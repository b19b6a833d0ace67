"""file_rules: display-name cleaning, extension allow-list, content sniffing (SPEC section 5)."""

from __future__ import annotations

import unicodedata

import pytest

from chat_app.services.file_rules import (
    MAX_FILENAME_CHARS,
    SNIFF_BYTES,
    BadFilename,
    CleanName,
    EmptyFile,
    FileTooLarge,
    TooManyFiles,
    UnsupportedFileType,
    check_content,
    check_extension,
    clean_filename,
)
from chat_app.settings import Settings

ALLOWED = Settings().allowed_extension_set

# The smallest heads the sniffer recognises for each binary type.
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 17
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20
GIF = b"GIF89a" + b"\x01\x00\x01\x00" + b"\x00" * 16
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 20
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\n%%EOF\n"
HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"
BIDI_AND_INVISIBLE = [
    "\u202e",  # right-to-left override
    "\u202d",  # left-to-right override
    "\u202a",  # left-to-right embedding
    "\u2066",  # left-to-right isolate
    "\u2069",  # pop directional isolate
    "\u200e",  # left-to-right mark
    "\u200f",  # right-to-left mark
    "\u200b",  # zero-width space
    "\u200c",  # zero-width non-joiner
    "\u200d",  # zero-width joiner
    "\u2060",  # word joiner
    "\ufeff",  # byte-order mark / zero-width no-break space
    "\u2028",  # line separator
    "\u2029",  # paragraph separator
]


# --- clean_filename ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "display", "extension"),
    [
        ("report.txt", "report.txt", "txt"),
        ("../../etc/passwd.txt", "passwd.txt", "txt"),
        ("..\\..\\x.txt", "x.txt", "txt"),
        ("C:\\Users\\me\\Desktop\\notes.md", "notes.md", "md"),
        ("\uff0e\uff0e\uff0fx.txt", "x.txt", "txt"),  # fullwidth "../"
        ("\uff0e\uff0e\uff3cx.txt", "x.txt", "txt"),  # fullwidth "..\"
        ("/abs/path/to/data.csv", "data.csv", "csv"),
        ("dir/", "dir", ""),
        ("-rf.txt", "rf.txt", "txt"),
        ("--help.md", "help.md", "md"),
        ("a.jpg.php", "a.jpg.php", "php"),
        ("a.php%00.jpg", "a.php%00.jpg", "jpg"),
        ("a.php\x00.jpg", "a.php.jpg", "jpg"),
        ("REPORT.PDF", "REPORT.pdf", "pdf"),
        ("Photo.JpEg", "Photo.jpeg", "jpeg"),
        ("line\r\nbreak.txt", "linebreak.txt", "txt"),
        ("tab\there.txt", "tabhere.txt", "txt"),
        ("x.tar.gz", "x.tar.gz", "gz"),
        ("résumé.txt", "résumé.txt", "txt"),
        ("日本語のファイル.md", "日本語のファイル.md", "md"),
    ],
)
def test_clean_filename(raw: str, display: str, extension: str) -> None:
    assert clean_filename(raw) == CleanName(display=display, extension=extension)


@pytest.mark.parametrize("raw", [".htaccess", ".bashrc", "...htaccess"])
def test_a_dot_file_has_no_extension_and_is_refused(raw: str) -> None:
    name = clean_filename(raw)
    assert not name.display.startswith(".")
    assert name.extension == ""
    with pytest.raises(UnsupportedFileType):
        check_extension(name, ALLOWED)


@pytest.mark.parametrize("mark", BIDI_AND_INVISIBLE)
def test_bidi_and_zero_width_characters_are_removed(mark: str) -> None:
    name = clean_filename(f"invoice{mark}gpj.txt")
    assert name == CleanName(display="invoicegpj.txt", extension="txt")


def test_a_right_to_left_override_cannot_disguise_the_extension() -> None:
    # Shown as "evil‮txt.exe" → "eviltxt.exe" in a right-to-left-unaware viewer.
    name = clean_filename("evil\u202etxt.exe")
    assert name.extension == "exe"
    assert "\u202e" not in name.display
    with pytest.raises(UnsupportedFileType):
        check_extension(name, ALLOWED)


@pytest.mark.parametrize("control", [chr(code) for code in [*range(0x00, 0x20), 0x7F, 0x85]])
def test_control_characters_are_removed(control: str) -> None:
    assert clean_filename(f"a{control}b.txt").display == "ab.txt"


def test_nfd_input_becomes_nfc() -> None:
    raw = unicodedata.normalize("NFD", "Café Ångström.txt")
    assert raw != "Café Ångström.txt"  # the test's own premise: decomposed input
    name = clean_filename(raw)
    assert name.display == "Café Ångström.txt"
    assert unicodedata.is_normalized("NFC", name.display)


@pytest.mark.parametrize(
    ("stem_char", "extension"),
    [("a", "txt"), ("é", "pdf"), ("日", "md"), ("\U0001d49c", "png")],  # 1, 2, 3, 4 UTF-8 bytes
)
def test_a_long_name_is_capped_and_keeps_its_extension(stem_char: str, extension: str) -> None:
    raw = stem_char * 300 + "." + extension.upper()
    assert len(raw.encode()) >= 300
    name = clean_filename(raw)
    assert 1 <= len(name.display) <= MAX_FILENAME_CHARS
    assert len(name.display.encode()) <= 255
    assert name.display.endswith("." + extension)
    stem = name.display[: -len(extension) - 1]
    assert stem == stem_char * len(stem)
    assert name.extension == extension
    assert check_extension(name, ALLOWED)


def test_a_name_of_exactly_the_limit_is_kept_whole() -> None:
    raw = "x" * (MAX_FILENAME_CHARS - 4) + ".txt"
    assert clean_filename(raw).display == raw


def test_an_overlong_extension_is_not_kept_whole_beyond_the_cap() -> None:
    name = clean_filename("a." + "b" * 300)
    assert len(name.display) <= MAX_FILENAME_CHARS
    with pytest.raises(UnsupportedFileType):
        check_extension(name, ALLOWED)


@pytest.mark.parametrize(
    "raw",
    ["", " ", ".", "..", "...", ". . .", "../..", "/", "\\", "\u202e\u200b", "\x00\x01", "---",
     "_"],
)
def test_names_without_usable_characters_are_refused(raw: str) -> None:
    with pytest.raises(BadFilename) as caught:
        clean_filename(raw)
    assert caught.value.status == 422


def test_clean_names_are_stable() -> None:
    for raw in ["../../etc/passwd.txt", "a\u202eb.txt", "-rf.txt", "é" * 300 + ".md"]:
        once = clean_filename(raw)
        assert clean_filename(once.display) == once


def test_cleaned_names_never_contain_separators_or_controls() -> None:
    nasty = "..\\../\uff0f\u202e<>:\"|?*\x00\x1f\r\n" * 10 + "name.txt"
    name = clean_filename(nasty)
    assert name.display.endswith(".txt")
    for bad in ["/", "\\", "\uff0f", "\u202e", "\x00", "\r", "\n", '"', "<", ">", ":", "|", "?",
                "*"]:
        assert bad not in name.display


# --- check_extension ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        ("a.txt", "text/plain"),
        ("a.md", "text/markdown"),
        ("a.csv", "text/csv"),
        ("a.json", "application/json"),
        ("a.PDF", "application/pdf"),
        ("a.png", "image/png"),
        ("a.jpg", "image/jpeg"),
        ("a.jpeg", "image/jpeg"),
        ("a.gif", "image/gif"),
        ("a.webp", "image/webp"),
    ],
)
def test_allowed_extensions_map_to_their_canonical_type(raw: str, content_type: str) -> None:
    assert check_extension(clean_filename(raw), ALLOWED) == content_type


@pytest.mark.parametrize(
    "raw", ["a.php", "a.jpg.php", "a.exe", "a.html", "a.svg", "a.txt.js", "noext", "a.tar.gz"]
)
def test_other_extensions_are_refused(raw: str) -> None:
    with pytest.raises(UnsupportedFileType) as caught:
        check_extension(clean_filename(raw), ALLOWED)
    assert caught.value.status == 415


def test_only_configured_extensions_are_allowed() -> None:
    with pytest.raises(UnsupportedFileType):
        check_extension(clean_filename("a.png"), frozenset({"txt"}))
    # Configured but unknown to the app: still refused (no canonical content type).
    with pytest.raises(UnsupportedFileType):
        check_extension(clean_filename("a.zip"), frozenset({"txt", "zip"}))


# --- check_content -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extension", "head"),
    [("png", PNG), ("jpg", JPEG), ("jpeg", JPEG), ("gif", GIF), ("webp", WEBP), ("pdf", PDF)],
)
@pytest.mark.parametrize("complete", [True, False])
def test_real_headers_are_accepted(extension: str, head: bytes, complete: bool) -> None:
    check_content(extension, head, complete=complete)


@pytest.mark.parametrize(
    ("extension", "head"),
    [
        ("png", HTML),
        ("png", b"GIF89a" + b"\x00" * 16),  # another image type
        ("png", JPEG),
        ("jpg", PNG),
        ("gif", PDF),
        ("webp", b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 20),  # RIFF, but audio
        ("pdf", b"hello, I am not a PDF"),
        ("pdf", HTML),
        ("pdf", b"\x00" * 64),
    ],
)
def test_content_that_does_not_match_the_extension_is_refused(extension: str, head: bytes) -> None:
    with pytest.raises(UnsupportedFileType) as caught:
        check_content(extension, head, complete=True)
    assert caught.value.status == 415


@pytest.mark.parametrize("extension", ["txt", "md", "csv", "json"])
def test_utf8_text_is_accepted(extension: str) -> None:
    check_content(extension, "name,ville\nZoë,Zürich 日本\n".encode(), complete=True)


@pytest.mark.parametrize(
    "head",
    [
        b"hello\x00world",
        b"\x00",
        b"\xff\xfeh\x00i\x00",  # UTF-16 with its byte-order mark
        b"caf\xe9",  # Latin-1
        b"\xc3\x28",  # invalid continuation byte
        b"\xed\xa0\x80",  # a UTF-16 surrogate encoded as UTF-8
        PNG,  # a binary signature behind a text extension
        PDF,
    ],
)
def test_text_that_is_not_utf8_text_is_refused(head: bytes) -> None:
    with pytest.raises(UnsupportedFileType):
        check_content("txt", head, complete=True)


def test_a_character_cut_at_the_head_boundary_is_accepted_while_more_follows() -> None:
    head = b"a" * (SNIFF_BYTES - 1) + "é".encode()[:1]
    assert len(head) == SNIFF_BYTES
    check_content("txt", head, complete=False)
    # ...but a file that really ends mid-character is not UTF-8.
    with pytest.raises(UnsupportedFileType):
        check_content("txt", head, complete=True)


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_a_four_byte_character_cut_anywhere_is_accepted_while_more_follows(cut: int) -> None:
    check_content("md", b"# title " + "\U0001f600".encode()[:cut], complete=False)


def test_invalid_utf8_is_refused_even_while_more_follows() -> None:
    with pytest.raises(UnsupportedFileType):
        check_content("txt", b"ok \xff more", complete=False)


@pytest.mark.parametrize("extension", ["txt", "png", "pdf"])
def test_an_empty_file_is_refused(extension: str) -> None:
    with pytest.raises(EmptyFile) as caught:
        check_content(extension, b"", complete=True)
    assert caught.value.status == 422


def test_error_classes_carry_their_statuses() -> None:
    assert (FileTooLarge.status, TooManyFiles.status, UnsupportedFileType.status) == (413, 409, 415)
    assert BadFilename().status == EmptyFile().status == 422
    assert {FileTooLarge.type_slug, TooManyFiles.type_slug, UnsupportedFileType.type_slug,
            BadFilename.type_slug, EmptyFile.type_slug} == {
        "file-too-large", "too-many-files", "unsupported-file-type", "bad-filename", "empty-file"}

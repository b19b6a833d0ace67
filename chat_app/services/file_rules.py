"""What an upload must look like: display-name cleaning, extension allow-list, content sniffing."""

from __future__ import annotations

import codecs
import unicodedata
from dataclasses import dataclass

import filetype
from pathvalidate import sanitize_filename

from chat_app.errors import AppError, InvalidInput

MAX_FILENAME_CHARS = 120
#: pathvalidate cuts longer names from the end, extension first; we shorten them before it does.
MAX_FILENAME_BYTES = 255
#: A longer "extension" is just part of the name (and never an allowed one).
MAX_EXTENSION_CHARS = 16
#: Bytes of the file's head the sniffer looks at before anything is written.
SNIFF_BYTES = 8192

#: Canonical content type per allowed extension; the client's claimed type is never trusted.
CONTENT_TYPES: dict[str, str] = {
    "txt": "text/plain",
    "md": "text/markdown",
    "csv": "text/csv",
    "json": "application/json",
    "pdf": "application/pdf",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
}
TEXT_EXTENSIONS = frozenset({"txt", "md", "csv", "json"})
#: What `filetype` must detect for binary extensions.
SNIFFED_AS: dict[str, frozenset[str]] = {
    "pdf": frozenset({"pdf"}),
    "png": frozenset({"png"}),
    "jpg": frozenset({"jpg"}),
    "jpeg": frozenset({"jpg"}),
    "gif": frozenset({"gif"}),
    "webp": frozenset({"webp"}),
}
# Path separators users (or attackers) may type, including fullwidth forms.
_SEPARATORS = ("/", "\\", "\uff0f", "\uff3c")
# Control, format (bidi overrides, zero-width), line and paragraph separators, private use.
_STRIPPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs"})


class UnsupportedFileType(AppError):
    status, type_slug, toast_level = 415, "unsupported-file-type", "warning"


class FileTooLarge(AppError):
    status, type_slug, toast_level = 413, "file-too-large", "warning"


class TooManyFiles(AppError):
    status, type_slug, toast_level = 409, "too-many-files", "warning"


class EmptyFile(InvalidInput):
    type_slug = "empty-file"

    def __init__(self) -> None:
        super().__init__("The file is empty.")


class BadFilename(InvalidInput):
    type_slug = "bad-filename"

    def __init__(self) -> None:
        super().__init__("The file name has no usable characters. Rename the file and retry.")


@dataclass(frozen=True)
class CleanName:
    """A display name safe to show and to put in Content-Disposition, and its extension."""

    display: str
    extension: str


def clean_filename(raw: str) -> CleanName:
    """NFC-normalise, drop controls and bidi marks, keep the last path part, cap the length."""
    text = unicodedata.normalize("NFC", raw or "")
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _STRIPPED_CATEGORIES)
    for separator in _SEPARATORS:
        text = text.replace(separator, "/")
    parts = [part for part in text.split("/") if part.strip(" .")]
    text = _shorten(parts[-1] if parts else "")
    text = sanitize_filename(text, platform="universal", replacement_text="_")
    # Leading dots hide files, leading dashes look like options: neither belongs in a name.
    text = text.strip().lstrip(".-_ ").rstrip(". ")
    stem, dot, extension = text.rpartition(".")
    if not dot:
        stem, extension = text, ""
    if not stem.strip(" ._-"):
        if not text:
            raise BadFilename()
        stem, extension = text, ""  # e.g. "htaccess": a name without an extension
    extension = extension.lower()
    room = MAX_FILENAME_CHARS - (len(extension) + 1 if extension else 0)
    display = stem[:room].rstrip(" .") + (f".{extension}" if extension else "")
    return CleanName(display=display, extension=extension)


def _shorten(text: str) -> str:
    """Cap `text` to the display limits (characters and UTF-8 bytes), keeping its extension."""
    stem, dot, extension = text.rpartition(".")
    if not dot or len(extension) > MAX_EXTENSION_CHARS:
        stem, extension = text, ""
    suffix = f".{extension}" if extension else ""
    stem = stem[: MAX_FILENAME_CHARS - len(suffix)]
    while len((stem + suffix).encode()) > MAX_FILENAME_BYTES:
        stem = stem[:-1]
    return stem + suffix


def check_extension(name: CleanName, allowed: frozenset[str]) -> str:
    """The canonical content type for an allowed extension; 415 otherwise."""
    if name.extension not in allowed or name.extension not in CONTENT_TYPES:
        shown = ", ".join(sorted(allowed & CONTENT_TYPES.keys()))
        raise UnsupportedFileType(f"This file type is not allowed. Allowed: {shown}.")
    return CONTENT_TYPES[name.extension]


def check_content(extension: str, head: bytes, *, complete: bool) -> None:
    """Sniff `head` (the file's first bytes) and require it to match `extension`."""
    if not head:
        raise EmptyFile()
    if extension in TEXT_EXTENSIONS:
        _check_text(head, complete=complete)
        return
    kind = filetype.guess(head)
    if kind is None or kind.extension not in SNIFFED_AS.get(extension, frozenset()):
        raise UnsupportedFileType(
            f"The file's content is not a .{extension} file. Upload the real file."
        )


def _check_text(head: bytes, *, complete: bool) -> None:
    # A text upload must be UTF-8 without NUL bytes; a known binary signature is refused too.
    if b"\x00" in head or filetype.guess(head) is not None:
        raise UnsupportedFileType("The file's content is not text. Upload a UTF-8 text file.")
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(head, final=complete)
    except UnicodeDecodeError:
        raise UnsupportedFileType(
            "The file's content is not UTF-8 text. Save it as UTF-8 and retry."
        ) from None

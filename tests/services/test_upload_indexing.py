"""Passages indexed at upload, on each database x each store: what is indexed is what reading the
stored file back would give, no read-back is needed, and an upload that does not end `stored`
leaves no passage behind (SPEC sections 5, 6 and 11).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from chat_app.container import Services
from chat_app.errors import SessionNotFound
from chat_app.models import FILE_FAILED, FileChunk, SessionFile
from chat_app.services import extraction
from chat_app.services.extraction import MAX_TEXT_BYTES, TextChunk, extract_chunks
from chat_app.services.file_rules import SNIFF_BYTES, FileTooLarge
from chat_app.services.uploads import begin_upload, upload_chunks
from chat_app.storage.base import ObjectStore
from tests.aio import run_async
from tests.services.conftest import (
    CTX,
    FlakyStore,
    file_row,
    file_rows,
    new_session,
    read_object,
    upload_bytes,
)

HANDBOOK = (Path(__file__).resolve().parents[1] / "data" / "corpus" / "handbook.pdf").read_bytes()


def paragraphs(count: int, tag: str = "") -> bytes:
    """`count` distinct paragraphs of about 200 bytes, blank lines between them."""
    return "".join(
        f"Paragraph {tag}{n}: the keeper logs the lamp, the fog horn and the tide at {n % 24:02d}"
        f":00. Kettle {n} is on the stove; the rope locker holds coil {n * 7 % 101}.\n\n"
        for n in range(count)
    ).encode()


def indexed(engine: Engine, file_id: str) -> list[TextChunk]:
    """The passages saved for a file, in order."""
    with Session(engine) as db:
        rows = db.exec(select(FileChunk).where(FileChunk.file_id == file_id)
                       .order_by(col(FileChunk.ordinal))).all()
    return [TextChunk(row.ordinal, row.text, row.page) for row in rows]


def passages_of_session(engine: Engine, session_id: int) -> int:
    """Passages of every file row the session ever had, whatever the row's status."""
    with Session(engine) as db:
        return db.exec(
            select(func.count()).select_from(FileChunk)
            .join(SessionFile, col(SessionFile.id) == col(FileChunk.file_id))
            .where(SessionFile.session_id == session_id)
        ).one()


def read_back(services: Services, file_id: str, extension: str) -> list[TextChunk]:
    """What extraction gives on the stored object, read back from the store."""
    key = file_row(services.engine, file_id).object_key
    return extract_chunks(extension, io.BytesIO(read_object(services.store, key)))


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def upload_in_pieces(services: Services, session_uuid: str, name: str, data: bytes,
                     size: int) -> str:
    """Upload through the async path (the UI's), `size` bytes at a time; the file's id."""
    async def main() -> str:
        view = await upload_chunks(services.files, session_uuid, name, pieces(data, size), CTX)
        return view.id

    return run_async(main)


class NoReadBackStore(FlakyStore):
    """A real store that refuses to be read: indexing must not depend on reading back."""

    def open(self, key: str) -> Iterator[bytes]:
        raise AssertionError("the upload read its own object back")


# --- what is indexed ---------------------------------------------------------------------------


def test_a_text_longer_than_max_text_bytes_indexes_what_read_back_gave(
    file_services: Services,
) -> None:
    session = new_session(file_services)
    data = paragraphs(MAX_TEXT_BYTES // 150, "head-") + paragraphs(2_000, "tail-")
    assert len(data) > MAX_TEXT_BYTES + SNIFF_BYTES
    file_id = upload_in_pieces(file_services, session.uuid, "log.txt", data, 64 * 1024)
    chunks = indexed(file_services.engine, file_id)
    assert len(chunks) > 1_000
    assert chunks == read_back(file_services, file_id, "txt")


@pytest.mark.parametrize("piece", [1_000, 4_096, 1_048_576])
def test_a_text_over_the_byte_limit_indexes_exactly_its_head(
    file_services: Services, monkeypatch: pytest.MonkeyPatch, piece: int
) -> None:
    monkeypatch.setattr(extraction, "MAX_TEXT_BYTES", 50_000)  # binds before MAX_TEXT_CHARS
    session = new_session(file_services)
    data = paragraphs(2_000)
    file_id = upload_in_pieces(file_services, session.uuid, "notes.md", data, piece)
    chunks = indexed(file_services.engine, file_id)
    assert chunks == extract_chunks("md", io.BytesIO(data[:50_000]))
    assert chunks == read_back(file_services, file_id, "md")
    text = "\n".join(chunk.text for chunk in chunks)
    cut = data[:50_000].decode().rsplit("\n\n", 1)[-1].strip()  # the paragraph the limit cuts
    assert cut.startswith("Paragraph ") and text.endswith(cut)
    assert "Paragraph 1999:" not in text


def test_a_pdf_fed_in_small_pieces_is_indexed_whole(file_services: Services) -> None:
    session = new_session(file_services)
    file_id = upload_in_pieces(file_services, session.uuid, "handbook.pdf", HANDBOOK, 1_000)
    chunks = indexed(file_services.engine, file_id)
    assert sorted({chunk.page for chunk in chunks}) == [1, 2, 3, 4, 5]
    assert chunks == read_back(file_services, file_id, "pdf")


@pytest.mark.parametrize(("name", "data"), [("notes.txt", paragraphs(50)),
                                            ("handbook.pdf", HANDBOOK)])
def test_indexing_never_reads_the_object_back(
    make_file_services, store: ObjectStore, name: str, data: bytes
) -> None:
    services = make_file_services(store_override=NoReadBackStore(store))
    session = new_session(services)
    view = upload_bytes(services, session.uuid, name, data)
    extension = name.rsplit(".", 1)[1]
    chunks = indexed(services.engine, view.id)
    assert chunks and chunks == extract_chunks(extension, io.BytesIO(data))


# --- uploads that do not end `stored` leave no passage -------------------------------------------


def test_a_file_refused_as_too_large_after_its_head_leaves_no_passage(
    make_file_services,
) -> None:
    services = make_file_services(CHAT_APP_MAX_UPLOAD_MB=1 / 64)  # 16 KiB: past the head
    session = new_session(services)
    with pytest.raises(FileTooLarge):
        upload_bytes(services, session.uuid, "long.txt", paragraphs(200))
    kept = upload_bytes(services, session.uuid, "short.txt", paragraphs(20))
    assert passages_of_session(services.engine, session.id) == len(
        indexed(services.engine, kept.id)) > 0


def test_an_abandoned_upload_leaves_no_passage(file_services: Services) -> None:
    session = new_session(file_services)
    upload = begin_upload(file_services.files, session.uuid, "half.txt", CTX)
    upload.feed(paragraphs(200))  # past the head: the row is `pending`, bytes are in the store
    upload.abandon()
    [row] = file_rows(file_services.engine, session.id)
    assert row.status == FILE_FAILED
    assert passages_of_session(file_services.engine, session.id) == 0


def test_a_reset_while_the_text_is_in_flight_leaves_no_passage(file_services: Services) -> None:
    session = new_session(file_services)
    upload = begin_upload(file_services.files, session.uuid, "late.md", CTX)
    upload.feed(paragraphs(200))
    file_services.sessions.reset(session.uuid, CTX)  # committed by another request meanwhile
    upload.feed(paragraphs(10, "last-"))
    with pytest.raises(SessionNotFound):
        upload.finish()
    assert [row.status for row in file_rows(file_services.engine, session.id)] == [FILE_FAILED]
    assert passages_of_session(file_services.engine, session.id) == 0
    assert upload.passages is None

"""The upload protocol at the service level, on each database x each store (SPEC section 5)."""

from __future__ import annotations

import hashlib
import io
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from sqlmodel import Session, func, select

from chat_app.container import Services
from chat_app.errors import AppError, MalformedSessionId, SessionNotFound
from chat_app.models import FILE_FAILED, FILE_PENDING, FILE_STORED, SessionFile
from chat_app.services.audit import RequestContext
from chat_app.services.file_rules import (
    SNIFF_BYTES,
    BadFilename,
    EmptyFile,
    FileTooLarge,
    TooManyFiles,
    UnsupportedFileType,
)
from chat_app.services.files import FileView
from chat_app.services.session_ids import new_session_id
from chat_app.services.sessions import SessionContents
from chat_app.services.uploads import begin_upload, upload_chunks, upload_stream
from chat_app.storage.s3 import S3Store
from tests.aio import run_async
from tests.services.conftest import (
    CTX,
    audit_rows,
    file_row,
    file_rows,
    new_session,
    read_object,
    session_keys,
    upload_bytes,
)
from tests.unit.test_file_rules import GIF, HTML, JPEG, PDF, PNG, WEBP

MIB = 2**20
PHP = b"<?php system($_GET['c']); ?>\n"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'
ZIP = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 40
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 56

# (filename as the client sends it, content, cleaned display name or the expected error)
UPLOADS: list[tuple[str, bytes, str | type[AppError]]] = [
    ("../../etc/passwd.txt", b"root:x:0:0:root:/root:/bin/sh\n", "passwd.txt"),
    ("..\\..\\windows\\x.txt", b"plain text\n", "x.txt"),
    ("\uff0e\uff0e\uff0fx.txt", b"fullwidth traversal\n", "x.txt"),
    ("-rf.txt", b"not an option\n", "rf.txt"),
    ("line\r\nbreak.csv", b"a,b\n1,2\n", "linebreak.csv"),
    ("invoice\u202egpj.png", PNG, "invoicegpj.png"),
    ("zero\u200bwidth\ufeff.md", b"# hi\n", "zerowidth.md"),
    ("REPORT.PDF", PDF, "REPORT.pdf"),
    ("a.php\x00.jpg", JPEG, "a.php.jpg"),
    (unicodedata.normalize("NFD", "café crème.json"), b'{"caf\xc3\xa9": 1}', "café crème.json"),
    ("x" * 300 + ".txt", b"long name\n", "x" * 116 + ".txt"),
    ("anim.gif", GIF, "anim.gif"),
    ("pic.webp", WEBP, "pic.webp"),
    (".htaccess", b"Options +ExecCGI\n", UnsupportedFileType),
    ("a.jpg.php", PHP, UnsupportedFileType),
    ("a.php%00.jpg", PHP, UnsupportedFileType),
    ("shell.php", PHP, UnsupportedFileType),
    ("evil\u202etxt.exe", ELF, UnsupportedFileType),
    ("drawing.svg", SVG, UnsupportedFileType),
    ("page.html", HTML, UnsupportedFileType),
    ("archive.zip", ZIP, UnsupportedFileType),
    ("image.png", HTML, UnsupportedFileType),
    ("photo.jpg", PNG, UnsupportedFileType),
    ("anim.gif", JPEG, UnsupportedFileType),
    ("doc.pdf", b"this is not a PDF at all\n", UnsupportedFileType),
    ("fake.txt", PNG, UnsupportedFileType),
    ("program.txt", ELF, UnsupportedFileType),
    ("nul.txt", b"abc\x00def", UnsupportedFileType),
    ("latin1.txt", b"caf\xe9 cr\xe8me", UnsupportedFileType),
    ("utf16.csv", "a,b".encode("utf-16"), UnsupportedFileType),
    ("empty.txt", b"", EmptyFile),
    ("empty.png", b"", EmptyFile),
    ("", b"x", BadFilename),
    ("...", b"x", BadFilename),
    ("../../", b"x", BadFilename),
    ("\u202e\u200b", b"x", BadFilename),
]


def assert_stored(
    services: Services, session_uuid: str, view: FileView, data: bytes
) -> SessionFile:
    """The row is `stored` with its size and hash, under the protocol's key, with the bytes."""
    row = file_row(services.engine, view.id)
    assert row.status == FILE_STORED
    assert row.object_key == f"sessions/{session_uuid}/{view.id}"
    assert (row.size_bytes, row.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert (view.size_bytes, view.filename, view.content_type) == (
        row.size_bytes, row.filename, row.content_type)
    assert read_object(services.store, row.object_key) == data
    return row


def assert_left_nothing(services: Services, session_id: int, session_uuid: str) -> None:
    """No row at all and no object under the session's prefix."""
    assert file_rows(services.engine, session_id) == []
    assert session_keys(services.store, session_uuid) == []


def total_file_rows(services: Services) -> int:
    with Session(services.engine) as db:
        return db.exec(select(func.count()).select_from(SessionFile)).one()


def rejection_reasons(services: Services, session_id: int) -> list[str]:
    return [row.details["reason"]
            for row in audit_rows(services.engine, session_id=session_id, event="file.rejected")]


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def run_upload_chunks(services: Services, session_uuid: str, name: str,
                      chunks: AsyncIterator[bytes]) -> FileView:
    async def main() -> FileView:
        return await upload_chunks(services.files, session_uuid, name, chunks, CTX)

    return run_async(main)


# --- the table of good and bad uploads -----------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "data", "expected"), UPLOADS, ids=[f"{i:02d}" for i in range(len(UPLOADS))]
)
def test_upload_outcomes(file_services: Services, filename: str, data: bytes,
                         expected: str | type[AppError]) -> None:
    session = new_session(file_services)
    if isinstance(expected, str):
        view = upload_bytes(file_services, session.uuid, filename, data)
        row = assert_stored(file_services, session.uuid, view, data)
        assert row.filename == expected
        assert session_keys(file_services.store, session.uuid) == [row.object_key]
        events = [r.event for r in audit_rows(file_services.engine, session_id=session.id)
                  if r.event.startswith("file.")]
        assert events == ["file.upload_started", "file.uploaded"]
        return
    with pytest.raises(expected) as caught:
        upload_bytes(file_services, session.uuid, filename, data)
    assert_left_nothing(file_services, session.id, session.uuid)
    assert rejection_reasons(file_services, session.id) == [caught.value.type_slug]
    # The audit row says why, never what: no filename, no content.
    details = audit_rows(file_services.engine, session_id=session.id,
                         event="file.rejected")[0].details
    assert set(details) == {"reason"}


def test_the_key_never_contains_the_filename(file_services: Services) -> None:
    session = new_session(file_services)
    view = upload_bytes(file_services, session.uuid, "secret-plan.txt", b"x\n")
    row = file_row(file_services.engine, view.id)
    assert "secret" not in row.object_key and "plan" not in row.object_key
    assert row.object_key.split("/") == ["sessions", session.uuid, view.id]


# --- limits --------------------------------------------------------------------------------------


def test_exactly_the_size_limit_is_accepted_and_one_byte_more_refused(make_file_services) -> None:
    services = make_file_services(CHAT_APP_MAX_UPLOAD_MB=1 / 64)  # 16 KiB: past the sniffed head
    limit = services.files.limits.max_bytes
    assert limit == 16 * 1024 > SNIFF_BYTES
    session = new_session(services)
    at_limit = b"a" * limit
    assert_stored(services, session.uuid,
                  upload_bytes(services, session.uuid, "full.txt", at_limit), at_limit)
    with pytest.raises(FileTooLarge) as caught:
        upload_bytes(services, session.uuid, "over.txt", at_limit + b"a")
    assert caught.value.status == 413
    rows = file_rows(services.engine, session.id)
    assert [row.filename for row in rows] == ["full.txt"]
    assert session_keys(services.store, session.uuid) == [rows[0].object_key]
    assert rejection_reasons(services, session.id) == ["file-too-large"]


def test_a_file_over_a_limit_smaller_than_the_head_leaves_nothing(make_file_services) -> None:
    services = make_file_services(CHAT_APP_MAX_UPLOAD_MB=1 / 256)  # 4 KiB: inside the head
    session = new_session(services)
    with pytest.raises(FileTooLarge):
        upload_bytes(services, session.uuid, "over.txt", b"a" * (4096 + 1))
    assert_left_nothing(services, session.id, session.uuid)
    events = [r.event for r in audit_rows(services.engine, session_id=session.id)
              if r.event.startswith("file.")]
    assert events == ["file.rejected"]


def test_the_size_limit_stops_the_stream_at_the_limit(make_file_services) -> None:
    services = make_file_services(CHAT_APP_MAX_UPLOAD_MB=1 / 64)
    session = new_session(services)
    consumed = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal consumed
        while True:
            consumed += 1
            yield b"b" * 1000

    with pytest.raises(FileTooLarge):
        run_upload_chunks(services, session.uuid, "endless.txt", endless())
    assert consumed == 17  # 16 * 1000 <= 16384 < 17 * 1000: nothing read past the limit
    assert_left_nothing(services, session.id, session.uuid)


def test_the_file_count_limit_counts_stored_and_pending(make_file_services) -> None:
    services = make_file_services(CHAT_APP_MAX_FILES_PER_SESSION=2)
    session = new_session(services)
    first = upload_bytes(services, session.uuid, "one.txt", b"1\n")
    in_flight = begin_upload(services.files, session.uuid, "two.txt", CTX)
    in_flight.feed(b"2" * SNIFF_BYTES)  # the head is sniffed: the row is now `pending`
    assert [row.status for row in file_rows(services.engine, session.id)] == [
        FILE_STORED, FILE_PENDING]

    with pytest.raises(TooManyFiles) as caught:
        upload_bytes(services, session.uuid, "three.txt", b"3\n")
    assert caught.value.status == 409
    assert len(file_rows(services.engine, session.id)) == 2
    assert rejection_reasons(services, session.id) == ["too-many-files"]

    in_flight.abandon()  # a failed upload no longer counts
    third = upload_bytes(services, session.uuid, "three.txt", b"3\n")
    with pytest.raises(TooManyFiles):
        upload_bytes(services, session.uuid, "four.txt", b"4\n")
    services.files.delete_file(session.uuid, first.id, CTX)  # nor does a deleted one
    upload_bytes(services, session.uuid, "four.txt", b"4\n")
    stored = [r.filename for r in file_rows(services.engine, session.id) if r.status == FILE_STORED]
    assert sorted(stored) == ["four.txt", "three.txt"]
    assert third.filename == "three.txt"
    assert len(session_keys(services.store, session.uuid)) == 2


def test_the_count_limit_is_per_session(make_file_services) -> None:
    services = make_file_services(CHAT_APP_MAX_FILES_PER_SESSION=1)
    first, second = new_session(services), new_session(services)
    upload_bytes(services, first.uuid, "a.txt", b"a\n")
    upload_bytes(services, second.uuid, "a.txt", b"a\n")
    with pytest.raises(TooManyFiles):
        upload_bytes(services, first.uuid, "b.txt", b"b\n")


# --- what is recorded ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, SNIFF_BYTES - 1, SNIFF_BYTES, SNIFF_BYTES + 1, 3 * MIB + 7])
def test_size_and_sha256_are_recorded(file_services: Services, size: int) -> None:
    session = new_session(file_services)
    data = (b"0123456789abcdef\n" * (size // 17 + 1))[:size]
    view = upload_bytes(file_services, session.uuid, "data.csv", data)
    assert_stored(file_services, session.uuid, view, data)


def test_a_multipart_upload_is_recorded_whole(file_services: Services) -> None:
    session = new_session(file_services)
    data = PNG + bytes(range(256)) * (11 * MIB // 256) + b"tail"  # three 5 MiB parts on S3
    view = upload_bytes(file_services, session.uuid, "big.png", data)
    assert_stored(file_services, session.uuid, view, data)


def test_content_type_comes_from_the_extension(file_services: Services) -> None:
    session = new_session(file_services)
    views = {
        name: upload_bytes(file_services, session.uuid, name, data)
        for name, data in [("PHOTO.JPG", JPEG), ("notes.MD", b"# x\n"), ("t.json", b"[]")]
    }
    assert {name: view.content_type for name, view in views.items()} == {
        "PHOTO.JPG": "image/jpeg", "notes.MD": "text/markdown", "t.json": "application/json"}
    store = file_services.store
    if isinstance(store, S3Store):  # the object carries the same type (the local store keeps none)
        key = file_row(file_services.engine, views["PHOTO.JPG"].id).object_key
        head = store.client.head_object(Bucket=store.bucket, Key=key)
        assert head["ContentType"] == "image/jpeg"


def test_duplicate_names_are_both_kept(file_services: Services) -> None:
    session = new_session(file_services)
    first = upload_bytes(file_services, session.uuid, "notes.txt", b"first\n")
    second = upload_bytes(file_services, session.uuid, "notes.txt", b"second\n")
    assert first.id != second.id
    assert first.filename == second.filename == "notes.txt"
    keys = {file_row(file_services.engine, v.id).object_key for v in (first, second)}
    assert len(keys) == 2
    assert sorted(session_keys(file_services.store, session.uuid)) == sorted(keys)
    assert_stored(file_services, session.uuid, first, b"first\n")
    assert_stored(file_services, session.uuid, second, b"second\n")
    assert [v.id for v in file_services.files.list_files(session.uuid, CTX)] == [
        first.id, second.id]


def test_a_character_cut_at_the_sniffing_boundary_is_accepted(file_services: Services) -> None:
    session = new_session(file_services)
    data = b"a" * (SNIFF_BYTES - 1) + "é and more text\n".encode()
    assert data[:SNIFF_BYTES].endswith(b"\xc3")  # the head ends inside "é"
    view = run_upload_chunks(file_services, session.uuid, "cut.txt", chunks_of(data, SNIFF_BYTES))
    assert_stored(file_services, session.uuid, view, data)


# --- sessions that cannot upload -----------------------------------------------------------------


def ended_session_uuid(services: Services, how: str) -> tuple[int | None, str]:
    if how == "unknown":
        return None, new_session_id()
    session = new_session(services)
    if how == "reset":
        services.sessions.reset(session.uuid, CTX)
    else:
        services.sessions.expire(session.uuid, CTX, reason="idle")
    return session.id, session.uuid


@pytest.mark.parametrize("how", ["unknown", "reset", "expired"])
def test_upload_to_an_ended_or_unknown_session_is_refused_before_any_row(
    file_services: Services, how: str
) -> None:
    session_id, session_uuid = ended_session_uuid(file_services, how)
    before = total_file_rows(file_services)
    with pytest.raises(SessionNotFound):
        upload_bytes(file_services, session_uuid, "a.txt", b"a\n")
    with pytest.raises(SessionNotFound):
        run_upload_chunks(file_services, session_uuid, "a.txt", chunks_of(b"a\n", 1))
    assert total_file_rows(file_services) == before
    assert session_keys(file_services.store, session_uuid) == []
    if session_id is not None:
        assert audit_rows(file_services.engine, session_id=session_id, event="file.rejected") == []
        assert audit_rows(file_services.engine, session_id=session_id,
                          event="file.upload_started") == []


@pytest.mark.parametrize("raw", ["not-a-session", "", None, 42, new_session_id().upper() + " "])
def test_upload_with_a_malformed_session_id_is_refused(
    file_services: Services, raw: object
) -> None:
    before = total_file_rows(file_services)
    with pytest.raises(MalformedSessionId):
        upload_stream(file_services.files, raw, "a.txt", io.BytesIO(b"a\n"), CTX)
    assert total_file_rows(file_services) == before


# --- the async path and abandoned uploads --------------------------------------------------------


def test_upload_chunks_stores_the_file(file_services: Services) -> None:
    session = new_session(file_services)
    data = PDF + b"%" + b"x" * (2 * MIB)
    view = run_upload_chunks(file_services, session.uuid, "Doc.PDF", chunks_of(data, 64 * 1024))
    assert view.filename == "Doc.pdf"
    assert view.content_type == "application/pdf"
    assert_stored(file_services, session.uuid, view, data)


def test_upload_chunks_rejects_bad_content(file_services: Services) -> None:
    session = new_session(file_services)
    with pytest.raises(UnsupportedFileType):
        run_upload_chunks(file_services, session.uuid, "x.png",
                          chunks_of(HTML * 1000, 4096))
    assert_left_nothing(file_services, session.id, session.uuid)
    assert rejection_reasons(file_services, session.id) == ["unsupported-file-type"]


def test_a_client_gone_mid_upload_fails_the_row_and_leaves_no_object(
    file_services: Services,
) -> None:
    session = new_session(file_services)

    async def dropped() -> AsyncIterator[bytes]:
        yield b"a" * SNIFF_BYTES
        yield b"b" * 1000
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        run_upload_chunks(file_services, session.uuid, "half.txt", dropped())
    [row] = file_rows(file_services.engine, session.id)
    assert row.status == FILE_FAILED
    assert session_keys(file_services.store, session.uuid) == []
    assert file_services.files.list_files(session.uuid, CTX) == []


class BrokenStream(io.RawIOBase):
    """Yields `good` bytes, then fails like a dropped connection."""

    def __init__(self, good: Iterable[bytes]) -> None:
        self._good = list(good)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._good:
            return self._good.pop(0)
        raise OSError("connection reset by peer")


def test_a_broken_stream_fails_the_row_and_leaves_no_object(file_services: Services) -> None:
    session = new_session(file_services)
    with pytest.raises(OSError, match="reset"):
        upload_stream(file_services.files, session.uuid, "half.md",
                      BrokenStream([b"# a\n" * 4096]), CTX)  # type: ignore[arg-type]
    assert [row.status for row in file_rows(file_services.engine, session.id)] == [FILE_FAILED]
    assert session_keys(file_services.store, session.uuid) == []


def test_nothing_is_written_before_the_head_is_sniffed(file_services: Services) -> None:
    session = new_session(file_services)
    upload = begin_upload(file_services.files, session.uuid, "slow.txt", CTX)
    upload.feed(b"x" * (SNIFF_BYTES - 1))
    assert file_rows(file_services.engine, session.id) == []
    upload.feed(b"x")
    [row] = file_rows(file_services.engine, session.id)
    assert row.status == FILE_PENDING
    assert session_keys(file_services.store, session.uuid) == []  # invisible until commit
    view = upload.finish()
    assert_stored(file_services, session.uuid, view, b"x" * SNIFF_BYTES)


def test_concurrent_uploads_cannot_exceed_the_count_limit(make_file_services) -> None:
    services = make_file_services(CHAT_APP_MAX_FILES_PER_SESSION=3)
    session = new_session(services)
    barrier = threading.Barrier(8)

    def attempt(index: int) -> str:
        barrier.wait()
        try:
            upload_bytes(services, session.uuid, f"{index}.txt", f"{index}\n".encode())
        except TooManyFiles:
            return "refused"
        return "stored"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    assert sorted(outcomes) == ["refused"] * 5 + ["stored"] * 3
    rows = file_rows(services.engine, session.id)
    assert [row.status for row in rows] == [FILE_STORED] * 3
    assert sorted(session_keys(services.store, session.uuid)) == sorted(r.object_key for r in rows)
    assert rejection_reasons(services, session.id) == ["too-many-files"] * 5


class HoldsTheReset:
    """A contents handler that keeps a reset's transaction open for a moment, after the old
    session was marked `reset` and its files hidden, before the commit."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.inside = threading.Event()

    def summarize(self, db: Session, session_id: int) -> SessionContents:
        return SessionContents()

    def release(self, db: Session, session_id: int, now: datetime) -> SessionContents:
        self.inside.set()
        time.sleep(self.hold_s)
        return SessionContents()

    def purge(self, session_id: int, ctx: RequestContext) -> None:
        """Nothing to purge."""

    def erase_on_expiry(self, db: Session, session_id: int, now: datetime) -> None:
        """Nothing to erase."""


def test_an_upload_finishing_during_a_reset_never_lands_in_the_ended_session(
    file_services: Services,
) -> None:
    # Found by the model check on PostgreSQL: the final check read the session as still active
    # while the reset was uncommitted, so the file was marked `stored` in the ended session,
    # neither counted nor purged by the reset, and the upload reported success.
    services = file_services
    session = new_session(services)
    upload = begin_upload(services.files, session.uuid, "late.txt", CTX)
    upload.feed(b"x" * SNIFF_BYTES)  # the row is `pending` before the reset starts
    hold = HoldsTheReset(hold_s=1.0)
    services.sessions.add_contents_handler(hold)
    with ThreadPoolExecutor(max_workers=1) as pool:
        resetting = pool.submit(services.sessions.reset, session.uuid, CTX)
        assert hold.inside.wait(timeout=30)
        with pytest.raises(SessionNotFound):
            upload.finish()  # while the reset's transaction is open
        result = resetting.result(timeout=30)
    assert result.erased_files == 0
    assert [row.status for row in file_rows(services.engine, session.id)] == [FILE_FAILED]
    assert session_keys(services.store, session.uuid) == []
    assert rejection_reasons(services, session.id) == ["session_ended"]

"""FileService on each database x each store: listing, download URLs, delete, purge on reset."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from chat_app.container import Services
from chat_app.errors import SessionNotFound
from chat_app.models import (
    FILE_DELETED,
    FILE_DELETING,
    FILE_FAILED,
    FILE_PENDING,
    FILE_STORED,
    SessionFile,
)
from chat_app.services.file_rules import SNIFF_BYTES
from chat_app.services.files import DOWNLOAD_URL_TTL_S, FileNotFound
from chat_app.services.sessions import SessionContents
from chat_app.services.uploads import begin_upload
from chat_app.storage.base import ObjectStore, StorageUnavailable
from chat_app.storage.local import LocalStore
from chat_app.storage.s3 import S3Store
from chat_app.storage.signing import InvalidSignature, UrlSigner
from tests.invariants import assert_stored_rows_have_objects
from tests.malformed_ids import MALFORMED_IDS
from tests.services.conftest import (
    CTX,
    FlakyStore,
    PausingStore,
    audit_rows,
    file_row,
    file_rows,
    new_session,
    read_object,
    session_keys,
    upload_bytes,
)
from tests.unit.test_file_rules import PDF, PNG

NOT_FOUND_DETAIL = FileNotFound().detail


def download(store: ObjectStore, url: str) -> tuple[bytes, str]:
    """Follow a download URL as a browser would: (body, Content-Disposition)."""
    if isinstance(store, S3Store):
        query = parse_qs(urlsplit(url).query)
        assert query["X-Amz-Expires"] == [str(DOWNLOAD_URL_TTL_S)]
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200, response.text
        return response.content, response.headers["content-disposition"]
    assert isinstance(store, LocalStore)
    assert url.startswith("/api/v1/blobs/")
    blob = UrlSigner(b"test-secret-key").verify(url.rsplit("/", 1)[1])
    return read_object(store, blob.key), blob.filename


# --- listing -------------------------------------------------------------------------------------


def test_list_shows_stored_files_only(file_services: Services) -> None:
    session = new_session(file_services)
    kept = upload_bytes(file_services, session.uuid, "kept.txt", b"kept\n")
    gone = upload_bytes(file_services, session.uuid, "gone.txt", b"gone\n")
    file_services.files.delete_file(session.uuid, gone.id, CTX)
    pending = begin_upload(file_services.files, session.uuid, "pending.txt", CTX)
    pending.feed(b"p" * SNIFF_BYTES)
    failed = begin_upload(file_services.files, session.uuid, "failed.txt", CTX)
    failed.feed(b"f" * SNIFF_BYTES)
    failed.abandon()
    statuses = sorted(row.status for row in file_rows(file_services.engine, session.id))
    assert statuses == sorted([FILE_STORED, FILE_DELETED, FILE_PENDING, FILE_FAILED])

    assert file_services.files.list_files(session.uuid, CTX) == [kept]
    other = new_session(file_services)
    assert file_services.files.list_files(other.uuid, CTX) == []


def test_list_refuses_an_ended_session(file_services: Services) -> None:
    session = new_session(file_services)
    upload_bytes(file_services, session.uuid, "a.txt", b"a\n")
    file_services.sessions.reset(session.uuid, CTX)
    with pytest.raises(SessionNotFound):
        file_services.files.list_files(session.uuid, CTX)


# --- download URLs -------------------------------------------------------------------------------


def test_download_url_serves_the_own_file_under_its_name(file_services: Services) -> None:
    session = new_session(file_services)
    view = upload_bytes(file_services, session.uuid, "Résumé 2024.PDF", PDF)
    url = file_services.files.download_url(session.uuid, view.id, CTX)
    body, disposition = download(file_services.store, url)
    assert body == PDF
    assert "Résumé 2024.pdf" in unquote(disposition)
    assert file_services.files.download_url(session.uuid, view.id.upper(), CTX)


def test_download_urls_are_minted_at_read_time_for_300_seconds(file_services: Services) -> None:
    session = new_session(file_services)
    view = upload_bytes(file_services, session.uuid, "a.png", PNG)
    assert not any("url" in name for name in SessionFile.model_fields)  # never stored
    minted = time.time()
    url = file_services.files.download_url(session.uuid, view.id, CTX)
    store = file_services.store
    if isinstance(store, S3Store):
        query = parse_qs(urlsplit(url).query)
        signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
        assert abs(signed_at.replace(tzinfo=UTC).timestamp() - minted) < 60
        assert query["X-Amz-Expires"] == [str(DOWNLOAD_URL_TTL_S)]
        return
    token = url.rsplit("/", 1)[1]
    UrlSigner(b"test-secret-key", clock=lambda: minted + DOWNLOAD_URL_TTL_S - 5).verify(token)
    with pytest.raises(InvalidSignature):
        UrlSigner(b"test-secret-key", clock=lambda: minted + DOWNLOAD_URL_TTL_S + 5).verify(token)


def malformed_file_ids() -> list[str]:
    return [*MALFORMED_IDS[:12], "", "../../etc/passwd", "sessions/x/y", "%00"]


def test_download_url_refuses_another_sessions_file(file_services: Services) -> None:
    owner, intruder = new_session(file_services), new_session(file_services)
    view = upload_bytes(file_services, owner.uuid, "private.txt", b"private\n")
    with pytest.raises(FileNotFound) as caught:
        file_services.files.download_url(intruder.uuid, view.id, CTX)
    assert caught.value.detail == NOT_FOUND_DETAIL
    assert caught.value.status == 404


@pytest.mark.parametrize("file_id", malformed_file_ids())
def test_download_url_refuses_malformed_ids(file_services: Services, file_id: str) -> None:
    session = new_session(file_services)
    upload_bytes(file_services, session.uuid, "a.txt", b"a\n")
    with pytest.raises(FileNotFound) as caught:
        file_services.files.download_url(session.uuid, file_id, CTX)
    assert caught.value.detail == NOT_FOUND_DETAIL
    assert file_id not in caught.value.detail or not file_id


def test_download_url_refuses_unknown_deleted_pending_and_failed_files(
    file_services: Services,
) -> None:
    session = new_session(file_services)
    deleted = upload_bytes(file_services, session.uuid, "deleted.txt", b"d\n")
    file_services.files.delete_file(session.uuid, deleted.id, CTX)
    pending = begin_upload(file_services.files, session.uuid, "pending.txt", CTX)
    pending.feed(b"p" * SNIFF_BYTES)
    failed = begin_upload(file_services.files, session.uuid, "failed.txt", CTX)
    failed.feed(b"f" * SNIFF_BYTES)
    failed.abandon()
    rows = {row.filename: row.id for row in file_rows(file_services.engine, session.id)}
    unknown = "0b7e4a4c-2f1e-4d7a-9c3b-5e6f7a8b9c0d"
    for file_id in [unknown, deleted.id, rows["pending.txt"], rows["failed.txt"]]:
        with pytest.raises(FileNotFound):
            file_services.files.download_url(session.uuid, file_id, CTX)


def test_download_url_refuses_an_ended_session(file_services: Services) -> None:
    session = new_session(file_services)
    view = upload_bytes(file_services, session.uuid, "a.txt", b"a\n")
    file_services.sessions.expire(session.uuid, CTX, reason="idle")
    with pytest.raises(SessionNotFound):
        file_services.files.download_url(session.uuid, view.id, CTX)


# --- delete --------------------------------------------------------------------------------------


def test_delete_removes_the_object_and_marks_the_row(file_services: Services) -> None:
    session = new_session(file_services)
    keep = upload_bytes(file_services, session.uuid, "keep.txt", b"keep\n")
    drop = upload_bytes(file_services, session.uuid, "drop.txt", b"drop!\n")
    drop_key = file_row(file_services.engine, drop.id).object_key

    file_services.files.delete_file(session.uuid, drop.id, CTX)
    row = file_row(file_services.engine, drop.id)
    assert row.status == FILE_DELETED and row.deleted_at is not None
    assert not file_services.store.exists(drop_key)
    assert session_keys(file_services.store, session.uuid) == [
        file_row(file_services.engine, keep.id).object_key]
    assert file_services.files.list_files(session.uuid, CTX) == [keep]
    [audit] = audit_rows(file_services.engine, session_id=session.id, event="file.deleted")
    assert audit.details == {"bytes": len(b"drop!\n")}


def test_deleting_twice_is_harmless(file_services: Services) -> None:
    session = new_session(file_services)
    view = upload_bytes(file_services, session.uuid, "a.txt", b"a\n")
    file_services.files.delete_file(session.uuid, view.id, CTX)
    file_services.files.delete_file(session.uuid, view.id, CTX)
    assert file_row(file_services.engine, view.id).status == FILE_DELETED
    assert len(audit_rows(file_services.engine, session_id=session.id, event="file.deleted")) == 1
    with pytest.raises(FileNotFound):
        file_services.files.download_url(session.uuid, view.id, CTX)


def times_counted_deleted(services: Services, session_id: int) -> int:
    """How many deletions the audit log records for a session's files."""
    deleted = audit_rows(services.engine, session_id=session_id, event="file.deleted")
    purged = audit_rows(services.engine, session_id=session_id, event="files.purged")
    return len(deleted) + sum(row.details["files"] for row in purged)


def test_a_delete_overtaken_by_another_tab_is_audited_once(
    make_file_services, store: ObjectStore
) -> None:
    # Found by the model check: both deletes wrote `file.deleted` for one deletion.
    paused = PausingStore(store)
    services = make_file_services(store_override=paused)
    session = new_session(services)
    view = upload_bytes(services, session.uuid, "a.txt", b"a\n")
    paused.pause_next_delete()
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(services.files.delete_file, session.uuid, view.id, CTX)
        assert paused.paused.wait(timeout=30)  # its row is `deleting`, the object still there
        services.files.delete_file(session.uuid, view.id, CTX)  # the other tab finishes first
        paused.release()
        assert first.result(timeout=30) is None
    assert file_row(services.engine, view.id).status == FILE_DELETED
    assert len(audit_rows(services.engine, session_id=session.id, event="file.deleted")) == 1


def test_a_delete_overtaken_by_a_reset_is_counted_once(
    make_file_services, store: ObjectStore
) -> None:
    # Found by the model check: the reset's purge counted the file the delete audited too.
    paused = PausingStore(store)
    services = make_file_services(store_override=paused)
    session = new_session(services)
    doomed = upload_bytes(services, session.uuid, "a.txt", b"a\n")
    upload_bytes(services, session.uuid, "b.txt", b"b\n")
    paused.pause_next_delete()
    with ThreadPoolExecutor(max_workers=1) as pool:
        deleting = pool.submit(services.files.delete_file, session.uuid, doomed.id, CTX)
        assert paused.paused.wait(timeout=30)
        result = services.sessions.reset(session.uuid, CTX)  # its purge takes both rows
        paused.release()
        assert deleting.result(timeout=30) is None
    assert result.erased_files == 1  # the file being deleted was already hidden
    assert {row.status for row in file_rows(services.engine, session.id)} == {FILE_DELETED}
    assert times_counted_deleted(services, session.id) == 2


def test_delete_refuses_another_sessions_file_and_leaves_it(file_services: Services) -> None:
    owner, intruder = new_session(file_services), new_session(file_services)
    view = upload_bytes(file_services, owner.uuid, "private.txt", b"private\n")
    with pytest.raises(FileNotFound):
        file_services.files.delete_file(intruder.uuid, view.id, CTX)
    for file_id in ["not-a-uuid", "0b7e4a4c-2f1e-4d7a-9c3b-5e6f7a8b9c0d"]:
        with pytest.raises(FileNotFound):
            file_services.files.delete_file(owner.uuid, file_id, CTX)
    assert file_row(file_services.engine, view.id).status == FILE_STORED
    assert read_object(file_services.store,
                       file_row(file_services.engine, view.id).object_key) == b"private\n"


def test_a_delete_the_store_fails_hides_the_file_and_a_retry_finishes_it(
    make_file_services, store: ObjectStore
) -> None:
    flaky = FlakyStore(store)
    services = make_file_services(store_override=flaky)
    session = new_session(services)
    view = upload_bytes(services, session.uuid, "a.txt", b"a\n")
    key = file_row(services.engine, view.id).object_key

    flaky.break_deletes()
    with pytest.raises(StorageUnavailable):
        services.files.delete_file(session.uuid, view.id, CTX)
    assert file_row(services.engine, view.id).status == FILE_DELETING
    assert services.files.list_files(session.uuid, CTX) == []  # hidden at once
    assert store.exists(key)

    flaky.break_deletes(False)
    flaky.fail_next_delete(lambda keys: keys)  # reported failed: still `deleting`
    services.files.delete_file(session.uuid, view.id, CTX)
    assert file_row(services.engine, view.id).status == FILE_DELETING
    assert store.exists(key)

    services.files.delete_file(session.uuid, view.id, CTX)
    assert file_row(services.engine, view.id).status == FILE_DELETED
    assert not store.exists(key)


# --- reset purges the old session's files ---------------------------------------------------------


def test_reset_counts_and_erases_the_files(file_services: Services) -> None:
    services = file_services
    session = new_session(services)
    sizes = [1, 5000, SNIFF_BYTES + 3]
    views = [upload_bytes(services, session.uuid, f"f{i}.txt", b"x" * size)
             for i, size in enumerate(sizes)]
    deleted = upload_bytes(services, session.uuid, "deleted.txt", b"not counted\n")
    services.files.delete_file(session.uuid, deleted.id, CTX)
    failed = begin_upload(services.files, session.uuid, "failed.txt", CTX)
    failed.feed(b"f" * SNIFF_BYTES)
    failed.abandon()
    keys = [file_row(services.engine, view.id).object_key for view in views]
    assert sorted(session_keys(services.store, session.uuid)) == sorted(keys)

    # What the reset modal shows.
    assert services.sessions.contents(session.uuid, CTX) == SessionContents(
        messages=0, files=3, bytes=sum(sizes))

    result = services.sessions.reset(session.uuid, CTX)
    assert (result.erased_files, result.erased_bytes) == (3, sum(sizes))
    assert session_keys(services.store, session.uuid) == []
    for view in views:
        row = file_row(services.engine, view.id)
        assert row.status == FILE_DELETED and row.deleted_at is not None
    [purged] = audit_rows(services.engine, session_id=session.id, event="files.purged")
    assert purged.details == {"files": 3, "bytes": sum(sizes), "failed": 0}
    [reset] = audit_rows(services.engine, session_id=session.id, event="session.reset")
    assert (reset.details["files"], reset.details["bytes"]) == (3, sum(sizes))

    # The successor starts empty and can upload; the old id cannot.
    assert services.files.list_files(result.session.uuid, CTX) == []
    assert services.sessions.contents(result.session.uuid, CTX) == SessionContents()
    upload_bytes(services, result.session.uuid, "new.txt", b"new\n")
    with pytest.raises(SessionNotFound):
        services.files.list_files(session.uuid, CTX)
    assert_stored_rows_have_objects(
        services.engine, services.store, session_uuids=[session.uuid, result.session.uuid])


def test_reset_without_files_erases_nothing(file_services: Services) -> None:
    session = new_session(file_services)
    assert file_services.sessions.contents(session.uuid, CTX) == SessionContents()
    result = file_services.sessions.reset(session.uuid, CTX)
    assert (result.erased_files, result.erased_bytes) == (0, 0)


def test_reset_leaves_other_sessions_files_alone(file_services: Services) -> None:
    first, second = new_session(file_services), new_session(file_services)
    upload_bytes(file_services, first.uuid, "a.txt", b"a\n")
    other = upload_bytes(file_services, second.uuid, "b.txt", b"b\n")
    file_services.sessions.reset(first.uuid, CTX)
    assert file_services.files.list_files(second.uuid, CTX) == [other]
    assert session_keys(file_services.store, second.uuid) == [
        file_row(file_services.engine, other.id).object_key]


def test_a_purge_the_store_refuses_still_resets(make_file_services, store: ObjectStore) -> None:
    flaky = FlakyStore(store)
    services = make_file_services(store_override=flaky)
    session = new_session(services)
    view = upload_bytes(services, session.uuid, "a.txt", b"a\n")
    flaky.break_deletes()
    result = services.sessions.reset(session.uuid, CTX)  # SPEC 4 step 3: left for the sweep
    assert result.erased_files == 1
    assert file_row(services.engine, view.id).status == FILE_DELETING
    assert len(session_keys(store, session.uuid)) == 1

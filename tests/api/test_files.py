"""/session/files over HTTP, on the LocalStore and on a real S3 store (SeaweedFS)."""

from __future__ import annotations

import hashlib
import unicodedata
import uuid
from dataclasses import dataclass

import pytest

from chat_app.models import FILE_DELETED, FILE_FAILED, FILE_PENDING, FILE_STORED
from tests.api.support import HIGH_LIMITS, Api, assert_no_echo, assert_problem

FILE_KEYS = {"id", "filename", "content_type", "size_bytes", "created_at"}
LIMIT_MB = 0.01
MAX_BYTES = int(LIMIT_MB * 2**20)  # 10485
MULTIPART_OVERHEAD = 64 * 1024
LIVE = (FILE_PENDING, FILE_STORED, FILE_FAILED)

TEXT = b"plain text, nothing to see\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01" + bytes(64)
HTML = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>"
EXE = b"MZ\x90\x00\x03\x00\x00\x00" + bytes(64)


@pytest.fixture
def files_api(make_api, store) -> Api:
    """An app on the parametrized store, a 0.01 MiB size limit and two files per session."""
    return make_api(
        store=store,
        CHAT_APP_MAX_UPLOAD_MB=str(LIMIT_MB),
        CHAT_APP_MAX_FILES_PER_SESSION="2",
    )


def upload_ok(api: Api, session_id: str, filename: str, content: bytes) -> dict:
    response = api.upload(session_id, filename, content)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == FILE_KEYS
    return body


def download(api: Api, session_id: str, file_id: str):
    return api.get(f"/session/files/{file_id}", session_id, follow_redirects=False)


def live_rows(api: Api, session_id: str):
    return [row for row in api.file_rows(session_id) if row.status in LIVE]


def assert_nothing_left(api: Api, session_id: str) -> None:
    """No pending/stored/failed row for the session, and no object under its prefix."""
    assert live_rows(api, session_id) == []
    assert api.object_keys(session_id) == []


def assert_stored(api: Api, session_id: str, file: dict, content: bytes) -> None:
    """One stored row keyed sessions/<sid>/<file id>, its object, and the same bytes back."""
    [row] = [row for row in live_rows(api, session_id) if row.id == file["id"]]
    assert row.status == FILE_STORED
    assert row.object_key == f"sessions/{session_id}/{file['id']}"
    assert row.sha256 == hashlib.sha256(content).hexdigest()
    assert row.object_key in api.object_keys(session_id)
    fetched = api.follow(download(api, session_id, file["id"]))
    assert fetched.status_code == 200
    assert fetched.content == content


# --- the whole life of a file ----------------------------------------------------------------


def test_upload_list_download_delete(files_api):
    api = files_api
    session_id = api.new_session()
    content = "naïve notes\n".encode() * 50

    file = upload_ok(api, session_id, "Résumé notes.txt", content)

    assert file["filename"] == "Résumé notes.txt"
    assert (file["content_type"], file["size_bytes"]) == ("text/plain", len(content))
    assert uuid.UUID(file["id"]).version == 4
    listed = api.get("/session/files", session_id)
    assert listed.status_code == 200
    assert listed.json() == {"items": [file]}

    redirect = download(api, session_id, file["id"])
    assert redirect.status_code == 302
    assert redirect.headers["cache-control"] == "no-store"
    fetched = api.follow(redirect)
    assert fetched.status_code == 200
    assert fetched.content == content
    disposition = fetched.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''R%C3%A9sum%C3%A9%20notes.txt" in disposition
    assert_stored(api, session_id, file, content)

    deleted = api.delete(f"/session/files/{file['id']}", session_id)
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert api.get("/session/files", session_id).json() == {"items": []}
    assert_problem(download(api, session_id, file["id"]), 404, "file-not-found")
    assert api.follow(redirect).status_code == 404  # the minted URL died with the object
    again = api.delete(f"/session/files/{file['id']}", session_id)
    assert again.status_code == 204
    [row] = api.file_rows(session_id)
    assert row.status == FILE_DELETED and row.deleted_at is not None
    assert api.object_keys(session_id) == []


def test_uploads_deletes_and_rejections_are_audited(files_api):
    api = files_api
    session_id = api.new_session()
    created = api.upload(session_id, "a.txt", TEXT)
    deleted = api.delete(f"/session/files/{created.json()['id']}", session_id)
    rejected = api.upload(session_id, "a.exe", EXE)

    def events(response):
        rows = api.audit_rows(request_id=response.headers["x-request-id"])
        return [(row.event, row.details) for row in rows]

    assert events(created) == [
        ("file.upload_started", {}),
        ("file.uploaded", {"bytes": len(TEXT), "content_type": "text/plain"}),
    ]
    assert events(deleted) == [("file.deleted", {"bytes": len(TEXT)})]
    assert events(rejected) == [("file.rejected", {"reason": "unsupported-file-type"})]


def test_other_sessions_files_are_404(files_api):
    api = files_api
    owner, other = api.new_session(), api.new_session()
    theirs = upload_ok(api, owner, "secret.txt", b"owner's words\n")
    mine = upload_ok(api, other, "mine.txt", b"mine\n")

    assert api.get("/session/files", other).json() == {"items": [mine]}
    unknown = assert_problem(download(api, other, str(uuid.uuid4())), 404, "file-not-found")
    for response in (
        download(api, other, theirs["id"]),
        api.delete(f"/session/files/{theirs['id']}", other),
    ):
        body = assert_problem(response, 404, "file-not-found")
        assert body["detail"] == unknown["detail"]  # indistinguishable from a missing file
        assert_no_echo(response, theirs["id"])

    assert_stored(api, owner, theirs, b"owner's words\n")


@pytest.mark.parametrize(
    "file_id",
    ["not-a-uuid", f"{{{uuid.uuid4()}}}", str(uuid.uuid1()), "0" * 36, "x" * 2000, " "],
    ids=["word", "braces", "uuid1", "zeros", "overlong", "space"],
)
def test_malformed_file_id_is_404(api, file_id):
    session_id = api.new_session()

    for response in (
        download(api, session_id, file_id),
        api.delete(f"/session/files/{file_id}", session_id),
    ):
        assert_problem(response, 404, "file-not-found")
        assert_no_echo(response, file_id.strip() or "%20")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/session/files"), ("POST", "/session/files"),
     ("GET", f"/session/files/{uuid.uuid4()}"), ("DELETE", f"/session/files/{uuid.uuid4()}")],
)
def test_session_errors(api, method, path):
    files = {"file": ("a.txt", TEXT)} if method == "POST" else None

    def send(session_id):
        headers = {"X-Session-Id": session_id} if session_id else {}
        return api.client.request(method, f"/api/v1{path}", headers=headers, files=files)

    assert_problem(send(None), 400, "missing-session-id")
    assert_problem(send("not-a-session"), 400, "malformed-session-id")
    unknown = str(uuid.uuid4())
    assert_problem(send(unknown), 404, "session-not-found")
    assert api.object_keys(unknown) == []


def test_ended_session_cannot_use_its_files(api):
    session_id = api.new_session()
    file = upload_ok(api, session_id, "a.txt", TEXT)
    assert api.post("/session/reset", session_id).status_code == 201

    assert_problem(api.get("/session/files", session_id), 404, "session-not-found")
    assert_problem(download(api, session_id, file["id"]), 404, "session-not-found")
    assert_problem(api.upload(session_id, "b.txt", TEXT), 404, "session-not-found")
    assert api.object_keys(session_id) == []  # purged by the reset


# --- hostile and broken uploads --------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    filename: str
    content: bytes
    status: int
    display: str | None = None  # the stored display name (201 only)
    slug: str | None = None  # the problem type (errors only)


UNSUPPORTED = "unsupported-file-type"
CASES = {
    "dot-dot-slash": Case("../../etc/passwd.txt", TEXT, 201, "passwd.txt"),
    "dot-dot-backslash": Case("..\\..\\x.txt", TEXT, 201, "x.txt"),
    "fullwidth-dots-slash": Case("\uff0e\uff0e\uff0fx.txt", TEXT, 201, "x.txt"),
    "windows-path": Case("C:\\Users\\me\\x.txt", TEXT, 201, "x.txt"),
    "htaccess": Case(".htaccess", TEXT, 415, slug=UNSUPPORTED),
    "leading-dash": Case("-rf.txt", TEXT, 201, "rf.txt"),
    "php-behind-jpg": Case("a.jpg.php", JPEG, 415, slug=UNSUPPORTED),
    "percent-00-jpeg": Case("a.php%00.jpg", JPEG, 201, "a.php%00.jpg"),
    "upper-case-extension": Case("A.TXT", TEXT, 201, "A.txt"),
    "exe": Case("x.exe", EXE, 415, slug=UNSUPPORTED),
    "no-extension": Case("README", TEXT, 415, slug=UNSUPPORTED),
    "html-as-png": Case("image.png", HTML, 415, slug=UNSUPPORTED),
    "text-as-pdf": Case("paper.pdf", b"not a pdf at all\n", 415, slug=UNSUPPORTED),
    "png-as-jpg": Case("photo.JPG", PNG, 415, slug=UNSUPPORTED),
    "png-as-txt": Case("notes.txt", PNG, 415, slug=UNSUPPORTED),
    "latin-1-as-txt": Case("notes.txt", b"caf\xe9 cr\xe8me\n", 415, slug=UNSUPPORTED),
    "real-png": Case("pic.png", PNG, 201, "pic.png"),
    "empty": Case("empty.txt", b"", 422, slug="empty-file"),
    "exactly-the-limit": Case("big.txt", b"a" * MAX_BYTES, 201, "big.txt"),
    "one-byte-over": Case("big.txt", b"a" * (MAX_BYTES + 1), 413, slug="file-too-large"),
    "300-char-name": Case("n" * 296 + ".txt", TEXT, 201, "n" * 116 + ".txt"),
    "300-byte-name": Case("é" * 148 + ".md", TEXT, 201, "é" * 117 + ".md"),
    "bidi-override": Case("report\u202egnp.txt", TEXT, 201, "reportgnp.txt"),
    "zero-width": Case("in\u200bvoice.txt", TEXT, 201, "invoice.txt"),
    "trailing-dots": Case("notes.txt. . ", TEXT, 201, "notes.txt"),
    "only-dots": Case("../..", TEXT, 422, slug="bad-filename"),
    "empty-name": Case("", TEXT, 422, slug="invalid-request"),  # a field, not a file
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_upload_table(files_api, case):
    api = files_api
    session_id = api.new_session()

    response = api.upload(session_id, case.filename, case.content)

    if case.status != 201:
        assert_problem(response, case.status, case.slug)
        assert_nothing_left(api, session_id)
        return
    assert response.status_code == 201, response.text
    file = response.json()
    assert file["filename"] == case.display
    assert len(file["filename"]) <= 120
    assert file["size_bytes"] == len(case.content)
    assert_stored(api, session_id, file, case.content)
    assert api.object_keys(session_id) == [f"sessions/{session_id}/{file['id']}"]


def raw_multipart(filename: bytes, content: bytes, boundary: str = "b0undary") -> dict:
    """A hand-built body, for file names no client library would send as they are."""
    body = (
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
        + b"Content-Type: application/octet-stream\r\n\r\n" + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    content_type = f"multipart/form-data; boundary={boundary}"
    return {"content": body, "headers": {"content-type": content_type}}


@pytest.mark.parametrize(
    ("raw_name", "status", "display"),
    [(b"line\nfeed.txt", 201, "linefeed.txt"), (b"tab\tand\x0bvt.txt", 201, "tabandvt.txt"),
     (b"carriage\r\nreturn.txt", 400, None)],
    ids=["lf", "tab-vt", "crlf-breaks-the-header"],
)
def test_control_characters_in_the_name(files_api, raw_name, status, display):
    api = files_api
    session_id = api.new_session()

    response = api.post("/session/files", session_id, **raw_multipart(raw_name, TEXT))

    if status != 201:
        assert_problem(response, status)
        assert_nothing_left(api, session_id)
        return
    assert response.status_code == 201, response.text
    assert response.json()["filename"] == display


def test_nfc_and_nfd_names_are_two_files_with_one_display_name(files_api):
    api = files_api
    session_id = api.new_session()
    nfc = unicodedata.normalize("NFC", "café.txt")
    nfd = unicodedata.normalize("NFD", "café.txt")
    assert nfc != nfd

    first = upload_ok(api, session_id, nfc, b"one\n")
    second = upload_ok(api, session_id, nfd, b"two\n")

    assert first["filename"] == second["filename"] == nfc
    assert first["id"] != second["id"]
    assert len(set(api.object_keys(session_id))) == 2
    assert_stored(api, session_id, first, b"one\n")
    assert_stored(api, session_id, second, b"two\n")


def test_duplicate_names_are_both_kept(files_api):
    api = files_api
    session_id = api.new_session()

    first = upload_ok(api, session_id, "notes.txt", b"first\n")
    second = upload_ok(api, session_id, "notes.txt", b"second\n")

    assert first["id"] != second["id"]
    assert [f["filename"] for f in api.get("/session/files", session_id).json()["items"]] == [
        "notes.txt", "notes.txt"
    ]
    assert_stored(api, session_id, first, b"first\n")
    assert_stored(api, session_id, second, b"second\n")


def test_one_file_too_many_is_409(files_api):
    api = files_api
    session_id = api.new_session()
    kept = [upload_ok(api, session_id, f"{n}.txt", TEXT) for n in range(2)]
    keys = sorted(api.object_keys(session_id))

    response = api.upload(session_id, "third.txt", TEXT)

    assert_problem(response, 409, "too-many-files")
    assert sorted(row.id for row in live_rows(api, session_id)) == sorted(f["id"] for f in kept)
    assert sorted(api.object_keys(session_id)) == keys
    # Deleting one makes room again.
    assert api.delete(f"/session/files/{kept[0]['id']}", session_id).status_code == 204
    upload_ok(api, session_id, "third.txt", TEXT)


def test_missing_file_field_is_422(files_api):
    api = files_api
    session_id = api.new_session()

    for kwargs in ({"data": {"other": "x"}}, {"files": {"other": ("a.txt", TEXT)}},
                   {"data": {"file": "not a file"}}, {"json": {"file": "x"}}, {}):
        response = api.post("/session/files", session_id, **kwargs)
        body = assert_problem(response, 422, "invalid-request")
        assert "body.file" in body["detail"]
    assert_nothing_left(api, session_id)


def test_two_files_in_one_request_is_422(files_api):
    api = files_api
    session_id = api.new_session()

    for files in ([("file", ("a.txt", TEXT)), ("file", ("b.txt", TEXT))],
                  [("file", ("a.txt", TEXT)), ("extra", ("b.txt", TEXT))]):
        response = api.post("/session/files", session_id, files=files)
        assert_problem(response, 422, "one-file-per-request")
    assert_nothing_left(api, session_id)


def test_declared_oversize_body_is_refused_before_it_is_read(files_api):
    api = files_api
    session_id = api.new_session()

    response = api.post(
        "/session/files", session_id, files={"file": ("a.txt", TEXT)},
        headers={"content-length": str(MAX_BYTES + MULTIPART_OVERHEAD + 1)},
    )

    body = assert_problem(response, 413, "file-too-large")
    assert body["detail"].startswith("The request is larger than")
    # Refused before the session was even looked at: no audit row for this request.
    assert api.audit_rows(request_id=response.headers["x-request-id"]) == []
    assert_nothing_left(api, session_id)


def test_undeclared_oversize_body_is_cut_off(files_api):
    api = files_api
    session_id = api.new_session()
    body = raw_multipart(b"big.txt", b"a" * (MAX_BYTES + MULTIPART_OVERHEAD + 1))

    def chunks():  # no Content-Length: sent with chunked transfer encoding
        content = body["content"]
        for start in range(0, len(content), 4096):
            yield content[start:start + 4096]

    response = api.post("/session/files", session_id, content=chunks(), headers=body["headers"])

    problem = assert_problem(response, 413, "file-too-large")
    assert problem["detail"].startswith("The request is larger than")  # cut off while read
    assert_nothing_left(api, session_id)


def test_upload_rate_limit_is_per_session(make_api):
    api = make_api(CHAT_APP_RATE_LIMITS=HIGH_LIMITS.replace("upload=10000", "upload=2"))
    session_id, other = api.new_session(), api.new_session()
    file = upload_ok(api, session_id, "a.txt", TEXT)
    assert api.delete(f"/session/files/{file['id']}", session_id).status_code == 204

    refused = api.upload(session_id, "b.txt", TEXT)

    assert_problem(refused, 429, "rate-limited")
    assert refused.headers["retry-after"]
    assert api.upload(other, "b.txt", TEXT).status_code == 201
    assert api.get("/session/files", session_id).status_code == 200  # reads are counted apart

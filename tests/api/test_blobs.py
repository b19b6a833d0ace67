"""GET /blobs/{token}: the LocalStore's signed download route, a capability URL."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest

from chat_app.storage.signing import UrlSigner, content_disposition
from tests.api.support import Api, assert_no_echo, assert_problem

CONTENT = b"%PDF-1.7\n" + b"0123456789" * 300
FILENAME = "Q3 “final” report.pdf"
PREFIX = "/api/v1/blobs/"


def mint(api: Api) -> tuple[str, str]:
    """Upload a file through the API; returns its download path and its object key."""
    session_id = api.new_session()
    created = api.upload(session_id, FILENAME, CONTENT)
    assert created.status_code == 201, created.text
    file_id = created.json()["id"]
    redirect = api.get(f"/session/files/{file_id}", session_id, follow_redirects=False)
    assert redirect.status_code == 302
    location = redirect.headers["location"]
    assert location.startswith(PREFIX)
    return location, f"sessions/{session_id}/{file_id}"


def token_of(location: str) -> str:
    return location.removeprefix(PREFIX)


def test_valid_token_downloads_without_the_session_header(api):
    location, _key = mint(api)

    response = api.client.get(location)  # no X-Session-Id: the link itself is the capability

    assert response.status_code == 200
    assert response.content == CONTENT
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-disposition"] == content_disposition(FILENAME)
    assert "filename*=UTF-8''Q3%20%E2%80%9Cfinal%E2%80%9D%20report.pdf" in (
        response.headers["content-disposition"]
    )


def test_token_is_refused_once_the_file_is_deleted(api):
    session_id = api.new_session()
    file_id = api.upload(session_id, "a.txt", b"gone soon\n").json()["id"]
    location = api.get(
        f"/session/files/{file_id}", session_id, follow_redirects=False
    ).headers["location"]
    assert api.delete(f"/session/files/{file_id}", session_id).status_code == 204

    assert_problem(api.client.get(location), 404, "object-not-found")


def _flip(text: str, index: int) -> str:
    char = text[index]
    return text[:index] + ("B" if char != "B" else "C") + text[index + 1:]


TAMPERINGS = {
    "payload-char": lambda t: _flip(t, 5),
    "signature-char": lambda t: _flip(t, len(t) - 3),
    "no-signature": lambda t: t.partition(".")[0],
    "empty-signature": lambda t: t.partition(".")[0] + ".",
    "appended": lambda t: t + "A",
    "truncated": lambda t: t[:-1],
    "doubled": lambda t: t + "." + t,
}


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_tampered_token_is_404_without_echo(api, tamper):
    location, _key = mint(api)
    token = tamper(token_of(location))

    response = api.client.get(PREFIX + token)

    assert_problem(response, 404, "invalid-download-link")
    assert_no_echo(response, token)


def test_swapped_filename_is_refused(api):
    location, _key = mint(api)
    payload, _, signature = token_of(location).partition(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["n"] = "evil.html"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()

    response = api.client.get(f"{PREFIX}{forged}.{signature}")

    assert_problem(response, 404, "invalid-download-link")


def test_expired_token_is_404(api):
    _location, key = mint(api)
    an_hour_ago = UrlSigner(api.services.settings.secret_key, clock=lambda: time.time() - 3600)
    token = an_hour_ago.sign(key, FILENAME, 300)  # expired 55 minutes ago

    response = api.client.get(PREFIX + token)

    assert_problem(response, 404, "invalid-download-link")
    assert_no_echo(response, token)


def test_token_expires_on_the_second(api):
    _location, key = mint(api)
    just_now = UrlSigner(api.services.settings.secret_key, clock=lambda: time.time() - 2)

    assert_problem(api.client.get(PREFIX + just_now.sign(key, FILENAME, 1)), 404)
    assert api.client.get(PREFIX + just_now.sign(key, FILENAME, 60)).status_code == 200


def test_token_of_another_secret_is_404(api):
    _location, key = mint(api)
    token = UrlSigner(b"some other secret").sign(key, FILENAME, 300)

    assert_problem(api.client.get(PREFIX + token), 404, "invalid-download-link")


def test_signed_token_for_a_missing_object_is_404(api):
    key = f"sessions/{uuid.uuid4()}/{uuid.uuid4()}"
    token = api.services.signer.sign(key, "a.txt", 300)

    assert_problem(api.client.get(PREFIX + token), 404, "object-not-found")


GARBAGE = {
    "word": "garbage-token",
    "dotted": "abc.def",
    "json-no-mac": base64.urlsafe_b64encode(b'{"k":"sessions/a/b","n":"x","e":9999999999}')
    .decode().rstrip("="),
    "bad-base64": "!!!!****.####",
    "non-ascii": "t\u00f6ken.s\u00efgnature",
    "overlong": "A" * 5000 + "." + "B" * 50,
    "percent-encoded-nul": "abc%00.def",
}


@pytest.mark.parametrize("token", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_token_is_404_without_echo(api, token):
    response = api.client.get(PREFIX + token)

    assert_problem(response, 404, "invalid-download-link")
    assert_no_echo(response, token)
    assert len(response.content) < 1000

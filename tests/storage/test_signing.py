"""UrlSigner tokens and RFC 6266 Content-Disposition values."""

from __future__ import annotations

import base64
import json
from urllib.parse import unquote

import pytest

from chat_app.storage.signing import (
    MAX_TOKEN_LENGTH,
    InvalidSignature,
    SignedBlob,
    UrlSigner,
    content_disposition,
)

KEY = "sessions/0b1c/2d3e"


class Clock:
    """A settable time source."""

    def __init__(self, now: float = 1_700_000_000) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signer(clock: Clock) -> UrlSigner:
    return UrlSigner(b"secret-one", clock=clock)


def test_round_trip(signer: UrlSigner) -> None:
    token = signer.sign(KEY, 'Ré "sumé".pdf', 300)
    assert signer.verify(token) == SignedBlob(key=KEY, filename='Ré "sumé".pdf')


def test_token_is_url_safe(signer: UrlSigner) -> None:
    token = signer.sign(KEY, "報告 / ../..\r\n.pdf", 300)
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert set(token) <= alphabet


def test_expired_token_is_invalid(signer: UrlSigner, clock: Clock) -> None:
    token = signer.sign(KEY, "f.txt", 300)
    clock.now += 299
    assert signer.verify(token).key == KEY
    clock.now += 1
    with pytest.raises(InvalidSignature):
        signer.verify(token)


def test_other_secret_is_invalid(signer: UrlSigner, clock: Clock) -> None:
    token = UrlSigner(b"secret-two", clock=clock).sign(KEY, "f.txt", 300)
    with pytest.raises(InvalidSignature):
        signer.verify(token)


def test_tampered_payload_is_invalid(signer: UrlSigner) -> None:
    payload, signature = signer.sign(KEY, "f.txt", 300).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["k"] = "sessions/other/file"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidSignature):
        signer.verify(f"{forged}.{signature}")


@pytest.mark.parametrize(
    "token",
    ["", ".", "abc", "abc.", ".abc", "a.b.c", "!!!.???", "x" * (MAX_TOKEN_LENGTH + 1), "é.é"],
)
def test_garbage_is_invalid(signer: UrlSigner, token: str) -> None:
    with pytest.raises(InvalidSignature):
        signer.verify(token)


def test_validly_signed_garbage_is_invalid(signer: UrlSigner) -> None:
    """A MAC over something that is not our claims object still fails closed."""
    for body in (b"[1, 2]", b"not json", b'{"k": 1, "n": "f", "e": 9999999999}'):
        payload = base64.urlsafe_b64encode(body).rstrip(b"=").decode()
        mac = base64.urlsafe_b64encode(signer._mac(payload)).rstrip(b"=").decode()
        with pytest.raises(InvalidSignature):
            signer.verify(f"{payload}.{mac}")


def test_error_is_a_404_that_never_echoes_the_token(signer: UrlSigner) -> None:
    token = signer.sign(KEY, "f.txt", 300)[:-2] + "AA"
    with pytest.raises(InvalidSignature) as caught:
        signer.verify(token)
    assert caught.value.status == 404
    assert token not in str(caught.value) and token not in caught.value.detail


def test_sign_rejects_bad_arguments(signer: UrlSigner) -> None:
    with pytest.raises(ValueError):
        signer.sign(KEY, "f.txt", 0)
    with pytest.raises(ValueError):
        signer.sign(KEY, "x" * MAX_TOKEN_LENGTH, 300)
    with pytest.raises(ValueError):
        UrlSigner(b"")


@pytest.mark.parametrize(
    ("filename", "fallback"),
    [
        ("report.pdf", "report.pdf"),
        ("Résumé.pdf", "Resume.pdf"),
        ('a "quoted" name.txt', "a _quoted_ name.txt"),
        ("back\\slash.txt", "back_slash.txt"),
        ("100%.txt", "100_.txt"),
        ("報告.pdf", "__.pdf"),
        ("evil\r\nSet-Cookie: x.txt", "evilSet-Cookie: x.txt"),
        ("", "download"),
    ],
)
def test_content_disposition(filename: str, fallback: str) -> None:
    value = content_disposition(filename)
    assert value.startswith(f'attachment; filename="{fallback}"; filename*=UTF-8\'\'')
    assert "\r" not in value and "\n" not in value
    assert value.isascii()
    encoded = value.split("filename*=UTF-8''")[1]
    assert " " not in encoded and '"' not in encoded
    expected = filename.replace("\r", "").replace("\n", "") or "download"
    assert unquote(encoded) == expected

"""Signed, expiring download tokens for LocalStore, and RFC 6266 Content-Disposition values."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from chat_app.errors import NotFound

#: Longer tokens are rejected before any decoding work (they cannot come from `sign`).
MAX_TOKEN_LENGTH = 2048
# Bound into every MAC: a token minted for another purpose with the same secret never verifies.
_PURPOSE = b"chat_app.blob-url.v1:"


class InvalidSignature(NotFound):
    """A download link that is forged, altered, expired or garbled."""

    type_slug = "invalid-download-link"

    def __init__(self) -> None:
        # A 404 like a missing file, and never the token itself: it may be someone else's link.
        super().__init__("This download link is invalid or has expired.")


@dataclass(frozen=True)
class SignedBlob:
    """What a verified token grants: one key, served under one filename."""

    key: str
    filename: str


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    # validate=True semantics: reject anything outside the url-safe alphabet instead of skipping it.
    if not text or text.strip("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class UrlSigner:
    """Mints and checks HMAC-SHA256 tokens naming a key, a download filename and an expiry time."""

    def __init__(self, secret: bytes, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("the URL signing secret must not be empty")
        self._secret = secret
        self._clock = clock

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._secret, _PURPOSE + payload.encode("ascii"), hashlib.sha256).digest()

    def sign(self, key: str, filename: str, expires_s: int) -> str:
        """A url-safe token valid for `expires_s` seconds from now."""
        if expires_s <= 0:
            raise ValueError("expires_s must be positive")
        expires_at = int(self._clock()) + int(expires_s)
        body = json.dumps(
            {"k": key, "n": filename, "e": expires_at}, ensure_ascii=False, separators=(",", ":")
        )
        payload = _b64encode(body.encode("utf-8"))
        token = f"{payload}.{_b64encode(self._mac(payload))}"
        if len(token) > MAX_TOKEN_LENGTH:
            raise ValueError("key and filename are too long for a download token")
        return token

    def verify(self, token: str) -> SignedBlob:
        """The key and filename a valid, unexpired token names; else InvalidSignature."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidSignature()
        payload, dot, signature = token.partition(".")
        try:
            given = _b64decode(signature)
            # Check the MAC before parsing anything the sender controls.
            if not dot or not hmac.compare_digest(given, self._mac(payload)):
                raise InvalidSignature()
            claims = json.loads(_b64decode(payload).decode("utf-8"))
        except (ValueError, UnicodeError, binascii.Error):
            raise InvalidSignature() from None
        if not isinstance(claims, dict):
            raise InvalidSignature()
        key, filename, expires_at = (claims.get(name) for name in ("k", "n", "e"))
        if not (isinstance(key, str) and isinstance(filename, str) and type(expires_at) is int):
            raise InvalidSignature()
        if expires_at <= self._clock():
            raise InvalidSignature()
        return SignedBlob(key=key, filename=filename)


def _ascii_fallback(filename: str) -> str:
    # Decompose so "é" falls back to "e" rather than "_"; quotes, backslashes and "%" (which some
    # browsers decode in `filename`) are unsafe inside the quoted-string and become "_".
    decomposed = unicodedata.normalize("NFKD", filename)
    chars = []
    for char in decomposed:
        if unicodedata.combining(char):
            continue
        safe = " " <= char <= "~" and char not in '"\\%'
        chars.append(char if safe else "_")
    return "".join(chars).strip() or "download"


def content_disposition(filename: str) -> str:
    """An RFC 6266 `attachment` value: ASCII `filename` fallback plus exact UTF-8 `filename*`."""
    # Control characters (CR/LF above all) never belong in a header, encoded or not.
    cleaned = "".join(c for c in filename if unicodedata.category(c) != "Cc").strip() or "download"
    encoded = quote(cleaned, safe="")
    return f"attachment; filename=\"{_ascii_fallback(cleaned)}\"; filename*=UTF-8''{encoded}"

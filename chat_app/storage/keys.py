"""Object key rules shared by every store: ASCII path segments, never a user's filename."""

from __future__ import annotations

import re

# Segments start with a letter or digit: "", ".", ".." and hidden temp names are never keys.
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_KEY = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")
_PREFIX_TAIL = re.compile(r"[A-Za-z0-9._-]*")


def require_key(key: str) -> str:
    """Return `key` unchanged, or raise ValueError when it is not a valid object key."""
    # fullmatch, not match + "$": "$" would accept a trailing newline.
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(f"invalid object key: {key!r}")
    return key


def require_prefix(prefix: str) -> str:
    """Return `prefix` unchanged, or raise ValueError unless it is "" or a valid key's beginning."""
    if not isinstance(prefix, str):
        raise ValueError(f"invalid key prefix: {prefix!r}")
    head, _, tail = prefix.rpartition("/")
    if (head or prefix.startswith("/")) and not _KEY.fullmatch(head):
        raise ValueError(f"invalid key prefix: {prefix!r}")
    if not _PREFIX_TAIL.fullmatch(tail) or tail.startswith((".", "-", "_")):
        raise ValueError(f"invalid key prefix: {prefix!r}")
    return prefix

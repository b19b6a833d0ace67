"""Session ids the strict parser must refuse, all sendable as an HTTP header value.

Printable ASCII only, no leading or trailing whitespace (servers strip it), no control
characters (HTTP servers refuse them before the app sees the request), and each at least
eight characters long, so a test can assert that a response never echoes one. Non-ASCII
and control-character cases belong to the parser's unit tests.
"""

from __future__ import annotations

VALID_ID = "3f2b8c1e-9a4d-4c6b-8e2f-1a2b3c4d5e6f"


def _swap(position: int, char: str) -> str:
    """VALID_ID with the character at `position` replaced (the length stays 36)."""
    return VALID_ID[:position] + char + VALID_ID[position + 1 :]


MALFORMED_IDS: list[str] = [
    "{" + VALID_ID + "}",  # braces
    "urn:uuid:" + VALID_ID,  # URN prefix
    "{urn:uuid:" + VALID_ID + "}",
    VALID_ID.replace("-", ""),  # no hyphens (32 hex)
    VALID_ID.replace("-", "_"),  # underscores
    VALID_ID.replace("-", ":"),
    _swap(8, " "),  # inner space instead of a hyphen
    _swap(8, "\t"),  # inner tab instead of a hyphen
    "3f2b8c1e9-a4d-4c6b-8e2f-1a2b3c4d5e6f",  # hyphen moved, same length
    "00000000-0000-0000-0000-000000000000",  # nil
    "ffffffff-ffff-ffff-ffff-ffffffffffff",  # max
    "918f7b9e-e915-11f1-84d7-02fc00000001",  # version 1
    "ec794efe-a384-3b11-a0b6-ec8995bc6acc",  # version 3
    "05b16a01-46c6-56dd-bd6e-c6dfb4a1427a",  # version 5
    "01890a5d-ac96-774b-bcce-b302099a8057",  # version 7
    _swap(14, "0"),  # version nibble 0
    _swap(19, "c"),  # variant nibble c
    _swap(19, "7"),  # variant nibble 7
    _swap(19, "0"),  # variant nibble 0
    _swap(0, "g"),  # not hex
    _swap(35, "z"),
    VALID_ID[:-1],  # 35 characters
    VALID_ID + "a",  # 37 characters
    VALID_ID + VALID_ID,  # two ids glued
    VALID_ID + "," + VALID_ID,  # a header list
    VALID_ID + ";x=1",
    '"' + VALID_ID + '"',  # quoted
    "0x" + VALID_ID.replace("-", ""),
    "%7B" + VALID_ID + "%7D",  # percent-encoded braces
    VALID_ID.replace("-", "%2D"),
    "M2YyYjhjMWUtOWE0ZC00YzZiLThlMmYtMWEyYjNjNGQ1ZTZm",  # base64 of VALID_ID
    VALID_ID + "a" * 4_000,  # overlong
    "' OR '1'='1' --",
    "1; DROP TABLE user_sessions",
    "<script>alert(1)</script>",
    "../../../../etc/passwd",
    "${jndi:ldap://example.invalid/a}",
    "{{7*7}}-template",
    "undefined-session",
    "------------------------------------",  # 36 hyphens
    "x" * 36,
]

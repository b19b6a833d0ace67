"""Strict session-id parsing and generation (SPEC section 4)."""

from __future__ import annotations

import re
import uuid

from chat_app.errors import MalformedSessionId

SESSION_ID_LENGTH = 36
#: The accepted form as a JSON Schema / ECMA-262 pattern, for the API's documentation: the same
#: ids as parse_session_id accepts (any letter case), which it keeps in agreement (unit test).
SESSION_ID_PATTERN = (
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
)
# uuid.UUID() accepts braces, urn:uuid:, missing hyphens and more; only this exact form is ours.
_CANONICAL_V4 = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.ASCII
)


def parse_session_id(raw: object) -> str:
    """Return the canonical lower-case id, or raise MalformedSessionId; never touches storage."""
    if not isinstance(raw, str) or len(raw) != SESSION_ID_LENGTH or not raw.isascii():
        raise MalformedSessionId()
    lowered = raw.lower()
    if _CANONICAL_V4.fullmatch(lowered) is None:
        raise MalformedSessionId()
    return lowered


def is_uuid4(raw: object) -> bool:
    """True for a canonical version-4 uuid (file ids use the same strict form as session ids)."""
    return is_session_id(raw)


def is_session_id(raw: object) -> bool:
    """True when `raw` is a canonical (or upper-case) version-4 id."""
    try:
        parse_session_id(raw)
    except MalformedSessionId:
        return False
    return True


def new_session_id() -> str:
    """A fresh random version-4 id in canonical form."""
    return str(uuid.uuid4())

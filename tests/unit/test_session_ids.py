"""The strict canonical session-id parser and the id generator (SPEC section 4)."""

from __future__ import annotations

import re
import uuid

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat_app.errors import MalformedSessionId
from chat_app.services.session_ids import (
    SESSION_ID_PATTERN,
    is_session_id,
    new_session_id,
    parse_session_id,
)

VALID_ID = "3f2b8c1e-9a4d-4c6b-8e2f-1a2b3c4d5e6f"
CANONICAL_V4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def _swap(position: int, char: str) -> str:
    """VALID_ID with the character at `position` replaced (the length stays 36)."""
    return VALID_ID[:position] + char + VALID_ID[position + 1 :]


#: Everything the parser must refuse; shared with the database-free tests in test_sessions.py.
MALFORMED_IDS = [
    pytest.param("{" + VALID_ID + "}", id="braces"),
    pytest.param("urn:uuid:" + VALID_ID, id="urn-prefix"),
    pytest.param(VALID_ID.replace("-", ""), id="no-hyphens"),
    pytest.param(" " + VALID_ID, id="leading-space"),
    pytest.param(VALID_ID + " ", id="trailing-space"),
    pytest.param("\t" + VALID_ID, id="leading-tab"),
    pytest.param(VALID_ID + "\n", id="trailing-newline"),
    pytest.param(" " + VALID_ID[1:], id="space-instead-of-first-char"),
    pytest.param(_swap(0, "\uff13"), id="fullwidth-digit"),
    pytest.param(_swap(0, "\u0663"), id="arabic-indic-digit"),
    pytest.param(_swap(0, "\u096f"), id="devanagari-digit"),
    pytest.param(_swap(VALID_ID.index("a"), "\u0430"), id="cyrillic-a"),
    pytest.param(_swap(VALID_ID.index("e"), "\u0435"), id="cyrillic-e"),
    pytest.param(_swap(VALID_ID.index("a"), "\uff41"), id="fullwidth-letter-a"),
    pytest.param(_swap(8, "\u2011"), id="non-breaking-hyphen"),
    pytest.param(VALID_ID[:8] + "\u200b" + VALID_ID[8:], id="zero-width-space"),
    pytest.param("00000000-0000-0000-0000-000000000000", id="nil-uuid"),
    pytest.param("ffffffff-ffff-ffff-ffff-ffffffffffff", id="max-uuid"),
    pytest.param("918f7b9e-e915-11f1-84d7-02fc00000001", id="v1-uuid"),
    pytest.param("ec794efe-a384-3b11-a0b6-ec8995bc6acc", id="v3-uuid"),
    pytest.param("05b16a01-46c6-56dd-bd6e-c6dfb4a1427a", id="v5-uuid"),
    pytest.param("01890a5d-ac96-774b-bcce-b302099a8057", id="v7-uuid"),
    pytest.param(_swap(19, "c"), id="variant-nibble-c"),
    pytest.param(_swap(19, "7"), id="variant-nibble-7"),
    pytest.param(_swap(14, "5"), id="version-nibble-5"),
    pytest.param(VALID_ID[:-1], id="35-chars"),
    pytest.param(VALID_ID + "a", id="37-chars"),
    pytest.param(VALID_ID + "a" * 10_240, id="10kb-string"),
    pytest.param("' OR 1=1 --", id="sql-or-true"),
    pytest.param("1; DROP TABLE user_sessions", id="sql-drop-table"),
    pytest.param(_swap(10, "\x00"), id="nul-inside"),
    pytest.param(VALID_ID + "\x00", id="nul-trailing"),
    pytest.param("", id="empty"),
    pytest.param(None, id="none"),
    pytest.param(42, id="int"),
    pytest.param(4.2, id="float"),
    pytest.param(True, id="bool"),
    pytest.param(VALID_ID.encode(), id="bytes"),
    pytest.param(uuid.UUID(VALID_ID), id="uuid-object"),
    pytest.param([VALID_ID], id="list"),
    pytest.param("3f2b8c1e9a4d-4c6b-8e2f-1a2b-3c4d5e6f", id="hyphens-12-4-4-4-8"),
    pytest.param("3f2b-8c1e-9a4d-4c6b-8e2f1a2b3c4d5e6f", id="hyphens-4-4-4-4-16"),
    pytest.param("-" * 36, id="only-hyphens"),
    pytest.param(VALID_ID.replace("-", "_"), id="underscores"),
    pytest.param(VALID_ID.replace("-", ":"), id="colons"),
    pytest.param(_swap(0, "g"), id="non-hex-letter"),
    pytest.param('"' + VALID_ID + '"', id="json-quoted"),
    pytest.param("null", id="js-null"),
    pytest.param("undefined", id="js-undefined"),
]


@pytest.mark.parametrize("raw", MALFORMED_IDS)
def test_malformed_id_is_rejected(raw: object) -> None:
    with pytest.raises(MalformedSessionId):
        parse_session_id(raw)


@pytest.mark.parametrize("raw", MALFORMED_IDS)
def test_is_session_id_is_false_for_malformed_id(raw: object) -> None:
    assert is_session_id(raw) is False


def test_malformed_id_error_does_not_echo_the_value() -> None:
    junk = "' OR 1=1 --"
    with pytest.raises(MalformedSessionId) as caught:
        parse_session_id(junk)
    assert junk not in str(caught.value)
    assert junk not in caught.value.detail


def test_canonical_id_is_accepted_unchanged() -> None:
    assert parse_session_id(VALID_ID) == VALID_ID


def test_upper_case_id_is_canonicalised_to_lower_case() -> None:
    assert parse_session_id(VALID_ID.upper()) == VALID_ID


def test_mixed_case_id_is_canonicalised_to_lower_case() -> None:
    mixed = "".join(c.upper() if i % 2 else c for i, c in enumerate(VALID_ID))
    assert parse_session_id(mixed) == VALID_ID


@pytest.mark.parametrize("variant", ["8", "9", "a", "b", "A", "B"])
def test_every_rfc4122_variant_nibble_is_accepted(variant: str) -> None:
    raw = _swap(19, variant)
    assert parse_session_id(raw) == raw.lower()


def test_new_session_id_is_canonical_v4() -> None:
    for _ in range(200):
        session_id = new_session_id()
        assert CANONICAL_V4.fullmatch(session_id)
        assert uuid.UUID(session_id).version == 4


def test_new_session_ids_are_accepted_by_the_parser() -> None:
    for _ in range(200):
        session_id = new_session_id()
        assert parse_session_id(session_id) == session_id


def test_new_session_ids_are_unique() -> None:
    ids = [new_session_id() for _ in range(5_000)]
    assert len(set(ids)) == len(ids)


# --- SESSION_ID_PATTERN: the OpenAPI document's statement of the same rule ----------------------

#: Validated as JSON Schema does (ECMA-262 `$` is the end of the string, not before a newline).
DOCUMENTED = jsonschema_rs.validator_for({"type": "string", "pattern": SESSION_ID_PATTERN})


@pytest.mark.parametrize(
    "raw", [param for param in MALFORMED_IDS if isinstance(param.values[0], str)]
)
def test_documented_pattern_refuses_what_the_parser_refuses(raw: str) -> None:
    assert not DOCUMENTED.is_valid(raw)


@settings(max_examples=200, derandomize=True, database=None)
# fullmatch: Python's `$` would also let a trailing newline through, ECMA-262's does not.
@given(st.from_regex(SESSION_ID_PATTERN, fullmatch=True))
def test_parser_accepts_whatever_the_documented_pattern_allows(raw: str) -> None:
    assert parse_session_id(raw) == raw.lower()


def test_documented_pattern_allows_issued_and_upper_case_ids() -> None:
    issued = new_session_id()
    assert DOCUMENTED.is_valid(issued)
    assert DOCUMENTED.is_valid(issued.upper())

"""What a message must look like before it is saved (SPEC section 8: 1 to 8,000 characters)."""

from __future__ import annotations

import pytest

from chat_app.services.chat import MAX_MESSAGE_CHARS, MessageRejected, clean_message


def test_far_over_the_limit_is_refused_with_its_real_length() -> None:
    huge = "x" * (5 * MAX_MESSAGE_CHARS)
    with pytest.raises(MessageRejected, match=r"at most 8,000 characters; this one has 40,000"):
        clean_message(huge)


def test_just_over_the_limit_counts_what_remains_after_cleaning() -> None:
    text = "y" * (MAX_MESSAGE_CHARS + 1) + "\x00" * 10
    with pytest.raises(MessageRejected, match=r"this one has 8,001\."):
        clean_message(text)


def test_controls_do_not_count_against_the_limit() -> None:
    text = "z" * MAX_MESSAGE_CHARS + "\u200b" * 50 + "   "
    assert clean_message(text) == "z" * MAX_MESSAGE_CHARS

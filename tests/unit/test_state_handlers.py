"""The Reflex State handlers a websocket client can reach, and what they do with its input."""

from __future__ import annotations

import math

import pytest

from chat_app.state.chat import ChatState
from chat_app.state.dev import DevState
from chat_app.state.files import FilesState
from chat_app.state.session import SessionState

OUR_STATES = (SessionState, ChatState, FilesState, DevState)


def test_our_states_expose_only_their_event_handlers() -> None:
    """Reflex makes every public method of a State a handler any websocket client may call:
    a helper must start with "_" (`_shown_session` was public). Add real handlers here."""
    exposed = {state.__name__: set(state.event_handlers) - {"setvar"} for state in OUR_STATES}
    assert exposed == {
        "SessionState": {"load_session", "adopt_stored_id", "open_reset_dialog",
                         "set_reset_dialog_open", "confirm_reset"},
        "ChatState": {"send", "stop_reply", "download_transcript"},
        "FilesState": {"set_upload_percent", "upload_files", "download_file", "delete_file"},
        "DevState": {"refresh_audit", "validate_now", "reset_now", "expire_now",
                     "corrupt_stored_id", "sweep"},
    }


@pytest.mark.parametrize(("progress", "percent"), [
    ({"progress": 0.5}, 50), ({"progress": 7}, 100), ({"progress": -1}, 0),
    ({"progress": "half"}, 0), ({"progress": math.nan}, 0), ({"progress": math.inf}, 0),
    ({"progress": None}, 0), ({}, 0),
])
def test_upload_progress_from_the_browser_is_clamped_and_junk_ignored(
    progress: dict, percent: int
) -> None:
    state = FilesState()
    FilesState.set_upload_percent.fn(state, progress)
    assert state.upload_percent == percent

"""The Reflex State handlers a websocket client can reach, and what they do with its input."""

from __future__ import annotations

import math

import pytest

from chat_app.state.chat import ChatState
from chat_app.state.dev import DevState
from chat_app.state.files import FilesState
from chat_app.state.session import PageContents, SessionState

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


def _page_states() -> tuple[SessionState, ChatState, FilesState]:
    from reflex.state import State

    root = State(_reflex_internal_init=True)
    session = root.get_substate(SessionState.get_full_name().split(".")[1:])
    return (session, session.get_substate([ChatState.get_name()]),
            session.get_substate([FilesState.get_name()]))


def _preload(session: SessionState, sid: str) -> None:
    session.sid, session.refresh_tick = sid, session.refresh_tick + 1
    session._page = PageContents(
        session_uuid=sid, refresh_tick=session.refresh_tick, chat_tick=session.chat_tick,
        files_tick=session.files_tick, messages=("m",), files=("f",),  # type: ignore[arg-type]
    )


def test_page_load_contents_serve_the_vars_until_their_own_tick_moves() -> None:
    """The page-load flow reads messages and files with the session (one thread hop); each var
    uses them only while nothing it depends on has changed since."""
    session, chat, files = _page_states()
    assert chat._page_messages() is None and files._page_files() is None
    _preload(session, "a" * 36)
    assert chat._page_messages() == ("m",) and files._page_files() == ("f",)
    chat.chat_tick += 1  # a chat turn ended: the history must be read again, the files not
    assert chat._page_messages() is None and files._page_files() == ("f",)
    files.files_tick += 1  # an upload or a delete
    assert files._page_files() is None


@pytest.mark.parametrize("change", ["sid", "refresh_tick"])
def test_page_load_contents_are_dropped_when_the_session_on_screen_changes(change: str) -> None:
    session, chat, files = _page_states()
    _preload(session, "a" * 36)
    if change == "sid":
        session.sid = "b" * 36  # another tab of the browser reset: follow its stored id
    else:
        session.refresh_tick += 1  # a reset, a dev action, a reload of this tab
    assert chat._page_messages() is None and files._page_files() is None

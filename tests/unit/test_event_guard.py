"""chat_app/event_guard.py: what the event websocket lets through to Reflex, without a server.

The served app's side (a raw client, the server log) is tests/e2e/test_forged_socket_events.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from reflex.state import State, UpdateVarsInternalState

from chat_app.event_guard import (
    CheckedPacket,
    MalformedPacket,
    RefusedEvent,
    accepts,
    check_event,
)
from chat_app.state.chat import ChatState
from chat_app.state.dev import DevState
from chat_app.state.files import FilesState
from chat_app.state.session import SessionState

OUR_STATES = (SessionState, ChatState, FilesState, DevState)
SID_VAR = f"{SessionState.get_full_name()}.sid_rx_state_"
STORAGE_VARS = frozenset({SID_VAR})


def registry() -> dict[str, Any]:
    """Full handler name → registered handler, as Reflex's RegistrationContext holds them."""
    handlers: dict[str, Any] = {}
    for state in (State, UpdateVarsInternalState, *OUR_STATES):
        for name, handler in state.event_handlers.items():
            handlers[f"{state.get_full_name()}.{name}"] = SimpleNamespace(handler=handler)
    return handlers


HANDLERS = registry()


def event(state: type, handler: str, payload: Any = None, **fields: Any) -> dict[str, Any]:
    return {"name": f"{state.get_full_name()}.{handler}",
            "payload": {} if payload is None else payload,
            "router_data": {"pathname": "/", "asPath": "/"}, **fields}


def check(data: Any) -> None:
    check_event(data, HANDLERS, STORAGE_VARS)


@pytest.mark.parametrize("data", [
    event(State, "hydrate_and_load", {"vars": {SID_VAR: "any text"}, "hashes": ["a", "b"]}),
    event(State, "hydrate_and_load", {"vars": {}}),
    event(UpdateVarsInternalState, "update_vars_internal", {"vars": {SID_VAR: None}}),
    event(ChatState, "send",
          {"form": {"__reflex_form_data__": [["message", "hi"], ["composer", "hi"]]}}),
    event(ChatState, "stop_reply"),
    event(FilesState, "delete_file", {"file_id": "f", "filename": "a.txt"}),
    event(FilesState, "download_file", {"file_id": "f"}),
    event(FilesState, "set_upload_percent", {"progress": {"loaded": 1, "total": 2}}),
    event(SessionState, "adopt_stored_id", {"stored": None}),  # localStorage.getItem: null
    event(SessionState, "adopt_stored_id", {"stored": "an id"}),
    event(SessionState, "set_reset_dialog_open", {"value": False}),
    event(SessionState, "setvar", {"var_name": "reset_dialog_open", "value": True}),
    event(DevState, "sweep", {"dry_run": True}),
    event(ChatState, "stop_reply", router_data={"pathname": "/", "query": {"a": "1"}}),
    {"name": f"{ChatState.get_full_name()}.stop_reply"},  # payload and router data default
], ids=lambda data: data["name"].rpartition(".")[2])
def test_what_a_page_sends_passes(data: dict[str, Any]) -> None:
    check(data)


@pytest.mark.parametrize(("data", "reason"), [
    (None, "must be an object"),
    ("{}", "must be an object"),
    ({"payload": {}}, "must name its handler"),
    ({"name": 5}, "must name its handler"),
    (event(SessionState, "no_such_handler"), "no such handler"),
    (event(SessionState, "_open", {"stored": "x"}), "no such handler"),
    (event(SessionState, "shown_session"), "no such handler"),
    (event(ChatState, "stop_reply", [1]), "must be objects"),
    (event(ChatState, "stop_reply", router_data="x"), "must be objects"),
    (event(ChatState, "stop_reply", router_data={"pathname": 5}), "wrong shape"),
    (event(ChatState, "stop_reply", router_data={"query": "a=1"}), "wrong shape"),
    (event(ChatState, "stop_reply", {"extra": 1}), "do not fit"),
    (event(FilesState, "delete_file", {"file_id": "f"}), "do not fit"),
    (event(FilesState, "delete_file", {"file_id": "f", "filename": "a", "self": 1}),
     "do not fit"),
    (event(FilesState, "delete_file", {"file_id": ["f"], "filename": "a"}), "'file_id'"),
    (event(ChatState, "send", {"form": "text"}), "'form'"),
    (event(DevState, "sweep", {"dry_run": "false"}), "'dry_run'"),
    (event(SessionState, "adopt_stored_id", {"stored": 5}), "'stored'"),
    (event(FilesState, "upload_files", {"chunks": []}), "'chunks'"),
    (event(ChatState, "setvar", {"var_name": "streaming", "value": True}), "without a setter"),
    (event(State, "hydrate_and_load", {"vars": {"nope.x": "1"}}), "no client-storage var"),
    (event(State, "hydrate_and_load", {"vars": {SID_VAR: ["x"]}}), "not text"),
    (event(State, "hydrate_and_load", {"vars": {SID_VAR: 123}}), "not text"),
    (event(UpdateVarsInternalState, "update_vars_internal",
           {"vars": {f"{SessionState.get_full_name()}.refresh_tick_rx_state_": "9"}}),
     "no client-storage var"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_what_no_page_sends_is_refused(data: Any, reason: str) -> None:
    with pytest.raises(RefusedEvent, match=reason):
        check(data)


@pytest.mark.parametrize("data", [
    event(SessionState, "MARKER"),
    event(SessionState, "adopt_stored_id", {"stored": ["MARKER"]}),
    event(SessionState, "adopt_stored_id", {"MARKER": 1}),
    event(State, "hydrate_and_load", {"vars": {"MARKER": "x"}}),
    event(State, "hydrate_and_load", {"vars": {SID_VAR: ["MARKER"]}}),
])
def test_a_refusal_never_quotes_what_was_sent(data: dict[str, Any]) -> None:
    """The reason goes to the log: a forged event must not be able to write into it."""
    with pytest.raises(RefusedEvent) as refused:
        check(data)
    assert "MARKER" not in str(refused.value)


@pytest.mark.parametrize(("hint", "value", "accepted"), [
    (str, "x", True), (str, None, False), (str | None, None, True), (bool, 0, False),
    (bool, True, True), (int, True, False), (int, 3, True), (int, "3", True), (float, 1, True),
    (dict, {}, True), (dict[str, Any], [], False), (list[str], [], True), (set, [1], True),
    (tuple, "x", False), (Any, object(), True),
])
def test_accepts_what_reflex_converts(hint: Any, value: Any, accepted: bool) -> None:
    assert accepts(hint, value) is accepted


# Socket.IO packets as Engine.IO hands them over (the frame without its leading "4").
@pytest.mark.parametrize("text", ["2/_event,not json", "9/_event,[]", "4/_event,{}", "x",
                                  b"\x00\x01", '51-/_event,["event",{"_placeholder"'])
def test_socketio_packets_that_do_not_decode_are_malformed(text: str | bytes) -> None:
    with pytest.raises(MalformedPacket):
        CheckedPacket(encoded_packet=text)


def test_socketio_packets_a_page_sends_decode() -> None:
    packet = CheckedPacket(encoded_packet='2/_event,["event",{"name":"x"}]')
    assert packet.namespace == "/_event" and packet.data == ["event", {"name": "x"}]
    binary = CheckedPacket(encoded_packet='51-/_event,["event",{"_placeholder":true,"num":0}]')
    assert binary.add_attachment(b"\x00") and binary.data == ["event", b"\x00"]


def test_a_stray_binary_attachment_is_malformed() -> None:
    binary = CheckedPacket(encoded_packet='51-/_event,["event",{"_placeholder":true,"num":3}]')
    with pytest.raises(MalformedPacket):
        binary.add_attachment(b"\x00")

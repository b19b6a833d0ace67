"""A raw Socket.IO client forges Reflex events against the served app (issue 6, item 6).

No browser: `tests/reflex_socket.py` speaks Reflex's event protocol directly, so it can send what
no page would (test_forged_dev_events.py and test_forged_file_events.py rewrite a real page's
frames instead). Each forgery is refused without side effects and, where SPEC 7 asks, audited;
after each test the server still answers (a bystander tab, /api/v1/health) and its log holds no
traceback, no error line and no raw session id from the test.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from reflex.state import UpdateVarsInternalState

from chat_app.services.audit import keyed_ref
from chat_app.state.chat import ChatState
from chat_app.state.dev import DevState
from chat_app.state.files import FilesState
from chat_app.state.session import SessionState
from tests.aio import run_async
from tests.leaks import ids_in
from tests.reflex_socket import (
    NAMESPACE,
    ROOT_STATE,
    ReflexTab,
    SocketError,
    event_packet,
    reflex_event,
)

pytestmark = pytest.mark.e2e

SESSION, CHAT, FILES, DEV = (state.get_full_name()
                             for state in (SessionState, ChatState, FilesState, DevState))
SID_VAR = f"{SESSION}.sid_rx_state_"
DEV_OFF = "Developer controls are disabled on this server."
NO_SUCH_FILE = "No such file in this session."
#: Lines that must never follow client input in the server log.
LOG_ALARMS = ("Traceback (most recent call last)", '"level": "ERROR"', "[ERROR]",
              "Backend Exception")


# --- helpers ---------------------------------------------------------------------------------


def address(served_app) -> tuple[str, int]:
    parts = urlsplit(served_app.url)
    return "127.0.0.1", parts.port or 80


def api(served_app) -> httpx.Client:
    return httpx.Client(base_url=f"{served_app.url}/api/v1", timeout=10)


def new_session(served_app) -> str:
    with api(served_app) as client:
        response = client.post("/session")
    assert response.status_code == 201, response.text
    return response.json()["session_id"]


def query(served_app, sql: str, *args: Any) -> list[tuple]:
    with sqlite3.connect(served_app.data_dir / "chat_app.db") as db:
        return db.execute(sql, args).fetchall()


def session_ref(served_app, sid: str) -> str:
    """The audit rows' reference for `sid` (the served app's secret, from its data dir)."""
    return keyed_ref((served_app.data_dir / "secret_key").read_bytes().strip(), sid)


async def open_tab(served_app, sid: str) -> ReflexTab:
    """A hydrated tab whose browser storage holds `sid`, as a page would be after loading."""
    host, port = address(served_app)
    tab = await ReflexTab.open(host, port, client_storage={SID_VAR: sid})
    # Hydrated means the page's on_load handlers have run: the session is loaded.
    assert any(f'"full":"{sid}"' in packet for packet in tab.packets)
    return tab


#: What creating a session and loading a page write; anything else came from the forgery.
PAGE_LOAD_EVENTS = {"session.created", "session.resumed"}


def audit_events(served_app, ref: str | None = None, after_id: int = 0) -> set[str]:
    """The audit events written after row `after_id` (for the session `ref` if given)."""
    rows = query(served_app, "SELECT event FROM audit_log WHERE id > ?"
                 + (" AND session_ref = ?" if ref else ""), after_id, *([ref] if ref else []))
    return {event for (event,) in rows}


def last_audit_id(served_app) -> int:
    return query(served_app, "SELECT coalesce(max(id), 0) FROM audit_log")[0][0]


def has_toast(text: str) -> Callable[[str], bool]:
    return lambda packet: "__toast" in packet and text in packet


async def still_served(tab: ReflexTab) -> None:
    """`tab` (opened before the attack) still gets its page-load flow answered."""
    tab.send(f"{SESSION}.load_session")
    await tab.wait_for(lambda packet: '"refresh_tick_rx_state_"' in packet)


def attack(served_app, body: Callable[[], Awaitable[Any]]) -> Any:
    """Run `body` while a bystander tab is open; it must still be served afterwards."""
    bystander_sid = new_session(served_app)

    async def run() -> Any:
        bystander = await open_tab(served_app, bystander_sid)
        try:
            result = await body()
            await still_served(bystander)
            return result
        finally:
            await bystander.close()

    return run_async(run)


def refused_answer(served_app, sid: str, handler: str, payload: dict, toast: str) -> list[str]:
    """What a tab of `sid` receives for one forged `handler` event, up to the refusal `toast`."""

    async def forge() -> list[str]:
        tab = await open_tab(served_app, sid)
        start = len(tab.packets)
        tab.send(handler, payload)
        await tab.wait_for(has_toast(toast))
        await tab.close()
        return tab.packets[start:]

    return attack(served_app, forge)


@pytest.fixture(autouse=True)
def healthy_and_quiet(served_app) -> Iterator[None]:
    """After each test: /api/v1/health answers 200, and what the server logged during the test
    has no traceback, no error line and no raw session id."""
    start = served_app.log_path.stat().st_size
    yield
    with api(served_app) as client:
        assert client.get("/health").status_code == 200
    with served_app.log_path.open("rb") as log:
        log.seek(start)
        text = log.read().decode(errors="replace")
    alarms = [alarm for alarm in LOG_ALARMS if alarm in text]
    assert not alarms, f"the server logged {alarms}:\n{text[-3000:]}"
    sids = {row[0] for row in query(served_app, "SELECT uuid FROM user_sessions")}
    assert not ids_in(text, sids), "a raw session id reached the server log"


# --- dev actions with dev controls off -------------------------------------------------------


@pytest.mark.parametrize(("handler", "payload", "which"), [
    ("validate_now", {}, "validate"),
    ("reset_now", {}, "reset"),
    ("expire_now", {}, "expire"),
    ("corrupt_stored_id", {}, "corrupt"),
    ("sweep", {"dry_run": False}, "sweep"),
])
def test_dev_action_is_refused_and_audited(
    served_app, handler: str, payload: dict, which: str
) -> None:
    sid = new_session(served_app)
    sessions_before = query(served_app, "SELECT count(*) FROM user_sessions")[0][0]
    sweeps_before = query(served_app,
                          "SELECT count(*) FROM audit_log WHERE event = 'sweep.completed'")

    answer = refused_answer(served_app, sid, f"{DEV}.{handler}", payload, DEV_OFF)

    assert not any("localStorage.setItem" in packet for packet in answer)  # no corrupting script
    assert query(served_app, "SELECT status FROM user_sessions WHERE uuid = ?", sid) == [
        ("active",)]
    # One more session: the bystander's. The forged reset or expiry made none.
    assert query(served_app, "SELECT count(*) FROM user_sessions")[0][0] == sessions_before + 1
    assert query(served_app, "SELECT count(*) FROM audit_log WHERE event = 'sweep.completed'"
                 ) == sweeps_before
    rows = query(served_app, "SELECT event, actor, details FROM audit_log WHERE session_ref = ?"
                 " AND event LIKE 'dev.%'", session_ref(served_app, sid))
    assert [(event, actor, json.loads(details)) for event, actor, details in rows] == [
        ("dev.denied", "dev", {"which": which})]


# --- another session's file ------------------------------------------------------------------


def upload(served_app, sid: str, name: str, content: bytes) -> str:
    with api(served_app) as client:
        response = client.post("/session/files", headers={"X-Session-Id": sid},
                               files={"file": (name, content, "text/plain")})
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.mark.parametrize("action", ["delete_file", "download_file"])
def test_another_sessions_file_is_refused(served_app, action: str) -> None:
    """SPEC 7 has no event for this refusal (the API answers it with a plain 404): nothing is
    written for either session, and the file stays where it was."""
    owner = new_session(served_app)
    secret = b"session A only\n"
    file_id = upload(served_app, owner, "a-secret.txt", secret)
    owner_rows = query(served_app, "SELECT count(*) FROM audit_log a JOIN user_sessions s"
                       " ON s.id = a.session_id WHERE s.uuid = ?", owner)
    intruder = new_session(served_app)
    payload = {"file_id": file_id}
    if action == "delete_file":
        payload["filename"] = "a-secret.txt"

    answer = refused_answer(served_app, intruder, f"{FILES}.{action}", payload, NO_SUCH_FILE)

    assert not any(file_id in packet or "/api/v1/blobs" in packet for packet in answer)
    assert query(served_app, "SELECT status FROM session_files WHERE id = ?", file_id) == [
        ("stored",)]
    assert (served_app.data_dir / "files" / "sessions" / owner / file_id).read_bytes() == secret
    assert query(served_app, "SELECT count(*) FROM audit_log a JOIN user_sessions s"
                 " ON s.id = a.session_id WHERE s.uuid = ?", owner) == owner_rows
    assert audit_events(served_app, session_ref(served_app, intruder)) <= PAGE_LOAD_EVENTS
    with api(served_app) as client:  # the owner still gets it
        response = client.get(f"/session/files/{file_id}", headers={"X-Session-Id": owner},
                              follow_redirects=True)
    assert response.status_code == 200 and response.content == secret


# --- oversized payloads ----------------------------------------------------------------------


def stored_messages(served_app, sid: str) -> list[tuple]:
    return query(served_app, "SELECT m.id FROM chat_messages m JOIN user_sessions s"
                 " ON s.id = m.session_id WHERE s.uuid = ?", sid)


def test_overlong_message_under_the_frame_limit_is_refused(served_app) -> None:
    sid = new_session(served_app)

    async def forge() -> None:
        tab = await open_tab(served_app, sid)
        tab.send(f"{CHAT}.send", {"form": {"message": "x" * 900_000}})
        await tab.wait_for(has_toast("at most 8,000 characters"))
        await tab.close()

    attack(served_app, forge)
    assert stored_messages(served_app, sid) == []


@pytest.mark.parametrize("size", [1_500_000, 17 * 2**20], ids=["over-engineio", "over-uvicorn"])
def test_frame_over_the_socket_limit_closes_only_that_connection(served_app, size: int) -> None:
    """Over REFLEX_SOCKET_MAX_HTTP_BUFFER_SIZE (1,000,000 bytes) Engine.IO drops the connection;
    over 16 MiB uvicorn does, before Engine.IO sees the frame (close code 1009)."""
    sid = new_session(served_app)

    async def forge() -> str:
        tab = await open_tab(served_app, sid)
        tab.send(f"{CHAT}.send", {"form": {"message": "x" * size}})
        return await tab.until_closed()

    assert attack(served_app, forge)
    assert stored_messages(served_app, sid) == []


# --- unknown handlers and malformed frames ---------------------------------------------------


def event_frame(name: str, payload: Any = None, **fields: Any) -> str:
    return event_packet({**reflex_event(name, payload), **fields})


#: Each is refused and its connection closed; none reaches a handler.
REFUSED_FRAMES = {
    "unknown handler": event_frame(f"{SESSION}.no_such_handler"),
    "unknown state": event_frame(f"{ROOT_STATE}.nope.nothing"),
    "private method": event_frame(f"{SESSION}._open", {"stored": "x"}),
    # A public helper used to be registered as a handler (now `_shown_session`).
    "helper method": event_frame(f"{SESSION}.shown_session"),
    "missing argument": event_frame(f"{FILES}.delete_file", {}),
    "extra argument": event_frame(f"{CHAT}.stop_reply", {"zzz": 1}),
    "form is text": event_frame(f"{CHAT}.send", {"form": "a string"}),
    "bool is text": event_frame(f"{DEV}.sweep", {"dry_run": "yes"}),
    "file id is an object": event_frame(f"{FILES}.download_file", {"file_id": {"$ne": ""}}),
    "upload chunks over the socket": event_frame(f"{FILES}.upload_files", {"chunks": "abc"}),
    "setvar without a setter": event_frame(f"{CHAT}.setvar",
                                           {"var_name": "streaming", "value": True}),
    "stored value for no storage var": event_frame(
        f"{UpdateVarsInternalState.get_full_name()}.update_vars_internal",
        {"vars": {f"{SESSION}.refresh_tick_rx_state_": "5"}}),
    "payload is a list": event_frame(f"{CHAT}.stop_reply", [1, 2]),
    "router data of the wrong shape": event_frame(f"{CHAT}.stop_reply",
                                                  router_data={"pathname": 5}),
    "event is null": event_packet(None),
    "event is a list": event_packet([1, 2]),
    "event is a non-JSON string": event_packet("not json"),
    "event without a name": event_packet({"payload": {}}),
    "name is a number": event_packet({"name": 5, "payload": {}}),
    "socket.io packet not JSON": f"42{NAMESPACE},not json at all",
    "socket.io packet type unknown": f"49{NAMESPACE},[]",
    "engine.io packet type unknown": "9garbage",
    "engine.io empty frame": "",
}


@pytest.mark.parametrize("frame", REFUSED_FRAMES.values(), ids=REFUSED_FRAMES.keys())
def test_malformed_or_unknown_event_closes_the_connection(served_app, frame: str) -> None:
    sid = new_session(served_app)
    before = last_audit_id(served_app)

    async def forge() -> str:
        tab = await open_tab(served_app, sid)
        tab.send_raw(frame)
        return await tab.until_closed()

    assert attack(served_app, forge)
    assert audit_events(served_app, after_id=before) <= PAGE_LOAD_EVENTS  # nothing else ran
    assert query(served_app, "SELECT status FROM user_sessions WHERE uuid = ?", sid) == [
        ("active",)]


def test_stray_binary_frame_closes_the_connection(served_app) -> None:
    sid = new_session(served_app)

    async def forge() -> str:
        tab = await open_tab(served_app, sid)
        tab.sio.ws.send_bytes(b"\x00\x01\x02")
        return await tab.until_closed()

    assert attack(served_app, forge)


@pytest.mark.parametrize("frame", [f'42{NAMESPACE},["nope",{{}}]', '42/nope,["event",{}]'],
                         ids=["unknown socket.io event", "unknown namespace"])
def test_frames_socketio_ignores_leave_the_connection_working(served_app, frame: str) -> None:
    sid = new_session(served_app)

    async def forge() -> None:
        tab = await open_tab(served_app, sid)
        tab.send_raw(frame)
        await still_served(tab)
        await tab.close()

    attack(served_app, forge)


@pytest.mark.parametrize("boot", [True, False], ids=["hydrate event", "bare connect"])
def test_connect_without_a_token_is_refused(served_app, boot: bool) -> None:
    """Reflex would log the whole event (the stored session id with it) and drop it."""
    host, port = address(served_app)
    sid = new_session(served_app)

    async def forge() -> None:
        with pytest.raises(SocketError, match="refused"):
            tab = await ReflexTab.open(host, port, client_storage={SID_VAR: sid}, token="",
                                       boot=boot)
            await tab.wait_for(lambda _: False, timeout=5)  # bare: the refusal comes now

    attack(served_app, forge)


def test_forged_boot_event_is_refused_at_connect(served_app) -> None:
    host, port = address(served_app)

    async def forge() -> None:
        tab = await ReflexTab.open(host, port, boot=False)
        tab.send_raw(f'40{NAMESPACE},{{"event":{{"name":"{ROOT_STATE}.nope","payload":{{}}}}}}')
        with pytest.raises(SocketError, match="refused"):
            await tab.wait_for(lambda _: False, timeout=5)

    attack(served_app, forge)


@pytest.mark.parametrize("stored", [{SID_VAR: 123}, {SID_VAR: ["x"]}, {"nope.x": "1"}],
                         ids=["id is a number", "id is a list", "no such var"])
def test_boot_event_with_stored_values_no_page_sends_is_refused(
    served_app, stored: dict
) -> None:
    """A page sends its storage items as text: Reflex would fail on an unknown var name (a
    traceback) and quote any other value whole in a warning."""
    host, port = address(served_app)

    async def forge() -> None:
        with pytest.raises(SocketError, match="refused"):
            await ReflexTab.open(host, port, client_storage=stored)

    attack(served_app, forge)


def test_a_malformed_stored_id_still_gets_a_new_session(served_app) -> None:
    """The guard leaves the page-load flow alone: a text id that is malformed is replaced."""
    host, port = address(served_app)

    async def load() -> ReflexTab:
        tab = await ReflexTab.open(host, port, client_storage={SID_VAR: "not-a-session-id"})
        await tab.close()
        return tab

    tab = attack(served_app, load)
    assert any("__toast" in packet and "a new one has started" in packet
               for packet in tab.packets)
    assert any('"status":"active"' in packet for packet in tab.packets)

"""What chat_app/serving.py saves per connected tab: the websocket fast path, lighter engineio."""

from __future__ import annotations

from typing import Any

import pytest
from engineio import async_socket, exceptions, packet
from engineio.async_server import AsyncServer as EngineIOServer

from chat_app.serving import (
    ChatApp,
    EventSocketFirst,
    LeanAsyncSocket,
    lighten_engineio,
    websocket_environ,
    websocket_fast_path,
)
from tests.aio import run_async

SERVER_VARIABLES = ("REFLEX_USE_GRANIAN", "GUNICORN_CMD_ARGS", "WEB_CONCURRENCY")


# --- EventSocketFirst: the websocket fast path ------------------------------------------------


class Recorder:
    """An ASGI app that records the scopes it is called with."""

    def __init__(self) -> None:
        self.paths: list[tuple[str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.paths.append((scope["type"], scope.get("path", "")))


class FakeReflexApp:
    def __init__(self) -> None:
        self.contexts_set = 0

    def _set_contexts_internal(self) -> dict:
        self.contexts_set += 1
        return {}


def test_only_event_websockets_skip_the_stack() -> None:
    stack, socket_app, reflex_app = Recorder(), Recorder(), FakeReflexApp()
    dispatch = EventSocketFirst(stack, socket_app, reflex_app, "/_event")  # type: ignore[arg-type]

    async def scenario() -> None:
        for scope_type, path in [("websocket", "/_event/"), ("websocket", "/_event"),
                                 ("websocket", "/_events/"), ("http", "/_event/"),
                                 ("http", "/api/v1/session"), ("lifespan", "")]:
            await dispatch({"type": scope_type, "path": path}, None, None)

    run_async(scenario)
    assert socket_app.paths == [("websocket", "/_event/"), ("websocket", "/_event")]
    assert stack.paths == [("websocket", "/_events/"), ("http", "/_event/"),
                           ("http", "/api/v1/session"), ("lifespan", "")]
    assert reflex_app.contexts_set == 2  # as Reflex's _ContextMiddleware would have


def test_the_fast_path_finds_the_socket_app_reflex_mounts(monkeypatch, tmp_path) -> None:
    """Against Reflex's real layout: an app built like ours mounts its Socket.IO app at /_event."""
    monkeypatch.setenv("CHAT_APP_DATA_DIR", str(tmp_path))
    for name in SERVER_VARIABLES:  # rxconfig.py sets them; restored after the test
        monkeypatch.delenv(name, raising=False)
    app = ChatApp()
    stack = Recorder()
    dispatch = websocket_fast_path(app, stack)
    assert isinstance(dispatch, EventSocketFirst)
    assert dispatch.socket_app is next(route.app for route in app._api.routes  # type: ignore[union-attr]
                                       if getattr(route, "path", "") == "/_event")


# --- lighten_engineio --------------------------------------------------------------------------


def lean_socket(ping_interval: float = 25, ping_timeout: float = 20) -> LeanAsyncSocket:
    server = EngineIOServer(async_mode="asgi", ping_interval=ping_interval,
                            ping_timeout=ping_timeout)
    socket = LeanAsyncSocket(server, "sid")
    socket.upgraded = True  # a websocket: what Reflex's transport is
    return socket


def test_poll_hands_out_packets_that_let_go_once_encoded() -> None:
    async def scenario() -> tuple[list[str], list[Any], list[Any]]:
        socket = lean_socket()
        for text in ("one", "two"):
            await socket.queue.put(packet.Packet(packet.MESSAGE, data=text))
        polled = await socket.poll()
        encoded = [str(item.encode()) for item in polled]
        await socket.queue.put(None)  # closing
        return encoded, [item.packet for item in polled], await socket.poll()

    encoded, held, after_close = run_async(scenario)
    assert encoded == ["4one", "4two"]
    assert held == [None, None]  # the writer's last `pkt` keeps nothing alive
    assert after_close == []


def test_poll_stops_at_the_close_marker_and_leaves_it() -> None:
    async def scenario() -> tuple[int, list[Any]]:
        socket = lean_socket()
        await socket.queue.put(packet.Packet(packet.MESSAGE, data="last"))
        await socket.queue.put(None)
        first = await socket.poll()
        return len(first), await socket.poll()

    assert run_async(scenario) == (1, [])


def test_poll_times_out_like_engineio() -> None:
    async def scenario() -> None:
        with pytest.raises(exceptions.QueueEmpty):
            await lean_socket(ping_interval=0.05, ping_timeout=0.05).poll()

    run_async(scenario)


def test_long_polling_keeps_engineio_packets() -> None:
    async def scenario() -> list[Any]:
        socket = lean_socket()
        socket.upgraded = False
        await socket.queue.put(packet.Packet(packet.MESSAGE, data="x"))
        return await socket.poll()

    [polled] = run_async(scenario)
    assert isinstance(polled, packet.Packet)


def test_websocket_environ_drops_only_the_websocket_body_reader() -> None:
    async def translate(scope: dict[str, Any], receive: Any, send: Any) -> dict[str, Any]:
        return {"wsgi.input": object(), "PATH_INFO": scope["path"]}

    lean = websocket_environ(translate)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        return (await lean({"type": "websocket", "path": "/_event/"}, None, None),
                await lean({"type": "http", "path": "/_event/"}, None, None))

    websocket, http = run_async(scenario)
    assert websocket == {"PATH_INFO": "/_event/"}
    assert "wsgi.input" in http


def test_lighten_engineio_once_per_server(monkeypatch) -> None:
    monkeypatch.setattr(async_socket, "AsyncSocket", async_socket.AsyncSocket)  # restored after
    server, other = EngineIOServer(async_mode="asgi"), EngineIOServer(async_mode="asgi")
    original = server._async["translate_request"]
    lighten_engineio(server)
    wrapped = server._async["translate_request"]
    lighten_engineio(server)
    assert server._async["translate_request"] is wrapped
    assert wrapped.__wrapped__ is original
    assert other._async["translate_request"] is original  # the shared driver dict is untouched
    assert async_socket.AsyncSocket is LeanAsyncSocket

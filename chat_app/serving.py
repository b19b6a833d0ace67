"""What each connected browser tab costs the backend: kept small (issue 5, `bench/memory.py`).

Every open tab holds one websocket to Reflex's `/_event` endpoint for as long as it is open, so
whatever the backend keeps per connection is multiplied by the number of tabs. Two things here
cut that cost; the server settings (gunicorn, `chat_app.uvicorn_worker.Worker`) are the third.
README "Production" has the measured figures.

- `ChatApp` hands `/_event` websockets straight to Reflex's Socket.IO app. Reflex mounts that app
  deep inside two Starlette apps and our FastAPI app; every middleware on the way keeps a
  coroutine and its closures alive for the whole connection (~80 objects, ~14 kB per tab), and
  none of them does anything for a websocket (CORS, error pages and the request-id middleware only
  act on HTTP).
- `lighten_engineio` takes out of python-engineio what an idle tab pays for and never uses: the
  last packet sent and a task (`LeanAsyncSocket`), and the long-polling body reader of each
  websocket's request (`websocket_environ`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import reflex as rx
from engineio import async_socket, exceptions
from reflex_base import constants
from reflex_base.config import get_config
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from chat_app.event_guard import guard_event_socket

log = logging.getLogger("chat_app.serving")
TranslateRequest = Callable[[Scope, Receive, Send], Awaitable[dict[str, Any]]]


class ChatApp(rx.App):
    """`rx.App` whose ASGI app answers `/_event` websockets first (see the module docstring)."""

    def __call__(self) -> ASGIApp:
        asgi = super().__call__()  # builds self.sio, the Socket.IO server
        if self.sio is not None:
            lighten_engineio(self.sio.eio)
            if self.event_namespace is not None:
                guard_event_socket(self.sio, self.event_namespace)
        return websocket_fast_path(self, asgi)


def websocket_fast_path(app: rx.App, asgi: ASGIApp) -> ASGIApp:
    """`asgi`, except that websockets to the event endpoint go straight to the app Reflex mounts
    there. Without that mount (another Reflex layout) `asgi` is returned unchanged."""
    event_path = get_config().prepend_backend_path(str(constants.Endpoint.EVENT))
    routes = app._api.routes if app._api is not None else []
    socket_app = next((route.app for route in routes
                       if isinstance(route, Mount) and route.path == event_path), None)
    if socket_app is None:
        log.warning("no Socket.IO app mounted at %s: websockets take the full middleware stack",
                    event_path)
        return asgi
    return EventSocketFirst(asgi, socket_app, app, event_path)


class EventSocketFirst:
    """ASGI dispatch: event websockets to `socket_app`, everything else (HTTP, lifespan) to `app`.

    What the skipped stack does for such a websocket is redone here: Reflex's `_ContextMiddleware`
    sets its contexts, the same way; the Starlette `Mount` only adds `root_path`, which the
    Engine.IO app never reads (it routes on `path`).
    """

    def __init__(self, app: ASGIApp, socket_app: ASGIApp, reflex_app: rx.App,
                 event_path: str) -> None:
        self.app = app
        self.socket_app = socket_app
        self.reflex_app = reflex_app
        self.event_path = event_path
        self.event_prefix = event_path.rstrip("/") + "/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and (
                scope["path"] == self.event_path or scope["path"].startswith(self.event_prefix)):
            # As `_ContextMiddleware` does: set for this connection's task and never reset, the
            # task's context ends with it. (The public `set_contexts()` would keep an ExitStack,
            # ~1.3 kB, per connection to reset them.)
            self.reflex_app._set_contexts_internal()
            await self.socket_app(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _SendOnce:
    """A packet for the websocket writer that lets go of it once encoded.

    engineio's writer loop (`for pkt in packets: await ws.send(pkt.encode())`) keeps its last
    `pkt` until the next message: for an idle tab, the state snapshot sent after hydration, held
    twice (the packet's text and its encode cache, ~2.8 kB each with our state)."""

    __slots__ = ("packet",)

    def __init__(self, packet: Any) -> None:
        self.packet: Any = packet

    def encode(self, b64: bool = False) -> str | bytes:
        packet, self.packet = self.packet, None
        return packet.encode(b64)


class LeanAsyncSocket(async_socket.AsyncSocket):
    """python-engineio's `AsyncSocket` with a `poll` that keeps nothing between messages.

    Same contract as the original: the next packets, or [] once the socket is closed, or
    QueueEmpty after ping interval + ping timeout without one. Two differences, websocket only:
    the packets are wrapped in `_SendOnce`, and the wait is an `asyncio.timeout` block rather than
    `asyncio.wait_for`, which on Python 3.11 runs the queue read as a task of its own, one more
    per connection (Python 3.12's `wait_for` no longer does)."""

    async def poll(self) -> list[Any]:
        if not self.upgraded:  # long-polling: the server encodes the list itself
            return await super().poll()
        try:
            async with asyncio.timeout(self.server.ping_interval + self.server.ping_timeout):
                first = await self.queue.get()
            self.queue.task_done()
        except (TimeoutError, asyncio.CancelledError):
            raise exceptions.QueueEmpty() from None
        if first is None:
            return []
        packets = [_SendOnce(first)]
        while True:
            try:
                pkt = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            self.queue.task_done()
            if pkt is None:  # closing: leave the marker for the next poll
                self.queue.put_nowait(None)
                break
            packets.append(_SendOnce(pkt))
        return packets


def websocket_environ(translate_request: TranslateRequest) -> TranslateRequest:
    """engineio's ASGI `translate_request`, minus `wsgi.input` for websockets.

    `wsgi.input` is an instance of a class that `translate_request` defines anew on every call, so
    each connection keeps its own class object (~2.4 kB) for as long as it is open; engineio reads
    it only for the body of a long-polling POST, and Reflex never."""

    @functools.wraps(translate_request)
    async def translate(scope: Scope, receive: Receive, send: Send) -> dict[str, Any]:
        environ = await translate_request(scope, receive, send)
        if scope["type"] == "websocket":
            environ.pop("wsgi.input", None)
        return environ

    return translate


def lighten_engineio(eio: Any) -> None:
    """Apply `LeanAsyncSocket` and `websocket_environ` to the Engine.IO server `eio`.

    engineio's `AsyncServer._handle_connect` builds every socket as
    `async_socket.AsyncSocket(self, sid)` and offers no hook, so the module attribute is replaced
    (once per process; only Reflex's server runs here). Its ASGI driver functions live in the
    server's `_async` dict, shared by all servers: this server gets a copy."""
    async_socket.AsyncSocket = LeanAsyncSocket  # type: ignore[misc]
    translate = eio._async["translate_request"]
    if not hasattr(translate, "__wrapped__"):  # not wrapped yet (dev mode calls the app again)
        eio._async = {**eio._async, "translate_request": websocket_environ(translate)}


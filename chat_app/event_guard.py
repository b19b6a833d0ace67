"""What the event websocket accepts: anything a page never sends is refused before Reflex sees it.

Every frame on `/_event` is client input (issue 6, SPEC 11.6): a raw Socket.IO client can send
any text. Reflex 0.10 trusts its own frontend, so a forged frame used to end in a traceback in
the server log, several layers deep:

- Engine.IO: a frame that is not an Engine.IO packet (empty, or a type beyond 0-6) escaped the
  receive loop ("Exception in ASGI application");
- Socket.IO: a packet that does not decode (not JSON, an unknown packet type, stray binary)
  ("message async handler error");
- Reflex: an event that is not an object, names no registered handler, or whose arguments do
  not fit the handler: a traceback each, with the whole event (payload, headers) quoted in the
  log line, and for bad arguments the handler ran and failed halfway.

Each layer now checks what it receives and refuses it with one log line (our JSON logger: one
line whatever the input, ids redacted) and by closing the connection: a page never sends any of
this, so the sender is not a page, and closing bounds what one connection can make us log.
Events that pass are handed to Reflex unchanged. The handlers themselves still treat their
arguments as client input (a dict's contents, a file id of another session).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import logging
import types
import typing
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from engineio.async_drivers import asgi as engineio_asgi
from reflex_base.registry import RegistrationContext
from socketio import packet as socketio_packet
from socketio.exceptions import ConnectionRefusedError as SocketRefused

log = logging.getLogger("chat_app.events")

#: Engine.IO packet types a websocket may carry (open ... noop); text frames start with one.
ENGINEIO_TYPES = frozenset("0123456")
#: Socket.IO packet types a client may send (all but CONNECT_ERROR, which only servers send).
SOCKETIO_TYPES = frozenset({
    socketio_packet.CONNECT, socketio_packet.DISCONNECT, socketio_packet.EVENT,
    socketio_packet.ACK, socketio_packet.BINARY_EVENT, socketio_packet.BINARY_ACK,
})
#: Router data as `withRouterData` (state.js) forms it: Reflex reads these keys as such.
ROUTER_DATA_TYPES: dict[str, type] = {"pathname": str, "asPath": str, "query": dict}
SETVAR = "setvar"
#: Reflex's handlers that write the browser's stored values (`vars`: full var name → value).
CLIENT_STORAGE_HANDLERS = frozenset({"hydrate_and_load", "update_vars_internal"})


class RefusedEvent(ValueError):
    """An event (or frame) no page sends; the message says why, never what it contained."""


class MalformedPacket(ValueError):
    """A Socket.IO packet that does not decode."""


# --- Reflex events --------------------------------------------------------------------------


def check_event(data: Any, handlers: Mapping[str, Any],
                storage_vars: frozenset[str] = frozenset()) -> None:
    """Raise RefusedEvent unless `data` is an event for a registered handler whose arguments
    fit its signature and annotations (`handlers`: full name → RegisteredEventHandler), and
    whose stored values, if it carries any, are text for the vars in `storage_vars`."""
    if not isinstance(data, dict):
        raise RefusedEvent("an event must be an object")
    name = data.get("name")
    if not isinstance(name, str):
        raise RefusedEvent("an event must name its handler")
    registered = handlers.get(name)
    if registered is None:
        raise RefusedEvent("no such handler")
    payload = data.get("payload", {})
    router_data = data.get("router_data", {})
    if not isinstance(payload, dict) or not isinstance(router_data, dict):
        raise RefusedEvent("payload and router data must be objects")
    if any(key in router_data and not isinstance(router_data[key], kind)
           for key, kind in ROUTER_DATA_TYPES.items()):
        raise RefusedEvent("router data of the wrong shape")
    handler = registered.handler
    check_arguments(handler.fn, handler._get_type_hints(), payload)
    if handler.fn.__name__ in CLIENT_STORAGE_HANDLERS:
        check_stored_values(payload.get("vars") or {}, storage_vars)
    if handler.fn.__name__ == SETVAR:
        # Reflex registers `setvar(var_name, value)` on every state; it calls `set_<var_name>`,
        # so it reaches nothing that is not a handler already, and anything else would fail.
        state_name = name.rpartition(".")[0]
        if f"{state_name}.set_{payload.get('var_name')}" not in handlers:
            raise RefusedEvent("setvar names a var without a setter")


def check_stored_values(values: Mapping[str, Any], storage_vars: frozenset[str]) -> None:
    """The browser sends its cookies and storage items as text (null for an item another tab
    removed). Reflex would fail on a name that is no client-storage var (a traceback), and
    log any other value whole in a type warning (a raw session id in a list, a megabyte)."""
    if any(name not in storage_vars for name in values):
        raise RefusedEvent("a stored value for no client-storage var")
    if any(value is not None and not isinstance(value, str) for value in values.values()):
        raise RefusedEvent("a stored value that is not text")


def client_storage_vars(root_state: Any) -> frozenset[str]:
    """The full names under which the page sends its cookies and storage items."""
    from reflex.compiler.utils import compile_client_storage

    if root_state is None:
        return frozenset()
    return frozenset(name for kind in compile_client_storage(root_state).values()
                     for name in kind)


def check_arguments(fn: Callable[..., Any], hints: Mapping[str, Any],
                    payload: Mapping[str, Any]) -> None:
    """Raise RefusedEvent unless `payload` binds to `fn` (after `self`) and fits `hints`."""
    try:
        _signature(fn).bind(None, **payload)
    except TypeError:
        raise RefusedEvent("the arguments do not fit the handler") from None
    for arg, value in payload.items():
        if not accepts(hints.get(arg, Any), value):
            raise RefusedEvent(f"argument {arg[:40]!r} has the wrong type")


@functools.cache
def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(fn)


def accepts(hint: Any, value: Any) -> bool:
    """Whether the JSON `value` can be the argument annotated `hint`, as Reflex converts it
    (numbers from numeric text, sets and tuples from lists, models and dataclasses from
    objects, enums from their values)."""
    if hint is Any or hint is object:
        return True
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(accepts(arg, value) for arg in typing.get_args(hint))
    if hint is None or hint is type(None):
        return value is None
    cls = origin or hint
    if not isinstance(cls, type):
        return True  # Literal, TypeVar, ...: Reflex's own business
    if cls is bool:
        return isinstance(value, bool)
    if cls in (int, float):
        return isinstance(value, int | float | str) and not isinstance(value, bool)
    if cls in (str, dict, list):
        return isinstance(value, cls)
    if cls in (set, frozenset, tuple):
        return isinstance(value, list)
    if issubclass(cls, enum.Enum):
        return True
    if dataclasses.is_dataclass(cls) or hasattr(cls, "model_validate"):
        return isinstance(value, dict)
    # Anything else (an upload's chunk iterator, ...) is built by the server, never sent as JSON.
    return isinstance(value, cls)


# --- the three layers -----------------------------------------------------------------------


class CheckedPacket(socketio_packet.Packet):
    """Socket.IO's packet, raising MalformedPacket for whatever does not decode."""

    def decode(self, encoded_packet: Any) -> int:
        try:
            attachments = super().decode(encoded_packet)
        except Exception as error:  # decoding client bytes: any failure is theirs
            raise MalformedPacket(type(error).__name__) from None
        if self.packet_type not in SOCKETIO_TYPES:
            raise MalformedPacket("unknown packet type")
        return attachments

    def add_attachment(self, attachment: Any) -> bool:
        try:
            return super().add_attachment(attachment)
        except Exception as error:
            raise MalformedPacket(type(error).__name__) from None


class CheckedWebSocket(engineio_asgi.WebSocket):
    """Engine.IO's ASGI websocket; a text frame that is no Engine.IO packet ends the connection,
    as if the client had closed it (Engine.IO decodes it outside any error handling)."""

    async def wait(self) -> Any:
        frame = await super().wait()
        if isinstance(frame, str) and frame[:1] not in ENGINEIO_TYPES:
            log.warning("websocket closed: a frame that is not an Engine.IO packet")
            return None
        return frame


def guard_event_socket(sio: Any, namespace: Any) -> None:
    """Install the checks on Reflex's Socket.IO server `sio` and its event `namespace`
    (once: dev mode builds the ASGI app again on a reload)."""
    if getattr(namespace, "_chat_app_guarded", False):
        return
    namespace._chat_app_guarded = True
    eio = sio.eio
    eio._async = {**eio._async, "websocket": CheckedWebSocket}
    sio.packet_class = CheckedPacket
    eio.on("message", _refusing_malformed(sio, eio.handlers["message"]))
    rules = EventRules(client_storage_vars(namespace.app._state))
    namespace.on_connect = _checked_connect(rules, namespace.on_connect)
    namespace.on_event = _checked_event(rules, sio, namespace, namespace.on_event)


@dataclasses.dataclass(frozen=True)
class EventRules:
    """`check_event` with this app's client-storage vars and its registered handlers."""

    storage_vars: frozenset[str]

    def check(self, data: Any) -> None:
        check_event(data, RegistrationContext.get().event_handlers, self.storage_vars)


def _refusing_malformed(sio: Any, handle: Callable[..., Awaitable[Any]]
                        ) -> Callable[..., Awaitable[Any]]:
    async def on_message(eio_sid: str, data: Any) -> Any:
        try:
            return await handle(eio_sid, data)
        except MalformedPacket as error:
            log.warning("websocket closed: a Socket.IO packet that does not decode (%s)", error)
            await sio.eio.disconnect(eio_sid)
            return None

    return on_message


def _checked_connect(rules: EventRules, connect: Callable[..., Awaitable[Any]]
                     ) -> Callable[..., Awaitable[Any]]:
    async def on_connect(sid: str, environ: dict, auth: Any = None) -> Any:
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        boot = auth.get("event") if isinstance(auth, dict) else None
        try:
            if not query.get("token"):
                raise RefusedEvent("no tab token")
            if boot is not None:
                rules.check(boot)
        except RefusedEvent as refusal:
            log.warning("websocket connect refused: %s", refusal)
            # Socket.IO answers CONNECT_ERROR and logs nothing more.
            raise SocketRefused("refused") from None
        return await connect(sid, environ, auth)

    return on_connect


def _checked_event(rules: EventRules, sio: Any, namespace: Any,
                   handle: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def on_event(sid: str, data: Any) -> Any:
        try:
            if sid not in namespace.sid_to_token:
                # Reflex would log the whole event, payload and all, before dropping it.
                raise RefusedEvent("an event before the tab's token is known")
            rules.check(data)
        except RefusedEvent as refusal:
            log.warning("websocket closed: event refused (%s)", refusal)
            await _disconnect(sio, namespace, sid)
            return None
        return await handle(sid, data)

    return on_event


async def _disconnect(sio: Any, namespace: Any, sid: str) -> None:
    eio_sid = sio.manager.eio_sid_from_sid(sid, namespace.namespace)
    if eio_sid is not None:
        await sio.eio.disconnect(eio_sid)

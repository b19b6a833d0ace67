"""A raw client for Reflex's event websocket, with no browser: what `bench.events` loads the
server with and what the forged-event tests attack it with.

Reflex 0.10 speaks Socket.IO (Engine.IO v4, websocket transport only) on `/_event/`:

- the socket opens as `/_event/?token=<tab uuid>&EIO=4&transport=websocket`; the token names the
  tab's state tree (the browser keeps it in `sessionStorage.token`);
- the Socket.IO CONNECT packet, `40/_event,{"event": <hydrate_and_load>, "state_schema": ...}`,
  carries the tab's boot event, whose `vars` are the browser's client storage (our stored `sid`);
- each event is `42/_event,["event",{"name": "<state path>.<handler>", "payload": {kwargs},
  "router_data": {"pathname": "/", "asPath": "/"}}]`;
- the server answers `42/_event,["event",{"delta": {...}, "events": [...], "final": ...}]`, with
  toasts and downloads as `events` for the browser to run.

Nothing here knows our app beyond those names; only the standard library is used, so the bench's
load processes and the test process import it cheaply.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

NAMESPACE = "/_event"
EVENT_PATH = "/_event/"
ROOT_STATE = "reflex___state____state"
#: What `withRouterData` (state.js) puts on every event of a page served at `/`.
ROUTER_DATA = {"pathname": "/", "asPath": "/"}
HYDRATED_TRUE = '"is_hydrated_rx_state_":true'


class SocketError(Exception):
    """The socket failed or the server refused it; `kind` says how (the bench counts kinds)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


# --- a minimal websocket client (RFC 6455) --------------------------------------------------


class WebSocket:
    """Text frames over asyncio streams: masked sends, unmasked receives, pings answered."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._messages: deque[str] = deque()
        self.closed = False
        #: The close code the server sent, if it closed the socket with a close frame.
        self.close_code: int | None = None

    @classmethod
    async def connect(cls, host: str, port: int, target: str, protocol: str = "") -> WebSocket:
        reader, writer = await asyncio.open_connection(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {target} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
            "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
            f"Origin: http://{host}:{port}", "User-Agent: tests.reflex_socket",
        ]
        if protocol:
            lines.append(f"Sec-WebSocket-Protocol: {protocol}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
            writer.close()
            raise SocketError("disconnect", "no websocket handshake") from error
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise SocketError("refused", head.split(b"\r\n", 1)[0].decode(errors="replace"))
        return cls(reader, writer)

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def send_bytes(self, data: bytes) -> None:
        self._send_frame(0x2, data)

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        size = len(payload)
        if size < 126:
            header = bytes((0x80 | opcode, 0x80 | size))
        elif size < 65536:
            header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
        else:
            header = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
        mask = random.randbytes(4)  # RFC 6455 only asks for unpredictable-enough keys
        masked = (int.from_bytes(payload, "little")
                  ^ int.from_bytes((mask * (size // 4 + 1))[:size], "little"))
        self._writer.write(header + mask + masked.to_bytes(size, "little"))

    async def recv(self) -> str:
        """The next complete text message."""
        while not self._messages:
            if self.closed:
                raise SocketError("disconnect", "closed by the server")
            try:
                data = await self._reader.read(262144)
            except ConnectionError as error:
                self.closed = True
                raise SocketError("disconnect", type(error).__name__) from error
            if not data:
                self.closed = True
                raise SocketError("disconnect", "connection closed")
            self._buffer += data
            self._parse()
        return self._messages.popleft()

    def _parse(self) -> None:
        buffer, pos, end = self._buffer, 0, len(self._buffer)
        while end - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            size, head = second & 0x7F, 2
            if size == 126:
                if end - pos < 4:
                    break
                size, head = int.from_bytes(buffer[pos + 2:pos + 4], "big"), 4
            elif size == 127:
                if end - pos < 10:
                    break
                size, head = int.from_bytes(buffer[pos + 2:pos + 10], "big"), 10
            if second & 0x80:  # servers do not mask; tolerate it anyway
                head += 4
            if end - pos < head + size:
                break
            payload = bytes(buffer[pos + head:pos + head + size])
            if second & 0x80:
                mask = buffer[pos + head - 4:pos + head]
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            pos += head + size
            opcode = first & 0x0F
            if opcode in (0x0, 0x1, 0x2):
                self._fragments.append(payload)
                if first & 0x80:
                    self._messages.append(b"".join(self._fragments).decode(errors="replace"))
                    self._fragments.clear()
            elif opcode == 0x9:
                self._send_frame(0xA, payload)
            elif opcode == 0x8:
                self.closed = True
                if len(payload) >= 2:
                    self.close_code = int.from_bytes(payload[:2], "big")
        del buffer[:pos]

    async def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(OSError, RuntimeError):
                self._send_frame(0x8, (1000).to_bytes(2, "big"))
        self.closed = True
        self._writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self._writer.wait_closed()


# --- Engine.IO / Socket.IO framing -----------------------------------------------------------


class SocketIO:
    """One Engine.IO v4 websocket: `0` open, `2`/`3` ping/pong, `4x` Socket.IO packets."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, host: str, port: int, token: str | None, protocol: str) -> SocketIO:
        query = f"token={token}&EIO=4&transport=websocket" if token else "EIO=4&transport=websocket"
        ws = await WebSocket.connect(host, port, f"{EVENT_PATH}?{query}", protocol)
        opening = await ws.recv()
        if not opening.startswith("0{"):
            await ws.close()
            raise SocketError("refused", f"no Engine.IO open packet: {opening[:80]}")
        return cls(ws)

    def send(self, packet: str) -> None:
        self.ws.send(packet)

    async def recv(self) -> str:
        """The next Socket.IO packet (`40...`, `42...`, `44...`); pings are answered."""
        while True:
            message = await self.ws.recv()
            if message == "2":
                self.ws.send("3")
                continue
            if message.startswith("1"):
                raise SocketError("disconnect", "Engine.IO close")
            if message.startswith("41"):
                raise SocketError("disconnect", "Socket.IO disconnect")
            if message.startswith("44"):
                raise SocketError("refused", message[:200])
            return message

    async def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.ws.send(f"41{NAMESPACE},")
        await self.ws.close()


def event_body(packet: str) -> Any:
    """The JSON of `42/_event,[...]` (the part after the namespace)."""
    return json.loads(packet[packet.index(",") + 1:])


def compact(value: Any) -> str:
    """JSON as the browser's socket.io-client sends it (no spaces)."""
    return json.dumps(value, separators=(",", ":"))


# --- Reflex events ---------------------------------------------------------------------------


def reflex_event(name: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """An event as `ReflexEvent(name, payload)` with router data forms it (state.js)."""
    return {"name": name, "payload": payload or {}, "router_data": dict(ROUTER_DATA)}


def event_packet(event: Any) -> str:
    """`42/_event,["event", <event>]`: whatever `event` is, forged or not."""
    return f"42{NAMESPACE},{compact(['event', event])}"


def hydrate_event(client_storage: dict[str, Any] | None = None) -> dict[str, Any]:
    """The boot event: the root state's `hydrate_and_load` with the browser's stored values
    (keyed by full var name). No `hashes`: the server then sends the whole state."""
    return reflex_event(f"{ROOT_STATE}.hydrate_and_load", {"vars": dict(client_storage or {})})


def connect_packet(boot_event: dict[str, Any] | None) -> str:
    """The Socket.IO CONNECT packet; without `state_schema` the server skips its schema check,
    as it does for an older frontend."""
    auth = {"event": boot_event} if boot_event is not None else {}
    return f"40{NAMESPACE},{compact(auth)}"


class ReflexTab:
    """One forged browser tab on a raw socket: it sends whatever a test asks, and keeps every
    packet the server sends back (`packets`) so a test can look for a toast or a delta."""

    def __init__(self, sio: SocketIO, token: str) -> None:
        self.sio = sio
        self.token = token
        self.packets: list[str] = []
        #: How the server ended the connection (a SocketError's kind and detail), once it has.
        self.ended: str | None = None

    @classmethod
    async def open(
        cls, host: str, port: int, *, client_storage: dict[str, Any] | None = None,
        token: str | None = None, boot: bool = True,
    ) -> ReflexTab:
        """Connect as a new tab (a fresh token unless given) and, with `boot`, hydrate it with
        `client_storage` the way a page does; returns once the server says it is hydrated."""
        token = token if token is not None else str(uuid.uuid4())
        tab = cls(await SocketIO.open(host, port, token or None, ""), token)
        tab.sio.send(connect_packet(hydrate_event(client_storage) if boot else None))
        if boot:
            await tab.wait_for(lambda packet: HYDRATED_TRUE in packet)
        return tab

    def send(self, name: str, payload: dict[str, Any] | None = None) -> None:
        """Send the event `name` (`<state path>.<handler>`) with `payload` as its kwargs."""
        self.sio.send(event_packet(reflex_event(name, payload)))

    def send_raw(self, text: str) -> None:
        """Send one websocket text message exactly as given (any Engine.IO packet)."""
        self.sio.send(text)

    async def wait_for(self, found: Callable[[str], bool], timeout: float = 10.0) -> str:
        """The first packet from now on for which `found` is true (all are kept in `packets`)."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    packet = await self.sio.recv()
                except SocketError as error:
                    self.ended = str(error)
                    raise
                self.packets.append(packet)
                if found(packet):
                    return packet

    async def until_closed(self, timeout: float = 10.0) -> str:
        """Wait for the server to end the connection; how it did (raises TimeoutError if not)."""
        with contextlib.suppress(SocketError):
            await self.wait_for(lambda _: False, timeout=timeout)
        assert self.ended is not None
        return self.ended

    async def close(self) -> None:
        await self.sio.close()

"""Network faults for tests: a TCP forwarder that can cut, stall or freeze the link to a server."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

_BUFFER = 64 * 1024
# How often the accept loop wakes to notice cut() or close().
_POLL_S = 0.05


def _reset(sock: socket.socket) -> None:
    """Abort `sock` with a TCP RST and wake any thread blocked on it."""
    with contextlib.suppress(OSError):
        # Linger 0: close() sends RST instead of FIN, like a crashed peer.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # close() alone does not wake a blocked recv()
    sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:`port` to a target; `cut`, `stall`, `freeze` and `restore` change what
    it does."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._stalled = False
        #: Connections accepted while stalled or frozen, and never forwarded.
        self.held = 0
        # Cleared by freeze(): pumps hold what they read instead of forwarding it.
        self._flowing = threading.Event()
        self._flowing.set()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self.port = 0
        self._listen()

    @property
    def endpoint_url(self) -> str:
        """http://127.0.0.1:PORT of the proxy."""
        return f"http://127.0.0.1:{self.port}"

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))  # port 0 first, then the same port again
        listener.listen(64)
        listener.settimeout(_POLL_S)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accepting = threading.Thread(target=self._accept_loop, args=(listener,), daemon=True)
        self._accepting.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # listener closed by cut() or close()
            client.settimeout(None)
            self._track(client)
            if self._stalled:
                self.held += 1
                continue  # hold it open, read nothing, send nothing
            try:
                upstream = self._open_upstream()
            except OSError:
                self._drop(client)
                continue
            upstream.settimeout(None)
            self._track(upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _open_upstream(self) -> socket.socket:
        """The connection a newly accepted client is forwarded to."""
        return socket.create_connection(self.target, timeout=5)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy bytes one way until either side ends, then end both."""
        try:
            while data := source.recv(_BUFFER):
                self._flowing.wait()  # frozen: hold the bytes; restore() resets the sockets
                sink.sendall(data)
        except OSError:
            pass
        self._drop(source)
        self._drop(sink)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.add(sock)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            known = sock in self._connections
            self._connections.discard(sock)
        if known:
            _reset(sock)

    def _drop_all(self) -> None:
        with self._lock:
            live, self._connections = self._connections, set()
        for sock in live:
            _reset(sock)

    def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self._accepting is not None:
            self._accepting.join(timeout=2)
            self._accepting = None

    def cut(self) -> None:
        """Reset every live connection and refuse new ones, as if the server went away."""
        self._stop_listening()
        self._drop_all()
        self._flowing.set()  # frozen pumps wake to reset sockets and end

    def stall(self) -> None:
        """Reset live connections; new ones are accepted but nothing is ever forwarded."""
        self._stalled = True
        self._drop_all()
        self._flowing.set()  # frozen pumps wake to reset sockets and end
        if self._listener is None:
            self._listen()

    def freeze(self) -> None:
        """Keep every connection open but forward nothing more, either way; new connections
        are accepted and stalled. A link gone silent mid-conversation while this end's kernel
        still ACKs, so TCP keepalives and `tcp_user_timeout` never notice."""
        self._stalled = True
        self._flowing.clear()

    def restore(self) -> None:
        """Forward normally again, on the same port."""
        self._stalled = False
        self._drop_all()  # stalled connections would hang their clients until timeouts
        self._flowing.set()  # held bytes go nowhere: their sockets were just reset
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        """Stop listening and reset everything."""
        self.cut()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

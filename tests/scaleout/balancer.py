"""A round-robin TCP load balancer without stickiness, for the scale-out tests.

Every new TCP connection (page load, API call, websocket) goes to the next backend; a backend
that refuses the connection (killed) is skipped, as a health-checking balancer would.
"""

from __future__ import annotations

import itertools
import socket
import threading
from collections import Counter

from tests.faults import TcpProxy


class RoundRobinBalancer(TcpProxy):
    """Listens on 127.0.0.1:`port`; spreads connections over `backends` (ports on 127.0.0.1)."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = list(backends)
        self._turn = itertools.cycle(range(len(self.backends)))
        self._turn_lock = threading.Lock()
        #: Connections forwarded to each backend port so far.
        self.forwarded: Counter[int] = Counter()
        #: Backend port of every websocket upgrade (Reflex's /_event), in order.
        self.websockets: list[int] = []
        super().__init__("127.0.0.1", self.backends[0])

    def _open_upstream(self) -> socket.socket:
        last_error: OSError | None = None
        for _ in self.backends:
            with self._turn_lock:
                port = self.backends[next(self._turn)]
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError as error:
                last_error = error
                continue
            with self._turn_lock:
                self.forwarded[port] += 1
            return upstream
        assert last_error is not None
        raise last_error

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        # A client's first bytes say what it asked for: note where websockets go.
        try:
            from_client = source.getsockname()[1] == self.port
            if from_client:
                head = source.recv(512, socket.MSG_PEEK)
                if b"transport=websocket" in head.split(b"\r\n", 1)[0]:
                    with self._turn_lock:
                        self.websockets.append(sink.getpeername()[1])
        except OSError:
            pass
        super()._pump(source, sink)

"""Backend memory per connected client: RSS per idle websocket and per active session.

    python -m bench.memory [--clients 100,500,1000] [--cycles 5] [--cycle-clients 200]
                           [--servers auto,granian,gunicorn-stock]

Serves the app as `make run` does (tests/e2e/server.py: migrate, `reflex run --env prod
--single-port`, SQLite, disk state manager, 1 worker) on a fresh data dir in tmpfs, once per
server: `auto` is what `make run` serves (gunicorn with `chat_app.uvicorn_worker.Worker`, chosen
by rxconfig.py), `granian` is Reflex's default server without gunicorn (the comparison row), and
`gunicorn-stock` is gunicorn with Reflex's own uvicorn worker class. With every
rate limit raised, then opens websockets to Reflex's `/_event` endpoint from this process. The
client is a small Engine.IO 4 / Socket.IO 5 client over `wsproto` (installed with Reflex),
asyncio, one task per connection; it sends what Chromium sends: the `token` query parameter, the
Reflex version as subprotocol, an offer of `permessage-deflate`, the boot event inside the CONNECT
packet, and it answers the server's pings. Three kinds of client, each ramped to 100, 500, 1000:

- websocket only: the Engine.IO handshake, no Socket.IO CONNECT (the transport's own cost);
- idle: CONNECT carrying `State.hydrate` (the state tree is created with defaults and its
  snapshot sent), no page-load flow;
- active: CONNECT carrying `State.hydrate_and_load`, exactly like a browser's first visit: the
  page's on_load (`SessionState.load_session`) issues a session (database row, audit row) and
  the client waits for `is_hydrated` = true.

Memory: VmRSS summed over the server's process tree (`reflex run`, granian's or gunicorn's
supervisor, the worker), read from /proc once it is stable after the last client of a step.
Per client = (RSS with N clients of that kind - RSS before that kind's first client) / N. The
kinds are measured one after the other in the same server, and earlier clients stay connected,
so no measurement reuses memory freed by an earlier one. Baseline, same server: the RSS before
any client. Then some active clients go through connect/disconnect cycles with the same tokens and
session ids (a reload of the same tab), RSS read after each step: no leak = no steady growth.
Target (the issue): ≤ 60 kB per idle client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import resource
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    add_repo_root,
    add_results_option,
    markdown_table,
    publish,
    verdict,
)

MODULE = "bench.memory"
KB = 1000
MB = 1000 * 1000
TARGET_PER_IDLE = 60 * KB
CONCURRENCY = 32
STATE = "reflex___state____state"
SID_VAR = f"{STATE}.chat_app___state___session____session_state.sid_rx_state_"
RAISED_LIMITS = ",".join(
    f"{name}=1000000/minute"
    for name in ("create", "validate", "failed_validate", "reset", "messages", "upload", "read")
)
KINDS = ("websocket only", "idle (hydrate)", "active (hydrate_and_load)")


# --- a minimal Socket.IO client --------------------------------------------------------------


class ReflexSocket:
    """One browser tab's websocket to `/_event`, Engine.IO 4 + Socket.IO 5 over wsproto."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self.sid = ""  # the app's session id, kept across reconnects like localStorage["sid"]
        self.extensions: list[str] = []  # what the server accepted (permessage-deflate or not)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task | None = None
        self._waiting: tuple[Callable[[str], bool], asyncio.Future] | None = None
        self._buffer: list[str] = []

    async def open(self, boot_event: str | None) -> None:
        """Websocket handshake and Engine.IO open; then, for a boot event, the Socket.IO
        CONNECT carrying it, until that event's work has reached this client."""
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, Request
        from wsproto.extensions import PerMessageDeflate

        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._buffer = []
        host = f"{self.host}:{self.port}"
        self._writer.write(self._ws.send(Request(
            host=host,
            target=f"/_event/?token={self.token}&EIO=4&transport=websocket",
            subprotocols=[importlib.metadata.version("reflex")],
            extensions=[PerMessageDeflate(client_max_window_bits=15)],  # as Chromium offers
            extra_headers=[(b"origin", f"http://{host}".encode())],
        )))
        accepted: AcceptConnection | None = None
        while accepted is None:
            data = await self._reader.read(65536)
            if not data:
                raise ConnectionError("closed during the websocket handshake")
            self._ws.receive_data(data)
            for event in self._ws.events():  # stop at the answer: later frames stay queued
                if isinstance(event, AcceptConnection):
                    accepted = event
                    break
        self.extensions = [str(extension) for extension in accepted.extensions]
        opened = self._expect(lambda text: text.startswith("0{"))
        self._handle_events()  # the Engine.IO open packet may have come with the handshake
        self._task = asyncio.create_task(self._read_forever())
        await opened
        if boot_event is None:
            return
        payload = {} if not self.sid else {"vars": {SID_VAR: self.sid}}
        auth = {"event": {"name": f"{STATE}.{boot_event}", "payload": payload,
                          "router_data": {"pathname": "/", "asPath": "/"}}}
        done = (self._hydrated if boot_event == "hydrate_and_load"
                else lambda text: text.startswith("42/_event,"))
        finished = self._expect(done)
        self._send("40/_event," + json.dumps(auth, separators=(",", ":")))
        await finished

    def _hydrated(self, text: str) -> bool:
        if '"sid_rx_state_":"' in text:
            self.sid = text.split('"sid_rx_state_":"', 1)[1][:36]
        return '"is_hydrated_rx_state_":true' in text

    def _expect(self, predicate: Callable[[str], bool]) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._waiting = (predicate, future)
        return asyncio.wait_for(future, 60)

    def _send(self, text: str) -> None:
        from wsproto.events import Message

        assert self._writer is not None
        self._writer.write(self._ws.send(Message(data=text)))

    async def _read_forever(self) -> None:
        assert self._reader is not None
        while data := await self._reader.read(65536):
            self._ws.receive_data(data)
            if not self._handle_events():
                return

    def _handle_events(self) -> bool:
        """Process every parsed websocket event; False once the server closed."""
        from wsproto.events import CloseConnection, Ping, TextMessage

        for event in self._ws.events():
            if isinstance(event, Ping):
                self._writer.write(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                return False
            elif isinstance(event, TextMessage):
                self._buffer.append(event.data)
                if event.message_finished:
                    self._on_text("".join(self._buffer))
                    self._buffer.clear()
        return True

    def _on_text(self, text: str) -> None:
        if text == "2":  # Engine.IO ping: answer, or the server drops the client
            self._send("3")
        elif self._waiting is not None and self._waiting[0](text):
            future = self._waiting[1]
            self._waiting = None
            if not future.done():
                future.set_result(text)

    async def close(self) -> None:
        """Socket.IO disconnect, websocket close, TCP close (what a closing tab does)."""
        from wsproto.events import CloseConnection

        if self._writer is None:
            return
        with contextlib.suppress(Exception):
            self._send("41/_event,")
            self._writer.write(self._ws.send(CloseConnection(code=1000)))
            await self._writer.drain()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await self._task
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        self._reader = self._writer = self._task = None


async def open_all(sockets: list[ReflexSocket], boot_event: str | None) -> None:
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(socket: ReflexSocket) -> None:
        async with limit:
            await socket.open(boot_event)

    await asyncio.gather(*(one(socket) for socket in sockets))


async def close_all(sockets: list[ReflexSocket]) -> None:
    limit = asyncio.Semaphore(CONCURRENCY * 4)

    async def one(socket: ReflexSocket) -> None:
        async with limit:
            await socket.close()

    await asyncio.gather(*(one(socket) for socket in sockets))


# --- server memory ---------------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """`root` and every descendant, from /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def tree_rss(root: int) -> int:
    """Sum of VmRSS over the process tree of `root`, in bytes."""
    total = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


async def settled_rss(root: int) -> int:
    """The tree's RSS once it has stopped moving: polled every 0.5 s from 1 s on, until two
    reads differ by less than 1 MB (at most 10 s), so pending work has finished."""
    await asyncio.sleep(1.0)
    previous = tree_rss(root)
    for _ in range(18):
        await asyncio.sleep(0.5)
        current = tree_rss(root)
        if abs(current - previous) < MB:
            return current
        previous = current
    return previous


# --- the measurement -------------------------------------------------------------------------


@dataclass
class ServerResult:
    server: str
    deflate: bool = False
    baseline: int = 0
    # kind -> [(clients, RSS with them, seconds to connect the step)]
    ramps: dict[str, list[tuple[int, int, float]]] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)
    cycles: list[tuple[int, int]] = field(default_factory=list)  # (RSS connected, after close)
    seconds: float = 0.0


async def run_server(result: ServerResult, url: str, pid: int, steps: list[int],
                     cycles: int, cycle_clients: int) -> None:
    started = time.perf_counter()
    host, port = url.split("//", 1)[1].split(":")

    def new(count: int) -> list[ReflexSocket]:
        return [ReflexSocket(host, int(port), str(uuid.uuid4())) for _ in range(count)]

    # Warm-up: first-use imports and caches of every code path, not charged to the clients.
    warm = new(10)
    for boot in (None, "hydrate", "hydrate_and_load"):
        await open_all(warm, boot)
        result.deflate = any("PerMessageDeflate" in ext for ext in warm[0].extensions)
        await close_all(warm)
    result.baseline = await settled_rss(pid)
    kept: list[list[ReflexSocket]] = []
    for kind, boot in zip(KINDS, (None, "hydrate", "hydrate_and_load"), strict=True):
        result.starts[kind] = tree_rss(pid)
        sockets: list[ReflexSocket] = []
        result.ramps[kind] = []
        for target in steps:
            step_started = time.perf_counter()
            step = new(target - len(sockets))
            await open_all(step, boot)
            sockets += step
            seconds = time.perf_counter() - step_started
            result.ramps[kind].append((target, await settled_rss(pid), seconds))
        kept.append(sockets)
    active = kept[-1][:cycle_clients]
    await close_all([socket for sockets in kept for socket in sockets if socket not in active])
    for index in range(cycles + 1):
        if index:
            await open_all(active, "hydrate_and_load")
        connected = await settled_rss(pid)
        await close_all(active)
        result.cycles.append((connected, await settled_rss(pid)))
    result.seconds = time.perf_counter() - started


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < needed:
        raise SystemExit(f"need {needed} file descriptors, `ulimit -n` allows fewer")


def gunicorn_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("gunicorn", "uvicorn"))


# name -> (what it is, environment overrides that select it); rows are labelled with the name.
SERVERS: dict[str, tuple[str, dict[str, str]]] = {
    "gunicorn": (
        "what `make run` serves: gunicorn + `chat_app.uvicorn_worker.Worker` (wsproto, no "
        "permessage-deflate), chosen by rxconfig.py",
        {"REFLEX_USE_GRANIAN": "false"},
    ),
    "granian": (
        "Reflex's server when gunicorn is not installed (`REFLEX_USE_GRANIAN=true`)",
        {"REFLEX_USE_GRANIAN": "true"},
    ),
    "gunicorn-stock": (
        "gunicorn + Reflex's own `uvicorn.workers.UvicornH11Worker` (permessage-deflate accepted)",
        {"REFLEX_USE_GRANIAN": "false",
         "GUNICORN_CMD_ARGS": "--worker-class uvicorn.workers.UvicornH11Worker"},
    ),
}


def server_env(server: str) -> dict[str, str] | None:
    """Environment overrides that select `server`, or None when it is not installed."""
    if server not in SERVERS:
        raise SystemExit(f"unknown server {server!r}: {', '.join(SERVERS)} or auto")
    env = {"CHAT_APP_RATE_LIMITS": RAISED_LIMITS, "CHAT_APP_SWEEP_INTERVAL_MINUTES": "0"}
    if server.startswith("gunicorn") and not gunicorn_installed():
        return None
    return {**env, **SERVERS[server][1]}


def auto_server() -> str:
    """What `make run` serves: gunicorn unless REFLEX_USE_GRANIAN says granian (rxconfig.py sets
    it to false when unset) or gunicorn is missing (then Reflex falls back to granian)."""
    if os.environ.get("REFLEX_USE_GRANIAN", "").lower() in ("1", "true", "yes", "y"):
        return "granian"
    return "gunicorn" if gunicorn_installed() else "granian"


# --- tables ----------------------------------------------------------------------------------


def per_client_table(results: list[ServerResult]) -> str:
    rows = []
    for result in results:
        deflate = "permessage-deflate" if result.deflate else "no compression"
        rows.append([f"**{result.server}** ({deflate}): baseline, no client", "-",
                     f"{result.baseline / MB:.1f}", "-", "-", ""])
        for kind in KINDS:
            start = result.starts[kind]
            for clients, rss, seconds in result.ramps[kind]:
                per = (rss - start) / clients
                check = verdict(per <= TARGET_PER_IDLE) if kind == KINDS[1] else ""
                rows.append([f"{result.server}: {kind}", clients, f"{rss / MB:.1f}",
                             f"{per / KB:.1f}", f"{seconds:.1f}", check])
    return markdown_table(
        "Backend RSS per connected client",
        MODULE,
        ["Server: clients", "N", "Server RSS MB", "kB per client", "Connect s", "≤ 60 kB/idle"],
        rows,
        notes=[
            "Server RSS = VmRSS summed over the `reflex run` process tree (supervisor + 1 "
            "worker) once it is stable after the step's last client is ready; "
            "MB/kB = 10^6/10^3 bytes.",
            "kB per client = (RSS with N clients of the kind - RSS before the kind's first "
            "client) / N. Websocket-only, then idle, then active clients, the earlier ones still "
            "connected, so no step reuses memory another freed. Every client is a new "
            "connection: idle and active include the websocket's own cost.",
            "Websocket only = Engine.IO open, no Socket.IO CONNECT; idle = CONNECT carrying "
            "`State.hydrate`; active = CONNECT carrying `State.hydrate_and_load` as a browser's "
            "first visit (session issued, `is_hydrated` true). The client offers "
            "permessage-deflate as Chromium does; the row names what the server accepted.",
            "Servers: " + "; ".join(f"{result.server} = {SERVERS[result.server][0]}"
                                     for result in results) + ".",
            "State manager: disk (the default), SQLite in a tmpfs data dir, rate limits raised, "
            f"{CONCURRENCY} connections opened at a time.",
        ],
    )


def cycles_table(results: list[ServerResult], cycle_clients: int) -> str:
    rows = []
    for result in results:
        first = result.cycles[0][1]
        for index, (connected, after) in enumerate(result.cycles):
            label = "0 (connected by the ramp)" if index == 0 else str(index)
            rows.append([result.server, label, f"{connected / MB:.1f}", f"{after / MB:.1f}",
                         f"{(after - first) / MB:+.1f}"])
        after = [after for _, after in result.cycles[2:]]
        if len(after) > 1:
            slope = least_squares_slope(after)
            rows.append([result.server, f"slope of cycles 2-{len(result.cycles) - 1}", "", "",
                         f"{slope / KB:+.0f} kB/cycle = {slope / cycle_clients:+.0f} B/client"])
    return markdown_table(
        f"Backend RSS over connect/disconnect cycles of the same {cycle_clients} active clients",
        MODULE,
        ["Server", "Cycle", "RSS connected MB", "RSS after disconnect MB",
         "After disconnect vs cycle 0, MB"],
        rows,
        notes=[
            "Each cycle reconnects the same tokens with the session id the app issued (a reload "
            "of the same tabs: the session is resumed), waits for `is_hydrated`, then closes "
            "every socket; RSS read once stable after each step.",
            "The other clients of the ramp were closed before cycle 0's disconnect; the states "
            "of every token stay in the state manager until `redis_token_expiration` (1 h). "
            "The server hands the ramp's memory back to the OS over the next seconds, so "
            "cycle 1 can read low; the slope (least squares, per cycle) starts at cycle 2.",
            "Time per server (warm-up, ramps, cycles; start-up excluded): "
            + ", ".join(f"{r.server} {r.seconds:.0f} s" for r in results)
            + f". Load average at the end: {os.getloadavg()[0]:.1f} (shared machine).",
        ],
    )


def least_squares_slope(values: list[int]) -> float:
    """Growth per step of the best straight line through `values`."""
    mean_x, mean_y = (len(values) - 1) / 2, sum(values) / len(values)
    return sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values)) / sum(
        (x - mean_x) ** 2 for x in range(len(values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="100,500,1000",
                        help="ramp steps, comma separated (default %(default)s)")
    parser.add_argument("--cycles", type=int, default=5,
                        help="connect/disconnect cycles of active clients (default 5)")
    parser.add_argument("--cycle-clients", type=int, default=200,
                        help="active clients in each cycle (default 200)")
    parser.add_argument(
        "--servers", default="auto,granian",
        help="comma separated, each measured in its own server: auto = what `make run` serves "
             f"(gunicorn), {', '.join(SERVERS)} (default %(default)s)")
    add_results_option(parser)
    args = parser.parse_args()
    steps = sorted(int(value) for value in args.clients.split(","))
    raise_fd_limit(3 * steps[-1] + 256)
    add_repo_root()
    from tests.e2e.server import start_app

    servers: list[str] = []
    for name in args.servers.split(","):
        server = auto_server() if name == "auto" else name
        if server not in servers:
            servers.append(server)
    shm = Path("/dev/shm")
    results: list[ServerResult] = []
    skipped: list[str] = []
    failed: list[str] = []
    for server in servers:
        env = server_env(server)
        if env is None:
            skipped.append(server)
            continue
        # tmpfs: SQLite's fsyncs would otherwise set the pace of the active clients.
        with tempfile.TemporaryDirectory(prefix="bench-memory-",
                                         dir=shm if shm.is_dir() else None) as folder:
            try:
                app = start_app(Path(folder) / "data", **env)
            except RuntimeError as error:  # report the others; the log tail says why
                print(error)
                failed.append(server)
                continue
            try:
                result = ServerResult(server)
                asyncio.run(run_server(result, app.url, app.process.pid, steps, args.cycles,
                                       min(args.cycle_clients, steps[-1])))
                results.append(result)
            finally:
                app.stop()
    if skipped:
        print(f"skipped, gunicorn or uvicorn not installed: {', '.join(skipped)}")
    if not results:
        raise SystemExit("no server could run")
    if failed:
        print(f"did not start: {', '.join(failed)}")
    publish(per_client_table(results), args.results)
    publish(cycles_table(results, min(args.cycle_clients, steps[-1])), args.results)
    if failed:
        raise SystemExit(f"did not start: {', '.join(failed)}")


if __name__ == "__main__":
    main()

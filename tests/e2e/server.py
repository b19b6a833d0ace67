"""Serve the real app the way `make run` does (migrate, then `reflex run --env prod`), for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.leaks import WATCH

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 900  # the first production build runs `npm install` (~2 min on 2 cores)

# Generous limits: the browser tests create many sessions from one IP within a minute.
TEST_RATE_LIMITS = (
    "create=1000/minute,validate=1000/minute,failed_validate=1000/minute,reset=1000/minute,"
    "read=1000/minute"
)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment `make run` sets, plus a private data dir and test overrides."""
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "REFLEX_USE_NPM": "1",
        "REFLEX_TELEMETRY_ENABLED": "false",
        "REFLEX_CHECK_LATEST_VERSION": "false",
        "CHAT_APP_DATA_DIR": str(data_dir),
        "CHAT_APP_RATE_LIMITS": TEST_RATE_LIMITS,
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env.update(extra)
    return env


@dataclass
class ServedApp:
    """A running `reflex run --env prod --single-port` process."""

    url: str
    process: subprocess.Popen
    log_path: Path
    data_dir: Path

    def log_tail(self, lines: int = 60) -> str:
        """The end of the server's output, for failure messages."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server and every child (npm, the server's workers)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        # SPEC 11.7: none of this server's session ids in its log or its audit rows.
        WATCH.scan_served_app(self.data_dir, self.log_path)


def start_app(data_dir: Path, *, port: int | None = None, **env_overrides: str) -> ServedApp:
    """Migrate the database (a fresh one in `data_dir` by default), then build and serve the
    production app on `port` (a free one by default)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = app_env(data_dir, **env_overrides)
    subprocess.run(
        [str(BIN / "reflex"), "db", "migrate"], cwd=PROJECT_ROOT, env=env, check=True,
        capture_output=True, timeout=120,
    )
    port = port or free_port()
    command = [str(BIN / "reflex"), "run", "--env", "prod", "--single-port",
               "--frontend-port", str(port), "--backend-port", str(port)]
    return serve(command, data_dir, port, env)


def serve(command: list[str], data_dir: Path, port: int, env: dict[str, str]) -> ServedApp:
    """Run `command` (a server on `port`) in its own process group; return once it answers."""
    log_path = data_dir / "server.log"
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=log_path.open("w"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )
    served = ServedApp(f"http://localhost:{port}", process, log_path, data_dir)
    try:
        wait_until_up(served)
    except BaseException:
        served.stop()
        raise
    return served


def wait_until_up(served: ServedApp) -> None:
    """Until `served` answers /ping and its page; raises with its log tail otherwise."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(f"the app exited early:\n{served.log_tail()}")
        try:
            with urllib.request.urlopen(f"{served.url}/ping", timeout=2) as ping, \
                    urllib.request.urlopen(f"{served.url}/", timeout=5) as page:
                if ping.status == 200 and page.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    raise TimeoutError(f"the app did not answer within {START_TIMEOUT_S} s:\n{served.log_tail()}")

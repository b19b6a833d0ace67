"""API benchmark: `GET /api/v1/session` under concurrent load vs a bare FastAPI endpoint.

    python -m bench.api [--runs R] [--seconds S] [--concurrency C] [--databases sqlite,postgresql]

Per database (a fresh migrated SQLite file, or a fresh PostgreSQL database made with
tests/conftest.py's `create_postgres_database`), 1,000 sessions are created through
`SessionService.create`, then two servers are started, each in its own uvicorn process (one
worker, a free port, `--log-level warning --no-access-log`):

- ours: `create_api(build_services(Settings()))` (`ours_app` below), with every rate limit the
  route touches set to 100,000,000/minute, a fresh data dir and the in-memory limiter;
- bare: one FastAPI route, `GET /api/v1/session` (`bare_app` below), that reads X-Session-Id,
  runs `select(UserSession).where(UserSession.uuid == sid)` through the same engine factory
  (`chat_app.db.get_engine`) and returns the same five fields (404 when there is no row).

The load client runs in its own process: asyncio + httpx2, C keep-alive connections, each
looping over the 1,000 ids; a 1 s warm-up, then S seconds measured. Requests that complete in
the measured window count towards requests/s and the latency percentiles; any non-200 answer
(or a body without the id asked for) is an error. Each run measures both sides, order alternated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel
from sqlmodel import Session, select

from bench.common import (
    ROOT,
    add_repo_root,
    add_results_option,
    fmt_runs,
    markdown_table,
    median,
    publish,
    verdict,
)
from chat_app.db import get_engine
from chat_app.models import UserSession

MODULE = "bench.api"
RATIO_TARGET = 0.7
SESSIONS = 1000
WARM_UP_S = 1.0
PATH = "/api/v1/session"
HEADER = "X-Session-Id"
DATABASES = ("sqlite", "postgresql")
HIGH = "100000000/minute"
RATE_LIMITS = f"validate={HIGH},failed_validate={HIGH},read={HIGH}"
SERVER_START_TIMEOUT_S = 60
#: Environment variables of the parent that must not reach the servers (deterministic setup).
DROPPED_ENV = ("REDIS_URL", "CHAT_APP_S3_BUCKET", "CHAT_APP_S3_ENDPOINT_URL",
               "OPENAI_BASE_URL", "OPENAI_API_KEY", "CHAT_APP_TRUSTED_PROXY_HOPS")


# --- the two apps, built by `uvicorn --factory` in the server processes ----------------------


def ours_app() -> FastAPI:
    """Our API exactly as Reflex mounts it, configured from the environment."""
    from chat_app.api.app import create_api
    from chat_app.container import build_services
    from chat_app.settings import Settings

    return create_api(build_services(Settings()))


class BareSession(BaseModel):
    """The baseline's answer: the fields of our `SessionPublic`."""

    session_id: str
    status: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


def bare_app() -> FastAPI:
    """The baseline: the same indexed look-up and the same fields, nothing else."""
    engine = get_engine(os.environ["DATABASE_URL"])
    idle, max_age = timedelta(days=14), timedelta(days=90)  # the Settings defaults
    app = FastAPI()

    @app.get(PATH)
    def get_session(x_session_id: Annotated[str | None, Header()] = None) -> BareSession:
        with Session(engine) as db:
            row = db.exec(select(UserSession).where(UserSession.uuid == x_session_id)).first()
        if row is None:
            raise HTTPException(status_code=404)
        return BareSession(
            session_id=row.uuid,
            status=row.status,
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            expires_at=min(row.last_seen_at + idle, row.created_at + max_age),
        )

    return app


# --- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(database_url: str, data_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in DROPPED_ENV}
    env.update(
        DATABASE_URL=database_url,
        CHAT_APP_DATA_DIR=str(data_dir),
        CHAT_APP_SECRET_KEY="bench-secret",
        CHAT_APP_RATE_LIMITS=RATE_LIMITS,
        CHAT_APP_ASSISTANT="retrieval",
        PYTHONUNBUFFERED="1",
    )
    return env


class Server:
    """`bench.api:<factory>` under uvicorn, in its own process group (so it is killed whole)."""

    def __init__(self, factory: str, env: dict[str, str], log: Path) -> None:
        self.factory = factory
        self.log = log
        self.url = f"http://127.0.0.1:{free_port()}"
        with log.open("wb") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", f"bench.api:{factory}",
                 "--host", "127.0.0.1", "--port", self.url.rsplit(":", 1)[1],
                 "--workers", "1", "--log-level", "warning", "--no-access-log"],
                cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, probe_id: str) -> None:
        """Until `GET /session` for `probe_id` answers 200 (a server that died raises)."""
        import httpx2

        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.factory}: server exited ({self.process.returncode}):"
                                   "\n" + self.log.read_text(errors="replace"))
            with contextlib.suppress(httpx2.TransportError):
                answer = httpx2.get(self.url + PATH, headers={HEADER: probe_id}, timeout=5)
                if answer.status_code != 200:
                    raise RuntimeError(f"{self.factory}: GET {PATH} answered "
                                       f"{answer.status_code}: {answer.text}")
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.factory}: server did not start within "
                                   f"{SERVER_START_TIMEOUT_S} s")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it has not gone within 5 s."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


# --- the load client (its own process) -------------------------------------------------------


async def _load(url: str, ids: list[str], concurrency: int, seconds: float) -> dict[str, Any]:
    import httpx2

    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    errors = 0
    next_index = itertools.count()
    encoded = [sid.encode() for sid in ids]
    async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        measure_from = time.perf_counter() + WARM_UP_S
        until = measure_from + seconds

        async def worker() -> None:
            nonlocal errors
            while (started := time.perf_counter()) < until:
                index = next(next_index) % len(ids)
                try:
                    answer = await client.get(PATH, headers={HEADER: ids[index]})
                    ok = answer.status_code == 200 and encoded[index] in answer.content
                except httpx2.HTTPError:
                    ok = False
                done = time.perf_counter()
                if not ok:
                    errors += 1
                elif measure_from <= done <= until:
                    latencies.append(done - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"latencies": latencies, "errors": errors}


def _client_loop(jobs: Any) -> None:
    """The client process: one measurement per job received, until None."""
    while (job := jobs.recv()) is not None:
        jobs.send(asyncio.run(_load(*job)))


@dataclass
class Run:
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int


class LoadClient:
    """The load client's process, started once (spawn) and given one measurement at a time."""

    def __enter__(self) -> LoadClient:
        spawn = multiprocessing.get_context("spawn")
        self._jobs, child_end = spawn.Pipe()
        self._process = spawn.Process(target=_client_loop, args=(child_end,), daemon=True,
                                      name="bench-api-client")
        self._process.start()
        child_end.close()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(OSError):
            self._jobs.send(None)
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._jobs.close()

    def measure(self, url: str, ids: list[str], concurrency: int, seconds: float) -> Run:
        """A warm-up, then `seconds` of load from `concurrency` connections."""
        self._jobs.send((url, ids, concurrency, seconds))
        try:
            if not self._jobs.poll(WARM_UP_S + seconds + 60):
                raise RuntimeError("the load client did not report within a minute")
            result = self._jobs.recv()
        except EOFError:
            raise RuntimeError(f"the load client died ({self._process.exitcode})") from None
        latencies = result["latencies"]
        if len(latencies) < 2:
            raise RuntimeError(f"only {len(latencies)} successful request(s) in the window")
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        return Run(len(latencies) / seconds, cuts[49] * 1000, cuts[94] * 1000,
                   cuts[98] * 1000, result["errors"])


# --- the benchmark ---------------------------------------------------------------------------


@dataclass
class Side:
    name: str
    factory: str
    runs: list[Run] = field(default_factory=list)

    def values(self, attribute: str) -> list[float]:
        return [getattr(run, attribute) for run in self.runs]

    def measure(self, client: LoadClient, url: str, ids: list[str], concurrency: int,
                seconds: float) -> Run:
        run = client.measure(url, ids, concurrency, seconds)
        self.runs.append(run)
        print(f"  {self.name}: {run.requests_per_s:.0f} req/s, p50 {run.p50_ms:.1f} ms, "
              f"p95 {run.p95_ms:.1f} ms, p99 {run.p99_ms:.1f} ms, errors {run.errors}",
              flush=True)
        return run


@contextlib.contextmanager
def database(kind: str, temp: Path) -> Iterator[str]:
    """A fresh, migrated database of `kind`; a PostgreSQL one is dropped afterwards."""
    from chat_app.migrations import upgrade

    if kind == "sqlite":
        url = f"sqlite:///{temp / 'chat_app.db'}"
        try:
            upgrade(url)
            yield url
        finally:
            get_engine(url).dispose()
        return
    from tests.conftest import create_postgres_database, drop_postgres_database

    url = create_postgres_database()
    try:
        upgrade(url)
        yield url
    finally:
        drop_postgres_database(url)


def seed(database_url: str, data_dir: Path) -> list[str]:
    """Create the sessions through the services; their ids."""
    from chat_app.container import build_services
    from chat_app.services.audit import RequestContext
    from chat_app.settings import Settings

    settings = Settings(CHAT_APP_DATA_DIR=str(data_dir), DATABASE_URL=database_url,
                        CHAT_APP_SECRET_KEY="bench-secret", CHAT_APP_ASSISTANT="retrieval")
    services = build_services(settings)
    ctx = RequestContext(actor="api", ip="127.0.0.1", user_agent="bench.api")
    return [services.sessions.create(ctx, reason="api").uuid for _ in range(SESSIONS)]


def same_shape(ours_url: str, bare_url: str, session_id: str) -> None:
    """Both endpoints answer the same fields with the same values for one session."""
    import httpx2

    bodies = [httpx2.get(url + PATH, headers={HEADER: session_id}, timeout=10).json()
              for url in (ours_url, bare_url)]
    if bodies[0] != bodies[1]:
        raise RuntimeError(f"ours and bare answer differently: {bodies[0]} != {bodies[1]}")


def bench_database(kind: str, args: argparse.Namespace, client: LoadClient) -> tuple[Side, Side]:
    ours = Side("ours", "ours_app")
    bare = Side("bare", "bare_app")
    with tempfile.TemporaryDirectory(prefix=f"chat-app-bench-api-{kind}-") as temp_name, \
            contextlib.ExitStack() as servers:
        temp = Path(temp_name)
        url = servers.enter_context(database(kind, temp))
        env = server_env(url, temp / "data")
        (temp / "data").mkdir()
        # Both servers import and start while the sessions are created.
        started = {}
        for side in (ours, bare):
            server = started[side.name] = Server(side.factory, env, temp / f"{side.name}.log")
            servers.callback(server.stop)
        ids = seed(url, temp / "data")
        for server in started.values():
            server.wait_ready(ids[0])
        print(f"{kind}: {len(ids)} sessions, both servers up", flush=True)
        same_shape(started[ours.name].url, started[bare.name].url, ids[0])
        for run in range(args.runs):
            print(f"{kind}: run {run + 1}/{args.runs}", flush=True)
            for side in ([ours, bare] if run % 2 == 0 else [bare, ours]):
                side.measure(client, started[side.name].url, ids, args.concurrency,
                             args.seconds)
    return ours, bare


def rows_for(kind: str, ours: Side, bare: Side) -> list[tuple[str, ...]]:
    ours_rps, bare_rps = ours.values("requests_per_s"), bare.values("requests_per_s")
    ratio = median(ours_rps) / median(bare_rps)
    per_run = ", ".join(f"{a / b:.2f}" for a, b in zip(ours_rps, bare_rps, strict=True))

    def cells(side: Side) -> tuple[str, ...]:
        return (fmt_runs(side.values("requests_per_s"), ".0f"),
                fmt_runs(side.values("p50_ms"), ".1f"), fmt_runs(side.values("p95_ms"), ".1f"),
                fmt_runs(side.values("p99_ms"), ".1f"), str(sum(side.values("errors"))))

    return [
        (kind, "ours: `create_api` GET /session", *cells(ours),
         f"{ratio:.2f}" + (f" (per run: {per_run})" if len(ours_rps) > 1 else ""),
         f"≥ {RATIO_TARGET}: {verdict(ratio >= RATIO_TARGET)}"),
        (kind, "baseline: bare FastAPI select", *cells(bare), "1.00", ""),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=3, help="measured runs of each side")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="measured seconds per run, after a 1 s warm-up")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent connections")
    parser.add_argument("--databases", default=",".join(DATABASES),
                        help="comma-separated: sqlite, postgresql (default: %(default)s)")
    add_results_option(parser)
    args = parser.parse_args(argv)
    kinds = [part.strip() for part in args.databases.split(",") if part.strip()]
    if not kinds or any(kind not in DATABASES for kind in kinds):
        parser.error("--databases takes sqlite, postgresql or both, comma-separated")
    if args.runs < 1 or args.seconds <= 0 or args.concurrency < 1:
        parser.error("--runs and --concurrency must be at least 1, --seconds positive")
    add_repo_root()
    # SIGTERM (e.g. from make or a CI timeout) unwinds like an error: servers stopped, the
    # client process ended, PostgreSQL databases dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    started = time.perf_counter()
    rows: list[tuple[str, ...]] = []
    with LoadClient() as client:
        for kind in kinds:
            rows += rows_for(kind, *bench_database(kind, args, client))
    elapsed = time.perf_counter() - started
    notes = [
        f"{SESSIONS:,} sessions created through `SessionService.create`; the client cycles "
        f"through their ids over {args.concurrency} keep-alive connections (asyncio + httpx2, "
        f"its own process), {WARM_UP_S:.0f} s warm-up then {args.seconds:g} s measured, "
        f"{args.runs} run(s) per side, order alternated; medians with each run in brackets.",
        "Requests/s and latencies count the requests completed in the measured window; "
        "errors count every non-200 answer (or a body without the id) of the whole run.",
        "Each server: uvicorn, one worker, its own process, `--log-level warning "
        "--no-access-log` (asyncio loop, h11). Ours: `create_api(build_services(Settings()))`, "
        f"`CHAT_APP_RATE_LIMITS` {HIGH} for validate, failed_validate and read, in-memory "
        "limiter (no REDIS_URL), fresh data dir. Bare: one sync route, the same `select` by "
        "uuid through `chat_app.db.get_engine`, the same five fields (pydantic model).",
        "Ours resumes (SELECT; a touch, i.e. UPDATE + audit row, at most once a minute per "
        "session, so none within the first minute after seeding) behind the request-meta "
        "middleware, the validate/failed_validate rate-limit checks and the problem handlers.",
        f"The machine has {os.cpu_count()} cores: the load client competes with the server "
        "(and PostgreSQL) for CPU. Both sides get the same client, so the ratio is fair; the "
        "absolute numbers are lower than on a machine with spare cores.",
        f"Wall time of the whole benchmark: {elapsed:.0f} s.",
    ]
    publish(markdown_table(
        "API: GET /api/v1/session under load", MODULE,
        ("Database", "Endpoint", "Requests/s: median (each run)", "p50 ms", "p95 ms", "p99 ms",
         "Errors", "Ratio vs baseline (req/s)", "Target"), rows, notes,
    ), args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

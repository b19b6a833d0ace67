"""Soak: N simulated browsers for S seconds against the served app, then consistency checks.

    python -m bench.soak [--clients 200] [--seconds 60] [--database postgresql|sqlite]
                         [--store s3|local] [--no-redis] [--redis-db 9] [--limits spec|raised]
                         [--serve app|backend|api] [--restart-store [--store-down 5]]
                         [--read-back]

Serves the app as `make run` does (tests/e2e/server.py: `reflex db migrate`, then `reflex run
--env prod --single-port`, one granian worker) in its production configuration by default
(tests/scaleout/cluster.py's `cluster_env`: a fresh PostgreSQL database, Redis database 9 flushed
at start, SeaweedFS through tests/seaweed.py), with the offline retrieval assistant.

Each simulated browser keeps its session id as a browser keeps it in local storage and loops
over the REST API (asyncio + httpx, one keep-alive connection per browser): load the page
(`POST /session` on the first visit, `GET /session` afterwards), send 5 messages (JSON replies),
upload 1 small text file, reset (the new id is kept for the next loop). Any answer other than
the expected status (201/200/200/201/201), a wrong body, or an exception is an error.

Rate limits: the SPEC defaults by default (`--limits spec`): every browser sends its own
`X-Forwarded-For` address and the app trusts one proxy hop (`CHAT_APP_TRUSTED_PROXY_HOPS=1`), so
the per-IP limits apply per browser as in production. `--limits raised` sets every limit to
1,000,000/minute and sends no `X-Forwarded-For` (all browsers share 127.0.0.1).

Afterwards: `POST /admin/sweep` (admin token, grace 0), then SPEC 11's invariants checked
against the database and the store (tests/invariants.py for 2 and 3) and the audit trail
compared with what the clients saw. The exit status is non-zero only when the benchmark itself
breaks (the app does not start); errors and failed checks are reported in the tables.

`--restart-store` is the fault run (bench/soak_faults.py): SeaweedFS killed a third of the way in
and started again, every upload's answer recorded, every 201 read back, and checks that nothing
told 201 was lost and that every failure was a clear 503. `--serve backend` serves an existing
build without `reflex run`'s build checks; `--serve api` only the REST API (the bounded test).
`run()` returns the checks, for tests/scaleout/test_soak_store_restart.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import ROOT, add_repo_root, add_results_option, markdown_table, median, publish
from bench.soak_faults import (
    KEEPER_EVERY,
    KEEPER_PAUSE_S,
    PHASE_HEADERS,
    READ_BACK_PAUSE_S,
    STORE_404S_FOR_LOSS,
    STORE_DOWN,
    AfterStored,
    FaultRun,
    FetchLink,
    StoreRestart,
    fault_checks,
    phase_rows,
    sha256,
    stored_checks,
)

MODULE = "bench.soak"
API = "/api/v1"
HEADER = "X-Session-Id"
MESSAGES_PER_LOOP = 5
RAMP_UP_S = 2.0  # browsers start spread over this, not all in one instant
REQUEST_TIMEOUT_S = 60.0
FAILURE_PAUSE_S = 1.0
REDIS_DB = 9
HIGH_LIMIT = "1000000/minute"
ADMIN_TOKEN = "soak-admin-" + secrets.token_hex(8)
SECRET_KEY = "soak-bench-secret-key-0123456789abcdef"
#: `download` (the link to a file just uploaded) only runs when uploads are read back.
KINDS = ("create", "resume", "message", "upload", "download", "reset")
EXPECTED_STATUS = {"create": 201, "resume": 200, "message": 200, "upload": 201, "download": 302,
                   "reset": 201}
FIRST_ERRORS = 5
PROBED_ENDED_IDS = 10
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.I)
QUESTIONS = [
    "How is the lens of the lamp cleaned?",
    "What should I do when the fog signal fails?",
    "Summarise my notes, please.",
    "Which files have I uploaded so far?",
    "When are the weather reports sent?",
    "How many spare lamps are kept?",
]
NOTE = (
    "Keeper's notes for browser {browser}, loop {loop}.\n"
    "The lamp is lit at sunset and put out at sunrise. The lens is cleaned every morning\n"
    "with a soft cloth and spirit. The fog signal is tested on the first day of each month.\n"
)


# --- the simulated browsers ------------------------------------------------------------------


@dataclass
class Browser:
    """One simulated browser: its address, every session id it held, its files per session."""

    index: int
    ip: str | None
    sids: list[str] = field(default_factory=list)  # "" where a 404 made it start afresh
    ended: list[str] = field(default_factory=list)  # ids it reset successfully
    uploads: Counter[str] = field(default_factory=Counter)  # files stored, by session id

    @property
    def sid(self) -> str | None:
        return self.sids[-1] if self.sids else None


@dataclass
class Recorder:
    """Latencies of successful operations and errors, by operation kind."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    first_errors: list[str] = field(default_factory=list)
    statuses_5xx: int = 0
    loops: int = 0

    def ok(self, kind: str, seconds: float) -> None:
        self.latencies[kind].append(seconds)

    def error(self, kind: str, what: str, detail: str) -> None:
        """Count one failed operation; `what` is the status and problem type, or the exception."""
        self.errors[kind][what] += 1
        if what.startswith("5"):
            self.statuses_5xx += 1
        if len(self.first_errors) < FIRST_ERRORS:
            self.first_errors.append(f"{kind}: {what}: {detail[:300]}")

    def completed(self, kind: str) -> int:
        return len(self.latencies[kind])

    def failed(self, kind: str) -> int:
        return sum(self.errors[kind].values())


class Failed(Exception):
    """An operation's answer was not the expected one (already recorded)."""

    def __init__(self, status: int | None = None, what: str = "bad body") -> None:
        super().__init__(status)
        self.status = status  # the HTTP status, None for an exception or a wrong body
        self.what = what  # as recorded: "503 storage-unavailable", "ReadTimeout", ...


def answer_kind(answer: Any) -> str:
    """`404`, or for a server error `503 storage-unavailable` (its problem type), so the report
    tells a clear 503 from a bare one."""
    if answer.status_code < 500:
        return str(answer.status_code)
    slug = "not problem+json"
    if answer.headers.get("content-type", "").startswith("application/problem+json"):
        with contextlib.suppress(ValueError, AttributeError):
            slug = str(answer.json().get("type", "")).rsplit(":", 1)[-1] or "no type"
    return f"{answer.status_code} {slug}"


async def call(client: Any, recorder: Recorder, kind: str, method: str, path: str,
               check: Any, **request: Any) -> Any:
    """One timed request; records it and returns the JSON body (the answer itself when `check`
    is None), or raises Failed."""
    import httpx

    started = time.perf_counter()
    try:
        answer = await client.request(method, API + path, **request)
    except httpx.HTTPError as exc:
        recorder.error(kind, type(exc).__name__, repr(exc))
        raise Failed(what=type(exc).__name__) from None
    elapsed = time.perf_counter() - started
    if answer.status_code != EXPECTED_STATUS[kind]:
        what = answer_kind(answer)
        recorder.error(kind, what, answer.text)
        raise Failed(answer.status_code, what)
    if check is None:
        recorder.ok(kind, elapsed)
        return answer
    try:
        body = answer.json()
        problem = check(body)
    except ValueError as exc:
        problem = f"not JSON: {exc}"
    if problem:
        recorder.error(kind, "bad body", f"{problem}: {answer.text}")
        raise Failed
    recorder.ok(kind, elapsed)
    return body


def is_session(body: dict[str, Any]) -> str | None:
    sid = body.get("session_id", "")
    if UUID4.fullmatch(sid) is None or body.get("status") != "active":
        return "not an active session"
    return None


def browser_headers(browser: Browser) -> dict[str, str]:
    """What every request of this browser carries (its address with `--limits spec`)."""
    headers = {"User-Agent": f"bench.soak/browser-{browser.index}"}
    if browser.ip is not None:
        headers["X-Forwarded-For"] = browser.ip
    return headers


async def browse(client: Any, browser: Browser, recorder: Recorder, until: float,
                 faults: FaultRun | None = None) -> None:
    """The loop of one browser until `until` (perf_counter); the operation in flight finishes.

    With `faults`, every upload's answer goes into its ledger, and a file answered 201 is read
    back (download link, then its bytes) before the reset.
    """
    headers = browser_headers(browser)
    loop = 0
    while time.perf_counter() < until:
        try:
            if not browser.sid:  # first visit (or a forgotten id): nothing in local storage
                body = await call(client, recorder, "create", "POST", "/session", is_session,
                                  headers=headers)
                browser.sids.append(body["session_id"])
            else:  # a page load resumes the stored id
                sid = browser.sid

                def same(body: dict[str, Any], sid: str = sid) -> str | None:
                    return is_session(body) or (
                        None if body["session_id"] == sid else "another session")

                try:
                    await call(client, recorder, "resume", "GET", "/session", same,
                               headers={**headers, HEADER: sid})
                except Failed as failed:
                    if failed.status == 404:  # as the page does: a new session next loop
                        browser.sids.append("")
                    raise
            session = {**headers, HEADER: browser.sid}
            if faults and faults.keeps(browser.index):
                await keep(client, recorder, browser, session, loop, until, faults)
                loop += 1
                continue
            if faults and faults.recheck_due(browser.index):
                await recheck(client, recorder, browser, session, faults)
            for number in range(MESSAGES_PER_LOOP):
                if time.perf_counter() >= until:
                    return
                question = QUESTIONS[(browser.index + loop + number) % len(QUESTIONS)]
                with contextlib.suppress(Failed):
                    await call(client, recorder, "message", "POST", "/session/messages",
                               reply_complete, headers=session, json={"content": question})
            if time.perf_counter() >= until:
                return
            await upload(client, recorder, browser, session, loop, faults)
            if time.perf_counter() >= until:
                return
            with contextlib.suppress(Failed):
                body = await call(client, recorder, "reset", "POST", "/session/reset",
                                  is_session, headers=session)
                browser.ended.append(browser.sid)
                browser.sids.append(body["session_id"])
            loop += 1
            recorder.loops += 1
        except Failed:  # no session to go on with: back off a little, then load the page again
            await asyncio.sleep(FAILURE_PAUSE_S)


async def upload(client: Any, recorder: Recorder, browser: Browser, session: dict[str, str],
                 loop: int, faults: FaultRun | None) -> None:
    """The loop's note uploaded; with `faults`, recorded in the ledger and, when answered 201,
    read back."""
    note = NOTE.format(browser=browser.index, loop=loop).encode()

    def stored(body: dict[str, Any]) -> str | None:
        return None if body.get("size_bytes") == len(note) else "wrong size"

    sid = browser.sid
    assert sid
    sent_at = faults.ledger.clock() if faults else 0.0
    try:
        body = await call(client, recorder, "upload", "POST", "/session/files", stored,
                          headers=session,
                          files={"file": (f"notes-{loop}.txt", note, "text/plain")})
    except Failed as failed:
        if faults:
            faults.ledger.told(browser.index, sid, sent_at, failed.what)
        return
    browser.uploads[sid] += 1
    if not faults:
        return
    outcome = faults.ledger.told(browser.index, sid, sent_at, "201")
    outcome.file_id, outcome.content, outcome.sha256 = body["id"], note, sha256(note)
    await faults.stored(outcome, link_fetcher(client, recorder, session, outcome.file_id))


def link_fetcher(client: Any, recorder: Recorder, session: dict[str, str], file_id: str,
                 ) -> FetchLink:
    """The app's download link request for one file, as the read-backs make it."""

    async def fetch_link() -> Any:
        with contextlib.suppress(Failed):
            return await call(client, recorder, "download", "GET", f"/session/files/{file_id}",
                              None, headers=session)
        return None

    return fetch_link


async def keep(client: Any, recorder: Recorder, browser: Browser, session: dict[str, str],
               loop: int, until: float, faults: FaultRun) -> None:
    """A keeper's loop until the restarted store answers: one message, one upload (read back),
    a pause; its session and files stay (no reset) so that they cross the restart."""
    question = QUESTIONS[(browser.index + loop) % len(QUESTIONS)]
    with contextlib.suppress(Failed):
        await call(client, recorder, "message", "POST", "/session/messages", reply_complete,
                   headers=session, json={"content": question})
    if time.perf_counter() >= until:
        return
    await upload(client, recorder, browser, session, loop, faults)
    await asyncio.sleep(max(0.0, min(KEEPER_PAUSE_S, until - time.perf_counter())))


async def last_recheck(client: Any, recorder: Recorder, browser: Browser,
                       faults: FaultRun) -> None:
    """A keeper whose load ended before the store came back: wait for it, then recheck."""
    if not faults.restart or browser.index % KEEPER_EVERY or not browser.sid:
        return
    while not faults.store_up() or faults.restart.outage.killed_at is None:
        await asyncio.sleep(READ_BACK_PAUSE_S)
    if faults.recheck_due(browser.index):
        await recheck(client, recorder, browser, {**browser_headers(browser), HEADER: browser.sid},
                      faults)


async def recheck(client: Any, recorder: Recorder, browser: Browser, session: dict[str, str],
                  faults: FaultRun) -> None:
    """A keeper, once the store is back: every file of its session told 201, read back again."""
    assert browser.sid
    for outcome in faults.kept(browser.index, browser.sid):
        outcome.after_restart = await faults.read_back(
            outcome, link_fetcher(client, recorder, session, outcome.file_id))


def reply_complete(body: dict[str, Any]) -> str | None:
    reply = body.get("reply") or {}
    if body.get("message", {}).get("role") != "user":
        return "no saved user message"
    if reply.get("role") != "assistant" or reply.get("status") != "complete":
        return "reply missing or not complete"
    return None


async def load(url: str, clients: int, seconds: float, spec_limits: bool,
               faults: FaultRun | None = None) -> tuple[Recorder, list[Browser], float]:
    """Run every browser (and the store restart of `faults`, if any); (recorder, browsers,
    wall seconds from first start to last answer)."""
    import httpx

    recorder = Recorder()
    browsers = [
        Browser(index, f"10.{64 + index // 65536}.{index // 256 % 256}.{index % 256}"
                if spec_limits else None)
        for index in range(clients)
    ]
    # One client (one keep-alive connection) per browser, as browsers have: a single pool of
    # N connections costs the client far more CPU (httpcore walks every queued request and
    # connection on each assignment). One SSL context for all: building one costs ~10 ms.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S)
    tls = ssl.create_default_context()
    started = time.perf_counter()
    until = started + seconds

    async def start(browser: Browser) -> None:
        await asyncio.sleep(RAMP_UP_S * browser.index / clients)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout,
                                     verify=tls) as client:
            await browse(client, browser, recorder, until, faults)
            if faults:
                await last_recheck(client, recorder, browser, faults)

    if faults is None:
        await asyncio.gather(*(start(browser) for browser in browsers))
        return recorder, browsers, time.perf_counter() - started
    faults.ledger.started = started
    # Presigned URLs point at the store, not the app: one shared client follows them.
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as downloads:
        faults.downloads = downloads
        # The restart is awaited too: the checks afterwards need the store back.
        extra = [faults.restart.run(started), watch_health(url, faults, until)] \
            if faults.restart else []
        await asyncio.gather(*extra, *(start(browser) for browser in browsers))
    return recorder, browsers, time.perf_counter() - started


async def watch_health(url: str, faults: FaultRun, until: float) -> None:
    """`GET /api/v1/health` on a connection of its own, as a load balancer polls it."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
        await faults.watch_health(client, f"{API}/health", until, answer_kind)


# --- the served app and its dependencies -----------------------------------------------------


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    database_url: str
    store: Any
    log_path: Path
    description: str
    #: Process groups whose CPU time is reported: name -> pgid.
    groups: dict[str, int] = field(default_factory=dict)
    seaweed: Any = None  # tests.seaweed.SeaweedServer with --store s3


def cpu_by_group(groups: dict[str, int]) -> dict[str, tuple[float, float]]:
    """(seconds on a CPU, seconds runnable but waiting for one) of the live threads of each
    process group, from /proc/<pid>/task/<tid>/schedstat (Linux)."""
    totals = dict.fromkeys(groups, (0.0, 0.0))
    names = {pgid: name for name, pgid in groups.items()}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name = names.get(int(stat.read_text().rsplit(")", 1)[1].split()[2]))  # pgrp
            if name is None:
                continue
            for task in (stat.parent / "task").glob("*/schedstat"):
                on_cpu, waiting = (int(value) / 1e9 for value in task.read_text().split()[:2])
                totals[name] = (totals[name][0] + on_cpu, totals[name][1] + waiting)
        except (OSError, ValueError, IndexError):
            continue
    return totals


def pg_sessions(database_url: str) -> int | None:
    """Sessions (connections) ever opened to this PostgreSQL database; None for SQLite."""
    if not database_url.startswith("postgresql"):
        return None
    import sqlalchemy as sa

    from chat_app.db import get_engine

    with get_engine(database_url).connect() as conn:
        conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
        return conn.execute(sa.text(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()")).scalar()


def pool_shape(database_url: str) -> str:
    """`pool_size N, max_overflow M` of chat_app.db's engine for this URL."""
    from chat_app.db import get_engine

    pool = get_engine(database_url).pool
    return (f"pool_size {getattr(pool, 'size', lambda: '?')()}, "
            f"max_overflow {getattr(pool, '_max_overflow', '?')}")


def production_env(args: argparse.Namespace, database_url: str, port: int,
                   seaweed: Any, bucket: str | None) -> dict[str, str]:
    """cluster_env's production configuration, adapted to one worker and the chosen variant."""
    from chat_app.settings import DEFAULT_RATE_LIMITS
    from tests.scaleout.cluster import cluster_env

    if seaweed is not None:
        assert bucket is not None
        env = cluster_env(database_url, seaweed, bucket, port)
    else:
        env = {"DATABASE_URL": database_url, "CHAT_APP_SWEEP_INTERVAL_MINUTES": "0",
               "CHAT_APP_ORPHAN_GRACE_MINUTES": "0", "GRANIAN_WORKERS": "1",
               "REFLEX_API_URL": f"http://localhost:{port}"}
    if args.redis:
        env["REDIS_URL"] = f"redis://127.0.0.1:6379/{args.redis_db}"
    else:
        env.pop("REDIS_URL", None)
    if args.limits == "spec":
        env["CHAT_APP_RATE_LIMITS"] = ",".join(f"{k}={v}" for k, v in DEFAULT_RATE_LIMITS.items())
        env["CHAT_APP_TRUSTED_PROXY_HOPS"] = "1"
    else:
        env["CHAT_APP_RATE_LIMITS"] = ",".join(f"{k}={HIGH_LIMIT}" for k in DEFAULT_RATE_LIMITS)
        env["CHAT_APP_TRUSTED_PROXY_HOPS"] = "0"
    env.update(CHAT_APP_ADMIN_TOKEN=ADMIN_TOKEN, CHAT_APP_SECRET_KEY=SECRET_KEY,
               CHAT_APP_ASSISTANT="retrieval", CHAT_APP_DEV_CONTROLS="0")
    return env


@contextlib.contextmanager
def serve(args: argparse.Namespace, folder: Path) -> Iterator[Stack]:
    """Database, store, Redis and the app, all torn down afterwards."""
    from chat_app.db import get_engine
    from tests.e2e.server import free_port, start_app

    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)  # nothing of the caller's environment leaks into the app
    data_dir = folder / "app"
    groups: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        if args.database == "postgresql":
            from tests.conftest import create_postgres_database, drop_postgres_database

            database_url = create_postgres_database()
            stack.callback(drop_postgres_database, database_url)
        else:
            database_url = f"sqlite:///{data_dir / 'chat_app.db'}"
            stack.callback(lambda: get_engine(database_url).dispose())
        seaweed = bucket = None
        if args.store == "s3":
            from chat_app.storage.s3 import S3Store
            from tests.seaweed import REGION, SeaweedServer

            seaweed = SeaweedServer(folder / "weed")
            seaweed.start()
            stack.callback(seaweed.stop)
            groups["SeaweedFS"] = os.getpgid(seaweed._process.pid)
            bucket = "soak"
            seaweed.client().create_bucket(Bucket=bucket)
            store = S3Store(bucket, endpoint_url=seaweed.endpoint_url, region=REGION,
                            client=seaweed.client())
        else:
            from chat_app.storage.local import LocalStore
            from chat_app.storage.signing import UrlSigner

            store = LocalStore(data_dir / "files", signer=UrlSigner(SECRET_KEY.encode()))
        if args.redis:
            import redis

            client = redis.Redis.from_url(f"redis://127.0.0.1:6379/{args.redis_db}")
            client.flushdb()
            stack.callback(client.flushdb)
        port = free_port()
        env = production_env(args, database_url, port, seaweed, bucket)
        print(f"soak: starting the {args.serve} on port {port} ({args.database}, {args.store}, "
              f"redis {'on' if args.redis else 'off'})", flush=True)
        if args.serve == "app":
            app = start_app(data_dir, port=port, **env)
            server = "app (reflex + granian worker)"
        elif args.serve == "backend":
            app = start_built_app(data_dir, port, database_url, env)
            server = "app (production server, existing build)"
        else:
            app = start_api(data_dir, port, database_url, env)
            server = "API (uvicorn)"
        stack.callback(app.stop)
        described = (f"{args.database}, {'SeaweedFS (S3)' if seaweed else 'local folder'} "
                     f"store, {'Redis db ' + str(args.redis_db) if args.redis else 'no Redis'}")
        groups = {server: app.process.pid, **groups}
        yield Stack(app.url, env, database_url, store, app.log_path, described, groups, seaweed)


def start_built_app(data_dir: Path, port: int, database_url: str, env: dict[str, str]) -> Any:
    """Migrate, then serve the existing production build as `reflex run --env prod` serves it
    after building (tests/scaleout/serve_backend.py): the served app without its 25-55 s of
    build checks, for a second soak right after the first."""
    from chat_app import migrations
    from tests.scaleout.cluster import start_backend

    if not (ROOT / ".web" / "build").is_dir():
        raise SystemExit("bench.soak --serve backend needs a production build: run "
                         "`python -m bench.soak` (or `make run`) once first")
    migrations.upgrade(database_url)
    return start_backend(data_dir, port, **env)


def api_app() -> Any:
    """`--serve api`'s app (`uvicorn --factory`): the REST API that Reflex mounts in front of the
    page (`create_api`), with the app's logging, configured from the environment."""
    import functools

    from chat_app.api.app import create_api
    from chat_app.container import build_services
    from chat_app.log_format import configure_logging
    from chat_app.services.audit import keyed_ref
    from chat_app.settings import get_settings_or_exit

    settings = get_settings_or_exit()
    configure_logging(functools.partial(keyed_ref, settings.secret_key))
    return create_api(build_services(settings))


def start_api(data_dir: Path, port: int, database_url: str, env: dict[str, str]) -> Any:
    """Migrate, then serve `api_app` on `port` with uvicorn in its own process group.

    The browsers only call /api/v1, so this serves everything they use in seconds instead of
    `reflex run`'s 25-55 s (plus a first production build): what the bounded test needs.
    """
    from chat_app import migrations
    from tests.e2e.server import ServedApp, app_env

    data_dir.mkdir(parents=True, exist_ok=True)
    migrations.upgrade(database_url)
    log_path = data_dir / "server.log"
    command = [sys.executable, "-m", "uvicorn", "--factory", f"{MODULE}:api_app",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--log-level", "warning", "--no-access-log"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=app_env(data_dir, **env), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
    served = ServedApp(f"http://127.0.0.1:{port}", process, log_path, data_dir)
    try:
        wait_for_health(served)
    except BaseException:
        served.stop()
        raise
    return served


def wait_for_health(served: Any, timeout_s: float = 60) -> None:
    """Until `GET /api/v1/health` answers 200; raises with the server's log otherwise."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(f"the API exited early:\n{served.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{served.url}{API}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"the API did not answer within {timeout_s} s:\n{served.log_tail()}")


# --- afterwards: sweep and checks ------------------------------------------------------------


@dataclass
class Check:
    name: str
    expected: str
    found: str
    ok: bool | None  # None: information only


def sweep(url: str) -> dict[str, Any]:
    import httpx

    answer = httpx.post(f"{url}{API}/admin/sweep", timeout=300,
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    if answer.status_code != 200:
        return {"error": f"{answer.status_code}: {answer.text[:300]}"}
    return answer.json()


def probe_ended_ids(url: str, browsers: list[Browser], spec_limits: bool) -> Check:
    """Invariant 1: ended ids answer 404 on validate, send and reset."""
    import httpx

    ended = [browser.ended[-1] for browser in browsers if browser.ended][:PROBED_ENDED_IDS]
    wrong: list[str] = []
    probes = 0
    with httpx.Client(base_url=url + API, timeout=30) as client:
        for sid in ended:
            for method, path, body in (("GET", "/session", None),
                                       ("POST", "/session/messages", {"content": "hello?"}),
                                       ("POST", "/session/reset", None)):
                headers = {HEADER: sid}
                if spec_limits:  # a fresh address per probe: rejections count per IP
                    headers["X-Forwarded-For"] = f"192.0.2.{probes % 250 + 1}"
                answer = client.request(method, path, headers=headers, json=body)
                probes += 1
                if answer.status_code != 404:
                    wrong.append(f"{method} {path}: {answer.status_code}")
    return Check("1: ended ids never validate again (GET /session, POST messages, POST reset)",
                 "404 each", f"{probes} probes, {len(ended)} ids; "
                 + (", ".join(wrong[:5]) if wrong else "all 404"), not wrong and probes > 0)


def database_checks(stack: Stack, browsers: list[Browser], recorder: Recorder,
                    report: dict[str, Any], faults: FaultRun | None = None) -> list[Check]:
    """SPEC 11 against the database, the store and the audit trail."""
    import sqlalchemy as sa
    from sqlmodel import Session, col, func, select

    from chat_app.db import get_engine
    from chat_app.models import (
        FILE_DELETED,
        FILE_FAILED,
        SESSION_ACTIVE,
        AuditLog,
        ChatMessage,
        FileChunk,
        SessionFile,
        UserSession,
    )
    from tests.invariants import stale_orphans, stored_rows_without_objects

    engine = get_engine(stack.database_url)
    checks: list[Check] = []
    all_sids = {sid for browser in browsers for sid in browser.sids if sid}
    resets = recorder.completed("reset")
    creates = recorder.completed("create")

    # 2 and 3 (tests/invariants.py): the cutoff is "now" — grace is 0, every upload is done.
    missing = stored_rows_without_objects(engine, stack.store)
    checks.append(Check("2: every `stored` file row has its object", "0 missing",
                        f"{len(missing)} missing" + (f": {missing[:3]}" if missing else ""),
                        not missing))
    orphans = stale_orphans(engine, stack.store, older_than=datetime.now(UTC) + timedelta(
        seconds=5))
    checks.append(Check("3: after the sweep, no object of a non-active session or of no "
                        "live row", "0 objects", f"{len(orphans)}"
                        + (f": {orphans[:3]}" if orphans else ""), not orphans))
    checks.append(Check("   sweep report: orphan objects deleted (reset purges left none)",
                        "0", str(report.get("deleted_objects", report)), None))

    with Session(engine) as db:
        rows = db.exec(select(UserSession.uuid, UserSession.status, UserSession.id,
                              UserSession.predecessor_id)).all()
        by_uuid = {row[0]: row for row in rows}
        by_id = {row[2]: row for row in rows}
        audit = Counter(dict(db.exec(select(AuditLog.event, func.count())
                                     .group_by(AuditLog.event)).all()))
        purged_files = sum(int((details or {}).get("files", 0)) for (details,) in db.execute(
            sa.select(AuditLog.details).where(AuditLog.event == "files.purged")))
        kept_messages = db.exec(
            select(func.count()).select_from(ChatMessage).join(
                UserSession, UserSession.id == ChatMessage.session_id)
            .where(UserSession.status != SESSION_ACTIVE)).one()
        kept_chunks = db.exec(
            select(func.count()).select_from(FileChunk)
            .join(SessionFile, SessionFile.id == FileChunk.file_id)
            .join(UserSession, UserSession.id == SessionFile.session_id)
            .where(UserSession.status != SESSION_ACTIVE)).one()
        # `failed` rows (an upload the store refused) never held a live object: not erased.
        undeleted_files = db.exec(
            select(func.count()).select_from(SessionFile)
            .join(UserSession, UserSession.id == SessionFile.session_id)
            .where(UserSession.status != SESSION_ACTIVE,
                   col(SessionFile.status).notin_([FILE_DELETED, FILE_FAILED]))
        ).one()
        audit_text = db.execute(sa.select(AuditLog.session_ref, AuditLog.ip_hash,
                                          AuditLog.request_id, AuditLog.details)).all()

    # 5: one active session per browser, and each reset made exactly one successor.
    unknown = all_sids - by_uuid.keys()
    strangers = by_uuid.keys() - all_sids
    actives = [sum(1 for sid in set(b.sids) if sid in by_uuid
                   and by_uuid[sid][1] == SESSION_ACTIVE) for b in browsers]
    not_latest = [b.index for b in browsers if b.sid and by_uuid.get(b.sid, ("", ""))[1]
                  != SESSION_ACTIVE and actives[b.index]]
    checks.append(Check("5: at most one active session per browser (its latest id)",
                        "≤ 1 each", f"max {max(actives, default=0)}, "
                        f"{sum(actives)} active for {len(browsers)} browsers"
                        + (f"; not the latest id: browsers {not_latest[:5]}" if not_latest
                           else ""), max(actives, default=0) <= 1 and not not_latest))
    successors = [row for row in rows if row[3] is not None]
    chained = sum(
        1 for b in browsers for old, new in zip(b.sids, b.sids[1:], strict=False)
        if old and new and by_uuid.get(new) and by_id.get(by_uuid[new][3], ("",))[0] == old)
    checks.append(Check("5: one successor per reset (predecessor_id = the reset id)",
                        f"{resets} successors, {resets} chained", f"{len(successors)} successors,"
                        f" {chained} chained", len(successors) == resets == chained))
    checks.append(Check("   sessions in the database = ids the browsers saw",
                        f"{len(all_sids)}", f"{len(rows)} ({len(unknown)} seen but missing, "
                        f"{len(strangers)} never seen)", not unknown and not strangers))

    # 4: every state change has its audit row.
    store_down = recorder.errors["upload"][STORE_DOWN]
    files_of_reset = sum(count for b in browsers for sid, count in b.uploads.items()
                         if by_uuid.get(sid, ("", ""))[1] not in ("", SESSION_ACTIVE))
    for event, expected in (
        ("session.created", creates + resets),
        ("session.reset", resets),
        ("message.sent", recorder.completed("message")),
        # An upload the store failed got its `pending` row first (then `file.rejected`).
        ("file.upload_started", recorder.completed("upload") + store_down),
        ("file.uploaded", recorder.completed("upload")),
        ("file.rejected", store_down),
        ("sweep.completed", 1),
        ("rate_limited", 0),
    ):
        checks.append(Check(f"4: audit `{event}` rows", str(expected), str(audit[event]),
                            audit[event] == expected))
    checks.append(Check("4: audit `files.purged` files = files of reset sessions",
                        str(files_of_reset), str(purged_files), purged_files == files_of_reset))
    checks.append(Check("4: audit_log refuses UPDATE and DELETE (trigger)", "both refused",
                        append_only(engine), None))
    checks[-1].ok = checks[-1].found == "both refused"
    checks.append(Check("   reset erased the old sessions' messages, passages and files",
                        "0 / 0 / 0", f"{kept_messages} / {kept_chunks} / {undeleted_files}",
                        kept_messages == kept_chunks == undeleted_files == 0))

    # 7: no raw session id in audit rows or in the server's log.
    leaked = {match.lower() for row in audit_text for match in UUID4.findall(
        json.dumps([str(cell) if not isinstance(cell, dict) else cell for cell in row]))}
    leaked &= all_sids
    checks.append(Check("7: no raw session id in audit rows", "0",
                        f"{len(leaked)} of {len(audit_text)} rows' ids", not leaked))
    in_log = {match.lower() for match in UUID4.findall(
        stack.log_path.read_text(errors="replace"))} & all_sids
    checks.append(Check("7: no raw session id in the server log", "0", str(len(in_log)),
                        not in_log))
    if faults is None or faults.restart is None:
        checks.append(Check("6: no 5xx answer", "0", str(recorder.statuses_5xx),
                            recorder.statuses_5xx == 0))
    # With the store restarted, 6 is checked in detail by the fault checks (soak_faults.py).
    return checks


def append_only(engine: Any) -> str:
    """Try an UPDATE and a DELETE of one audit row, each rolled back; say what happened."""
    import sqlalchemy as sa

    refused = []
    for statement in ("UPDATE audit_log SET event = event WHERE id = (SELECT MIN(id) FROM "
                      "audit_log)", "DELETE FROM audit_log WHERE id = (SELECT MIN(id) FROM "
                      "audit_log)"):
        try:
            with engine.connect() as conn, conn.begin() as transaction:
                conn.execute(sa.text(statement))
                transaction.rollback()
        except sa.exc.DBAPIError:
            refused.append(statement.split()[0])
    return "both refused" if len(refused) == 2 else f"refused: {refused or 'none'}"


# --- report ----------------------------------------------------------------------------------


def percentile(values: list[float], cut: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[cut - 1]


def operation_rows(recorder: Recorder, elapsed: float,
                   tolerated: frozenset[str] = frozenset()) -> list[list[str]]:
    """Per kind: completed, errors by kind, latency percentiles, rate, target. `tolerated`
    errors (the fault run's `503 storage-unavailable`) do not miss the target."""
    rows = []
    target = "0 errors" + (f" but {', '.join(sorted(tolerated))}" if tolerated else "") + ": "
    for kind in KINDS:
        values = recorder.latencies[kind]
        errors = recorder.failed(kind)
        if not values and not errors and kind == "download":
            continue  # uploads are only read back in the fault run
        detail = ", ".join(f"{what}: {count}" for what, count in recorder.errors[kind].items())
        missed = sum(n for what, n in recorder.errors[kind].items() if what not in tolerated)
        cells = ([f"{median(values) * 1000:.0f}", f"{percentile(values, 95) * 1000:.0f}",
                  f"{percentile(values, 99) * 1000:.0f}"] if values else ["—"] * 3)
        rows.append([f"{kind} (expects {EXPECTED_STATUS[kind]})", str(len(values)),
                     f"{errors}" + (f" ({detail})" if detail else ""), *cells,
                     f"{len(values) / elapsed:.1f}",
                     target + ("met" if missed == 0 else "**target missed**")])
    every = [value for kind in KINDS for value in recorder.latencies[kind]]
    errors = sum(recorder.failed(kind) for kind in KINDS)
    missed = sum(n for kind in KINDS for what, n in recorder.errors[kind].items()
                 if what not in tolerated)
    rows.append(["**all**", str(len(every)), str(errors),
                 *([f"{median(every) * 1000:.0f}", f"{percentile(every, 95) * 1000:.0f}",
                    f"{percentile(every, 99) * 1000:.0f}"] if every else ["—"] * 3),
                 f"{len(every) / elapsed:.1f}",
                 target + ("met" if missed == 0 else "**target missed**")])
    return rows


def server_log_notes(log_path: Path) -> list[str]:
    text = log_path.read_text(errors="replace").splitlines()
    bad = [line for line in text if "Traceback" in line or " ERROR" in line
           or "Exception" in line]
    if not bad:
        return ["Server log: no tracebacks or ERROR lines."]
    return [f"Server log: {len(bad)} traceback/ERROR lines, the first: `{bad[0][:200]}`"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200, help="simulated browsers")
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--store", choices=("s3", "local"), default="s3")
    parser.add_argument("--no-redis", dest="redis", action="store_false",
                        help="in-process state and rate limits instead of Redis")
    parser.add_argument("--redis-db", type=int, default=REDIS_DB,
                        help="Redis database, flushed at start and end (default %(default)s)")
    parser.add_argument("--limits", choices=("spec", "raised"), default="spec",
                        help="spec: SPEC defaults, one X-Forwarded-For address per browser; "
                        "raised: every limit 1,000,000/minute, all from 127.0.0.1")
    parser.add_argument("--serve", choices=("app", "backend", "api"), default="app",
                        help="app: `reflex run --env prod` as `make run` serves it; backend: "
                        "the same production server on the existing build (no build checks); "
                        "api: only the REST API the browsers call, under uvicorn")
    parser.add_argument("--restart-store", action="store_true",
                        help="the fault run: SIGKILL SeaweedFS a third of the way in, start it "
                        "again --store-down seconds later; implies --read-back (needs --store s3)")
    parser.add_argument("--store-down", type=float, default=5.0,
                        help="seconds between the kill and the new start (default %(default)s)")
    parser.add_argument("--read-back", action="store_true",
                        help="record what each upload was told and read every 201 back "
                        "(download link, then the bytes) before the reset")
    add_results_option(parser)
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.store_down < 0:
        parser.error("--clients must be at least 1, --seconds positive, --store-down >= 0")
    if (args.restart_store or args.read_back) and args.store != "s3":
        parser.error("--restart-store and --read-back need --store s3 (presigned downloads)")
    args.read_back = args.read_back or args.restart_store
    return args


@dataclass
class SoakResult:
    """One soak: what the browsers saw, the checks afterwards, and the Markdown sections."""

    recorder: Recorder
    browsers: list[Browser]
    checks: list[Check]
    faults: FaultRun | None
    sections: list[str]

    @property
    def failed_checks(self) -> list[Check]:
        return [check for check in self.checks if check.ok is False]


def run(args: argparse.Namespace, *, after_stored: AfterStored | None = None) -> SoakResult:
    """Serve, load, sweep, check; `after_stored` runs after each 201 (the tests lose objects
    with it to show that the checks catch a loss)."""
    add_repo_root()
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as folder, \
            serve(args, Path(folder)) as stack:
        up = time.perf_counter() - wall
        print(f"soak: {args.serve} up after {up:.0f} s; {args.clients} browsers for "
              f"{args.seconds:g} s", flush=True)
        faults = None
        if args.read_back:
            restart = StoreRestart(stack.seaweed, args.seconds / 3, args.store_down) \
                if args.restart_store else None
            faults = FaultRun(restart=restart, after_stored=after_stored, store=stack.store)
            if restart:  # the killed group's CPU time vanishes with it: not comparable
                stack.groups.pop("SeaweedFS", None)
        groups = {**stack.groups, "load client (this process)": os.getpgid(0)}
        cpu_before, load_before = cpu_by_group(groups), os.getloadavg()[0]
        sessions_before = pg_sessions(stack.database_url)
        recorder, browsers, elapsed = asyncio.run(
            load(stack.url, args.clients, args.seconds, args.limits == "spec", faults))
        cpu_after, load_after = cpu_by_group(groups), os.getloadavg()[0]
        time.sleep(1)  # backends flush their statistics at most once a second
        sessions_after = pg_sessions(stack.database_url)
        cpu = {name: tuple(after - before for after, before in zip(
            cpu_after[name], cpu_before[name], strict=True)) for name in groups}
        print(f"soak: load done ({elapsed:.1f} s, {recorder.loops} loops); sweeping", flush=True)
        checks_started = time.perf_counter()
        from chat_app.db import get_engine
        from tests.invariants import stored_rows_without_objects

        engine = get_engine(stack.database_url)
        missing_before = None
        with contextlib.suppress(Exception):
            missing_before = len(stored_rows_without_objects(engine, stack.store))
        before = stored_checks(engine, stack.store, faults.ledger) if faults else None
        report = sweep(stack.url)
        checks = [Check("2: every `stored` file row has its object (before the sweep)", "0",
                        str(missing_before), missing_before == 0)]
        checks += database_checks(stack, browsers, recorder, report, faults)
        checks.append(probe_ended_ids(stack.url, browsers, args.limits == "spec"))
        if faults:
            assert before is not None
            after = stored_checks(engine, stack.store, faults.ledger)
            outage = faults.restart.outage if faults.restart else None
            checks += [Check(*row) for row in fault_checks(
                recorder.errors, faults.ledger, before, after, outage, faults.health)]
        checks_s = time.perf_counter() - checks_started
        log_notes = server_log_notes(stack.log_path)
    total = time.perf_counter() - wall
    ops = max(1, sum(recorder.completed(kind) for kind in KINDS))

    limits_note = (
        "Rate limits: SPEC defaults (`CHAT_APP_RATE_LIMITS` set to them explicitly); each "
        "browser sends its own `X-Forwarded-For` (10.64.x.y) and the app trusts one hop "
        "(`CHAT_APP_TRUSTED_PROXY_HOPS=1`), so per-IP limits count per browser."
        if args.limits == "spec" else
        f"Rate limits: every name raised to {HIGH_LIMIT}; no `X-Forwarded-For` (one IP).")
    served = {
        "app": "Served app: `reflex run --env prod --single-port`, `GRANIAN_WORKERS=1`",
        "backend": "Served app: the production server on the build made by the run before "
                   "(tests/scaleout/serve_backend.py, as `reflex run --env prod` serves after "
                   "building), one worker",
        "api": "Served: the REST API alone (`uvicorn --factory bench.soak:api_app`, one worker: "
               "`create_api` as Reflex mounts it, without the page)",
    }[args.serve]
    notes = [
        f"{served}, {stack.description}, retrieval assistant, sweep loop off, orphan grace 0.",
        f"{args.clients} browsers (asyncio + httpx, one process, one keep-alive connection "
        f"each, started over {RAMP_UP_S:g} s), {args.seconds:g} s; loop = page load (create "
        f"on the first visit, else GET /session) + {MESSAGES_PER_LOOP} messages (JSON reply) "
        f"+ 1 upload (~230 B .txt)"
        + (" + read-back of a 201 (GET /session/files/{id} → 302, then the presigned URL, "
           "bytes compared; retried while the store is down)" if faults else "")
        + f" + reset. {recorder.loops} loops completed.",
        *([f"Store restart: SeaweedFS's process group SIGKILLed and started again on the same "
           f"ports and data dir: {faults.restart.outage.describe()}."]
          if faults and faults.restart else []),
        limits_note,
        "CPU during the load (schedstat, % of one core; of " + str(os.cpu_count()) + " cores): "
        + ", ".join(f"{name} {100 * on / elapsed:.0f} % on a CPU, {100 * wait / elapsed:.0f} %"
                    " runnable but waiting for one" for name, (on, wait) in cpu.items())
        + f"; app CPU per completed operation {1000 * next(iter(cpu.values()))[0] / ops:.0f} "
        f"ms. Machine load average (1 min) {load_before:.1f} before, {load_after:.1f} after "
        "(the machine is shared; PostgreSQL and Redis are shared servers, not counted"
        + ("; nor SeaweedFS, restarted mid-run" if faults and faults.restart else "") + ").",
        *([f"PostgreSQL connections opened to the soak database during the load: "
           f"{sessions_after - sessions_before} (`pg_stat_database.sessions`; the app's "
           f"pool: {pool_shape(stack.database_url)})."]
          if sessions_before is not None and sessions_after is not None else []),
        f"Throughput = completed operations / {elapsed:.1f} s (first start to last answer); "
        "latency is measured in the client, from send to the whole answer read (client-side "
        "event-loop delay included).",
        *(["First errors: " + " · ".join(f"`{e}`" for e in recorder.first_errors)]
          if recorder.first_errors else ["No errors."]),
        *log_notes,
        f"Wall time: {total:.0f} s (start-up {up:.0f} s, load {elapsed:.0f} s, sweep and "
        f"checks {checks_s:.0f} s).",
    ]
    what = "against the API" if args.serve == "api" else "against the served app"
    title = (f"Soak with a store restart: {args.clients} browsers for {args.seconds:g} s {what}"
             if faults and faults.restart else
             f"Soak: {args.clients} browsers for {args.seconds:g} s {what}")
    sections = [markdown_table(
        title, MODULE,
        ["Operation", "Completed", "Errors", "p50 ms", "p95 ms", "p99 ms", "Ops/s", "Target"],
        operation_rows(recorder, elapsed, frozenset({STORE_DOWN}) if faults else frozenset()),
        notes)]
    if faults:
        outage = faults.restart.outage if faults.restart else None
        sections.append(markdown_table(
            f"{title.split(':')[0]}: each upload, what its browser was told and what is there",
            MODULE, PHASE_HEADERS, phase_rows(faults.ledger, outage),
            [f"Store: {outage.describe() if outage else 'not restarted'}. Phases by when the "
             "answer came: before the kill; overlapping the outage (sent or answered between "
             "the kill and the restarted store's first good probe); sent after it.",
             "Read back: the browser asked `GET /session/files/{id}` for its link (302) and "
             "fetched the presigned URL, comparing the bytes, before its reset; while the "
             "store was down or starting it tried again every "
             f"{READ_BACK_PAUSE_S:g} s ({sum(o.read_back_retries for o in faults.ledger.outcomes)}"
             f" retries in all; {faults.ledger.transient_404s} read-backs saw a 404 before "
             "the bytes). Lost: the app answered 404 for the file, or the store answered 404 "
             f"{STORE_404S_FOR_LOSS} times in a row while up, or different bytes."]))
    sections.append(markdown_table(
        f"{title.split(':')[0]}: consistency after the run (SPEC 11)", MODULE,
        ["Check", "Expected", "Found", "Result"],
        [[c.name, c.expected, c.found,
          "info" if c.ok is None else ("pass" if c.ok else "**fail (target missed)**")]
         for c in checks],
        [f"Sweep (`POST /api/v1/admin/sweep`) report: {json.dumps(report)}"]))
    return SoakResult(recorder, browsers, checks, faults, sections)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for section in run(args).sections:
        publish(section, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

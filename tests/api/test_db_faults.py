"""The database lost, silent or locked during create, resume, reset and upload (SPEC 11.6).

PostgreSQL is reached through a TcpProxy that can cut the link (connections refused), stall it
(new connections accepted, never answered) or freeze it in the middle of a transaction (bytes held
while the kernel keeps ACKing: keepalives never notice); a lock is held from the test's own
connection. SQLite is locked by a writer of the test's own. Each call answers a 503 problem+json
within its bound, leaves nothing half-done, and once the fault is gone the same call succeeds and
a sweep leaves every invariant holding.

The bounds are lowered for the module (the production values are in chat_app/db.py); every
engine here is created after that, since engines and their connections keep what they started
with.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from chat_app import db as db_module
from chat_app import migrations
from chat_app.db import get_engine
from chat_app.models import FILE_PENDING, FILE_STORED, UserSession, utcnow
from chat_app.services.audit import RequestContext
from tests.api.support import Api, assert_problem
from tests.conftest import PG_ADMIN_URL, create_postgres_database, drop_postgres_database
from tests.faults import TcpProxy
from tests.invariants import assert_no_half_done_sessions, assert_storage_invariants

#: The module's bounds (seconds): statement_timeout, the client's silence deadline (above it, so
#: the server's own cancellation comes first), connect (libpq's minimum), idle in transaction,
#: and SQLite's busy timeout.
STATEMENT_S, NETWORK_S, CONNECT_S, IDLE_S, BUSY_S = 0.5, 1, 2, 1, 0.3
#: Slack for a loaded 2-core machine on top of each bound.
MARGIN_S = 3
SWEEP_CTX = RequestContext(actor="sweep", request_id="test-db-faults")
NOTES = b"some notes\n"


@pytest.fixture(scope="module", autouse=True)
def short_bounds() -> Iterator[None]:
    """Lowered before any engine of this module exists (engines are cached per URL)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(db_module, "STATEMENT_TIMEOUT_S", STATEMENT_S)
        patch.setattr(db_module, "NETWORK_TIMEOUT_S", NETWORK_S)
        patch.setattr(db_module, "CONNECT_TIMEOUT_S", CONNECT_S)
        patch.setattr(db_module, "IDLE_IN_TRANSACTION_TIMEOUT_S", IDLE_S)
        patch.setattr(db_module, "SQLITE_BUSY_TIMEOUT_S", BUSY_S)
        yield


@pytest.fixture(scope="module")
def pg_url(short_bounds: None) -> Iterator[str]:
    """A migrated PostgreSQL database of this module's own, reached directly."""
    url = create_postgres_database()
    migrations.upgrade(url)
    yield url
    drop_postgres_database(url)


@pytest.fixture(scope="module")
def sqlite_url(short_bounds: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated SQLite database of this module's own."""
    url = f"sqlite:///{tmp_path_factory.mktemp('db-faults') / 'chat_app.db'}"
    migrations.upgrade(url)
    yield url
    get_engine(url).dispose()


@pytest.fixture
def database_url(pg_url: str) -> str:
    """make_settings' default; every test here names its own DATABASE_URL."""
    return pg_url


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    """A link to the PostgreSQL server, for this test alone."""
    server = sa.engine.make_url(PG_ADMIN_URL)
    with TcpProxy(server.host or "127.0.0.1", server.port or 5432) as link:
        yield link


@dataclass
class Faulty:
    """An app on a database, how to end its fault, and a direct engine to look at the rows."""

    api: Api
    direct: Engine
    repair: Callable[[], None]
    #: How long the faulted call may take.
    bound_s: float


@pytest.fixture
def make_faulty(make_api, proxy: TcpProxy, pg_url: str) -> Iterator[Callable[..., Faulty]]:
    """Apps on PostgreSQL through `proxy`; their engines are disposed at the end."""
    proxied_urls: list[str] = []

    def make(bound_s: float, repair: Callable[[], None] = proxy.restore) -> Faulty:
        url = sa.engine.make_url(pg_url).set(host="127.0.0.1", port=proxy.port)
        proxied = url.render_as_string(hide_password=False)
        proxied_urls.append(proxied)
        api = make_api(DATABASE_URL=proxied, CHAT_APP_ORPHAN_GRACE_MINUTES=0,
                       raise_server_exceptions=False)
        return Faulty(api, get_engine(pg_url), repair, bound_s)

    yield make
    proxy.restore()
    for url in proxied_urls:
        get_engine(url).dispose()


# --- the operations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One API call, what success looks like, and where a fault in the middle of it strikes."""

    call: Callable[[Api, str], httpx.Response]
    success: int
    #: True for the SQL statement just before which a mid-call fault strikes (its transaction
    #: open, earlier statements done).
    midway: Callable[[str], bool]


OPERATIONS = {
    "create": Operation(
        lambda api, _sid: api.post("/session"), 201,
        lambda sql: sql.startswith("INSERT INTO user_sessions"),
    ),
    "resume": Operation(
        lambda api, sid: api.get("/session", sid), 200,
        lambda sql: sql.startswith("SELECT") and "FROM user_sessions" in sql,
    ),
    "reset": Operation(
        lambda api, sid: api.post("/session/reset", sid), 201,
        # Releasing the files: the old session already ended, its successor inserted.
        lambda sql: sql.startswith("UPDATE session_files SET status"),
    ),
    "upload": Operation(
        lambda api, sid: api.upload(sid, "more.txt", NOTES), 201,
        lambda sql: sql.startswith("INSERT INTO session_files"),
    ),
    # The object is in the store; the transaction marking its row `stored` loses the database.
    "upload-commit": Operation(
        lambda api, sid: api.upload(sid, "more.txt", NOTES), 201,
        lambda sql: sql.startswith("UPDATE session_files SET") and "sha256" in sql,
    ),
}


@dataclass
class Before:
    """What the database held before the faulted call."""

    sid: str
    sessions: int
    files: dict[str, str]


def prepare(api: Api) -> Before:
    """A session holding one stored file: a reset would have something to release."""
    sid = api.new_session()
    assert api.upload(sid, "notes.txt", NOTES).status_code == 201
    return Before(sid, count_sessions(api.services.engine), file_statuses(api.services.engine, sid))


def count_sessions(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM user_sessions")).scalar_one()


def file_statuses(engine: Engine, sid: str) -> dict[str, str]:
    """object_key → status for one session's files."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT f.object_key, f.status FROM session_files f "
            "JOIN user_sessions s ON s.id = f.session_id WHERE s.uuid = :sid"), {"sid": sid})
        return dict(rows.tuples().all())


def session_status(engine: Engine, sid: str) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT status FROM user_sessions WHERE uuid = :sid"),
                            {"sid": sid}).scalar_one()


def assert_503_within(response: httpx.Response, elapsed_s: float, bound_s: float) -> None:
    assert_problem(response, 503, "database-unavailable")
    assert elapsed_s < bound_s + MARGIN_S, f"{elapsed_s:.1f} s for a bound of {bound_s} s"


def assert_nothing_half_done(name: str, engine: Engine, api: Api, before: Before) -> None:
    """The faulted call changed nothing a user or an invariant could see."""
    assert_no_half_done_sessions(engine)
    assert session_status(engine, before.sid) == "active"  # resume, reset and upload kept it
    if name != "create":
        assert count_sessions(engine) == before.sessions
    after = file_statuses(engine, before.sid)
    # The stored file is untouched; a faulted upload left at most a `pending` row.
    assert {k: v for k, v in after.items() if k in before.files} == before.files
    new = {k: v for k, v in after.items() if k not in before.files}
    assert set(new.values()) <= {FILE_PENDING}
    store_keys = {obj.key for obj in api.services.store.iter_keys(f"sessions/{before.sid}/")}
    assert set(before.files) <= store_keys


def recover_and_sweep(name: str, faulty: Faulty, before: Before) -> None:
    """The same call succeeds now; a sweep then leaves every invariant holding."""
    api = faulty.api
    response = OPERATIONS[name].call(api, before.sid)
    assert response.status_code == OPERATIONS[name].success, response.text
    started = utcnow()
    report = api.services.sweeper.run(SWEEP_CTX)
    assert report.errors == 0, report
    assert_no_half_done_sessions(faulty.direct)
    assert_storage_invariants(faulty.direct, api.services.store, older_than=started,
                              session_uuids=[before.sid])
    if name == "upload-commit":  # the row the fault left `pending` was retired with its object
        statuses = sorted(file_statuses(faulty.direct, before.sid).values())
        assert statuses == ["failed", FILE_STORED, FILE_STORED]


def run_faulted(name: str, faulty: Faulty, before: Before) -> None:
    """Inject the fault, call, check the 503 and that nothing is half-done, recover."""
    started = time.monotonic()
    response = OPERATIONS[name].call(faulty.api, before.sid)
    elapsed = time.monotonic() - started
    faulty.repair()
    assert_503_within(response, elapsed, faulty.bound_s)
    assert_nothing_half_done(name, faulty.direct, faulty.api, before)
    recover_and_sweep(name, faulty, before)


@contextmanager
def fault_at(engine: Engine, fault: Callable[[], None], matches: Callable[[str], bool],
             ) -> Iterator[None]:
    """Run `fault` just before the first statement that `matches` goes out on `engine`."""

    def before_execute(_conn, _cursor, statement: str, *_args) -> None:
        if matches(statement) and not hit:
            hit.append(statement)
            fault()

    hit: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", before_execute)
    try:
        yield
    finally:
        sa.event.remove(engine, "before_cursor_execute", before_execute)
    assert hit, "the statement to fault at never ran"


# --- PostgreSQL: the link cut, stalled or frozen --------------------------------------------------


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_postgres_link_cut_is_503_at_once_and_nothing_half_done(
    name: str, make_faulty, proxy: TcpProxy
) -> None:
    # Refused connections fail fast: the bound is the margin alone.
    faulty = make_faulty(bound_s=0)
    before = prepare(faulty.api)
    if name == "upload-commit":  # cut while the object is written and its row `pending`
        with fault_at(faulty.api.services.engine, proxy.cut, OPERATIONS[name].midway):
            run_faulted(name, faulty, before)
        return
    proxy.cut()
    run_faulted(name, faulty, before)


def test_postgres_link_stalled_is_503_within_the_connect_timeout(
    make_faulty, proxy: TcpProxy
) -> None:
    # Pooled connections are reset, new ones hang: connect_timeout ends the wait. That is the
    # first step of every operation alike, so one of them stands for all.
    faulty = make_faulty(bound_s=CONNECT_S)
    before = prepare(faulty.api)
    proxy.stall()
    run_faulted("upload", faulty, before)


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_postgres_link_frozen_mid_transaction_is_503_within_the_network_timeout(
    name: str, make_faulty, proxy: TcpProxy
) -> None:
    # Regression: nothing bounded a silent established link; the request hung forever.
    faulty = make_faulty(bound_s=NETWORK_S)
    before = prepare(faulty.api)
    with fault_at(faulty.api.services.engine, proxy.freeze, OPERATIONS[name].midway):
        run_faulted(name, faulty, before)


def test_a_transaction_orphaned_by_a_frozen_link_releases_its_locks(
    make_faulty, proxy: TcpProxy, make_api, pg_url: str
) -> None:
    # Regression: the server kept the orphaned reset's row lock until TCP keepalive noticed
    # (2 h), so the session could not be reset through a working link meanwhile.
    faulty = make_faulty(bound_s=NETWORK_S)
    before = prepare(faulty.api)
    frozen_at = time.monotonic()
    with fault_at(faulty.api.services.engine, proxy.freeze, OPERATIONS["reset"].midway):
        response = faulty.api.post("/session/reset", before.sid)
    assert_problem(response, 503, "database-unavailable")
    # The link stays frozen: only the server's idle-in-transaction timeout can free the row.
    direct = make_api(DATABASE_URL=pg_url, raise_server_exceptions=False)
    while (reset := direct.post("/session/reset", before.sid)).status_code == 503:
        assert time.monotonic() - frozen_at < IDLE_S + MARGIN_S, "the row stayed locked"
        time.sleep(0.2)
    assert reset.status_code == 201, reset.text
    assert_no_half_done_sessions(faulty.direct)


# --- PostgreSQL: a lock held longer than the statement timeout ------------------------------------


@contextmanager
def pg_table_locked(url: str) -> Iterator[None]:
    """Every access to user_sessions waits while this holds its ACCESS EXCLUSIVE lock."""
    engine = get_engine(url, bounded=False)  # the holder must outlast the idle timeout itself
    with engine.connect() as conn:
        conn.execute(sa.text("LOCK TABLE user_sessions IN ACCESS EXCLUSIVE MODE"))
        try:
            yield
        finally:
            conn.rollback()


@pytest.mark.parametrize("name", ["create", "resume", "reset", "upload"])
def test_postgres_locked_is_503_within_the_statement_timeout(
    name: str, make_faulty, pg_url: str
) -> None:
    with ExitStack() as lock:
        faulty = make_faulty(bound_s=STATEMENT_S, repair=lock.close)
        before = prepare(faulty.api)
        lock.enter_context(pg_table_locked(pg_url))
        run_faulted(name, faulty, before)


# --- SQLite: a writer holding the lock longer than the busy timeout -------------------------------


@contextmanager
def sqlite_write_locked(url: str) -> Iterator[None]:
    """A writer of our own holds SQLite's write lock (readers carry on: WAL)."""
    holder = sqlite3.connect(sa.engine.make_url(url).database or "", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.rollback()
        holder.close()


def make_touch_due(engine: Engine, sid: str) -> None:
    """Age the session's last_seen_at: its next resume must write (touch and audit)."""
    with Session(engine) as db:
        row = db.exec(select(UserSession).where(UserSession.uuid == sid)).one()
        row.last_seen_at -= timedelta(minutes=2)
        db.commit()


@pytest.mark.parametrize("name", ["create", "resume", "reset", "upload"])
def test_sqlite_locked_is_503_within_the_busy_timeout(
    name: str, make_api, sqlite_url: str
) -> None:
    api = make_api(DATABASE_URL=sqlite_url, CHAT_APP_ORPHAN_GRACE_MINUTES=0,
                   raise_server_exceptions=False)
    before = prepare(api)
    if name == "resume":
        # A resume within a minute of the last only reads, and reads go on under the lock.
        with sqlite_write_locked(sqlite_url):
            assert api.get("/session", before.sid).status_code == 200
        make_touch_due(api.services.engine, before.sid)  # this one must write
    with ExitStack() as lock:
        lock.enter_context(sqlite_write_locked(sqlite_url))
        run_faulted(name, Faulty(api, api.services.engine, lock.close, BUSY_S), before)


# --- a reply gathering passages -------------------------------------------------------------------


def is_passage_read(sql: str) -> bool:
    """The retriever's own query, after the turn's transaction: the passages of a new index.

    (Which files the index covers is read in the turn's transaction: a fault there rolls the
    whole turn back, a plain 503 with nothing saved, like any other statement of it.)"""
    return sql.startswith("SELECT file_chunks.") and "JOIN session_files" in sql


def test_a_database_lost_while_a_reply_gathers_passages_is_503_not_500(
    make_faulty, proxy: TcpProxy
) -> None:
    # Regression: the retriever read through a Session of its own, outside unit_of_work, so its
    # OperationalError escaped as a 500.
    faulty = make_faulty(bound_s=0)
    before = prepare(faulty.api)
    question = {"content": "What do the notes say?"}
    with fault_at(faulty.api.services.engine, proxy.cut, is_passage_read):
        response = faulty.api.post("/session/messages", before.sid, json=question)
    proxy.restore()
    assert_problem(response, 503, "database-unavailable")
    # The question itself was saved before the link went (SPEC 6 keeps the user's message).
    history = faulty.api.get("/session/messages", before.sid).json()["items"]
    assert [m["role"] for m in history] == ["user"]
    answered = faulty.api.post("/session/messages", before.sid, json=question)
    assert answered.status_code == 200, answered.text
    assert answered.json()["reply"]["citations"][0]["filename"] == "notes.txt"

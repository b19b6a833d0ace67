"""The database lost under the production setup, and a worker killed in the middle of a reset.

Both on the package's cluster (two workers, PostgreSQL through `cluster.db_link`, Redis, S3):
a served app of its own would cost another production build (~45 s), so these share it, and
leave it whole (link restored, killed worker restarted).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, expect

from chat_app.db import CONNECT_TIMEOUT_S, STATEMENT_TIMEOUT_S, get_engine
from chat_app.models import utcnow
from chat_app.state.session import LOAD_LATER, RESET_LATER
from chat_app.storage.s3 import S3Store
from tests.e2e.pages import (
    REPLACED_TOAST,
    UI_TIMEOUT_MS,
    badge,
    open_app,
    stored_id,
    toast,
    wait_for_session,
)
from tests.invariants import assert_no_half_done_sessions, assert_storage_invariants
from tests.scaleout.cluster import ADMIN_TOKEN, Cluster, kill
from tests.seaweed import REGION, SeaweedServer

pytestmark = pytest.mark.e2e

DATABASE_DOWN = "The database is unavailable"
#: How long a blocked reset may take to show up as waiting on its lock: less than the statement
#: timeout, which would cancel its wait before the worker is killed.
LOCK_WAIT_S = STATEMENT_TIMEOUT_S - 1


@contextmanager
def database_cut(cluster: Cluster) -> Iterator[None]:
    """Both workers lose PostgreSQL (connections refused) until the block ends."""
    cluster.db_link.cut()
    try:
        yield
    finally:
        cluster.db_link.restore()


def session_rows(cluster: Cluster, sid: str) -> tuple[str, int, list[str]]:
    """The session's status, how many successors it has, and its audit events."""
    with get_engine(cluster.database_url).connect() as conn:
        row_id, status = conn.execute(
            sa.text("SELECT id, status FROM user_sessions WHERE uuid = :sid"), {"sid": sid}
        ).one()
        successors = conn.execute(
            sa.text("SELECT count(*) FROM user_sessions WHERE predecessor_id = :id"),
            {"id": row_id},
        ).scalar_one()
        events = conn.execute(
            sa.text("SELECT event FROM audit_log WHERE session_id = :id ORDER BY id"),
            {"id": row_id},
        ).scalars().all()
    return status, successors, list(events)


def test_database_down_on_page_load_and_on_reset_says_so_and_a_reload_recovers(
    browser: Browser, cluster: Cluster
) -> None:
    page = browser.new_page()
    sid = open_app(page, cluster.url)

    with database_cut(cluster):
        page.reload()
        expect(toast(page, DATABASE_DOWN)).to_be_visible(timeout=UI_TIMEOUT_MS)
        expect(toast(page, LOAD_LATER)).to_be_visible()
        assert stored_id(page) == sid  # the browser keeps its id for later
    page.reload()
    assert wait_for_session(page) == sid  # resumed, not replaced
    expect(toast(page, REPLACED_TOAST)).to_have_count(0)

    page.get_by_role("button", name="New session").click()
    dialog = page.get_by_role("alertdialog", name="Start a new session?")
    expect(dialog).to_be_visible()
    with database_cut(cluster):
        dialog.get_by_role("button", name="Erase and start new").click()
        expect(toast(page, DATABASE_DOWN)).to_be_visible(timeout=UI_TIMEOUT_MS)
        expect(toast(page, RESET_LATER)).to_be_visible()
        # Regression: the failed reset re-ran the page-load flow, which failed again (a second
        # toast) and showed no session; now the page keeps its session, with one toast.
        expect(badge(page)).to_contain_text(sid[:8])
        expect(toast(page, DATABASE_DOWN)).to_have_count(1)
    assert session_rows(cluster, sid)[:2] == ("active", 0)  # nothing half-done

    page.reload()
    assert wait_for_session(page) == sid
    page.get_by_role("button", name="New session").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Erase and start new").click()
    assert wait_for_session(page, not_equal=sid) != sid
    expect(toast(page, "New session started")).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.close()


def test_a_page_load_waiting_on_a_silent_database_holds_up_no_one_else(
    browser: Browser, cluster: Cluster
) -> None:
    page = browser.new_page()
    sid = open_app(page, cluster.url)
    link = cluster.db_link
    held = link.held
    link.stall()  # connections accepted, never answered: only connect_timeout would end them
    try:
        page.reload()
        # Hydration shows the messages and files the last page load read with the session
        # (`SessionState._page`), then the page-load flow validates the id: waiting now.
        deadline = time.monotonic() + 3 * CONNECT_TIMEOUT_S
        while link.held < held + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert link.held >= held + 1, "the page load never reached the database"
        # Regression: these ran on the event loop, so the worker answered nothing else (other
        # tabs, the API, even /ping) for two connect timeouts per page load.
        worker = cluster.worker_url(cluster.balancer.websockets[-1])
        started = time.monotonic()
        assert httpx.get(f"{worker}/ping", timeout=10).status_code == 200
        assert time.monotonic() - started < 1
    finally:
        link.restore()  # the waiting connections are reset: the page load fails at once
    page.reload()
    assert wait_for_session(page) == sid
    page.close()


def wait_for_lock_waiter(conn: psycopg.Connection, statement: str) -> int:
    """The pid of the backend waiting for a lock on `statement`; fails after LOCK_WAIT_S."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while time.monotonic() < deadline:
        pid = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            (statement + "%",),
        ).fetchone()
        if pid is not None:
            return pid[0]
        time.sleep(0.05)
    raise AssertionError(f"no backend came to wait on {statement!r}")


def wait_until_gone(conn: psycopg.Connection, pid: int, timeout_s: float = 10) -> None:
    """Until the server has ended backend `pid` (and rolled back its transaction)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() is None:
            return
        time.sleep(0.05)
    raise AssertionError(f"backend {pid} outlived its killed client")


def test_a_worker_killed_mid_reset_leaves_the_session_whole(
    cluster: Cluster, seaweed: SeaweedServer, bucket: str
) -> None:
    victim_port, other_port = list(cluster.workers)
    victim, other = (cluster.worker_url(port) + "/api/v1" for port in (victim_port, other_port))
    sid = httpx.post(f"{victim}/session").json()["session_id"]
    headers = {"X-Session-Id": sid}
    uploaded = httpx.post(f"{victim}/session/files", headers=headers,
                          files={"file": ("notes.txt", b"kept notes\n", "text/plain")})
    assert uploaded.status_code == 201, uploaded.text

    dsn = sa.engine.make_url(cluster.database_url).set(drivername="postgresql")
    restarting = Restart(cluster, victim_port)
    try:
        with psycopg.connect(dsn.render_as_string(hide_password=False), autocommit=True
                             ) as watch, \
                psycopg.connect(dsn.render_as_string(hide_password=False)) as holder:
            # The file's row locked from here: the reset blocks inside its transaction, after it
            # ended the old session and inserted the successor, when it marks the files
            # `deleting`.
            holder.execute("SELECT 1 FROM session_files f JOIN user_sessions s"
                           " ON s.id = f.session_id WHERE s.uuid = %s FOR UPDATE OF f", (sid,))
            outcome: list[object] = []

            def reset_on_victim() -> None:
                try:
                    outcome.append(httpx.post(f"{victim}/session/reset", headers=headers,
                                              timeout=30))
                except httpx.HTTPError as error:  # the worker dies under it
                    outcome.append(error)

            resetting = threading.Thread(target=reset_on_victim)
            resetting.start()
            backend = wait_for_lock_waiter(watch, "UPDATE session_files SET status")
            kill(cluster.workers[victim_port])
            holder.rollback()  # the lock goes: the orphaned reset runs on, meets a dead client
            resetting.join(timeout=30)
            wait_until_gone(watch, backend)
        restarting.start()  # in the background, while the checks below run
        assert len(outcome) == 1 and isinstance(outcome[0], httpx.HTTPError), outcome
        # Never half: the old session is still active, with no successor and no reset row.
        status, successors, events = session_rows(cluster, sid)
        assert (status, successors) == ("active", 0)
        assert "session.reset" not in events
        assert_no_half_done_sessions(get_engine(cluster.database_url))

        resets = [httpx.post(f"{other}/session/reset", headers=headers) for _ in range(2)]
        assert [r.status_code for r in resets] == [201, 404]  # exactly once; then the id is gone
        status, successors, events = session_rows(cluster, sid)
        assert (status, successors) == ("reset", 1)
        assert events.count("session.reset") == 1

        started = utcnow()
        swept = httpx.post(f"{other}/admin/sweep", timeout=60,
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert swept.status_code == 200, swept.text
        assert swept.json()["errors"] == 0
        store = S3Store(bucket, endpoint_url=seaweed.endpoint_url, region=REGION,
                        client=seaweed.client())
        assert_no_half_done_sessions(get_engine(cluster.database_url))
        assert_storage_invariants(get_engine(cluster.database_url), store, older_than=started)
    finally:
        restarting.finish()  # later tests expect both workers


class Restart:
    """Bring a killed worker back in a background thread; `finish` waits (and starts it if the
    test failed before it did)."""

    def __init__(self, cluster: Cluster, port: int) -> None:
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(cluster, port))

    def _run(self, cluster: Cluster, port: int) -> None:
        try:
            cluster.restart(port)
        except BaseException as error:
            self._error.append(error)

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        if self._thread.ident is None:
            self._thread.start()
        self._thread.join()
        if self._error:
            raise self._error[0]

"""The run-wide leak scan (tests/leaks.py) sees the run and catches a leak when there is one."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from pathlib import Path

from chat_app.services.audit import RequestContext
from tests.leaks import WATCH, LeakWatch


def test_the_watch_sees_issued_ids_audit_rows_and_log_records(services) -> None:
    rows_before, lines_before = len(WATCH.audit_rows), len(WATCH.log_lines)
    view = services.sessions.create(RequestContext(actor="api"), reason="api")
    logging.getLogger("chat_app.test").warning("created a session for the leak watch")
    assert view.uuid in WATCH.issued
    assert len(WATCH.audit_rows) > rows_before  # session.created
    assert WATCH.log_lines[lines_before:] == ["created a session for the leak watch"]
    assert WATCH.leaks() == []


def test_a_raw_id_in_a_log_line_or_audit_row_is_reported() -> None:
    watch = LeakWatch()
    session_id = str(uuid.uuid4())
    watch.issued.add(session_id)
    watch.log_lines.append(f"deleted sessions/{session_id.upper()}/x")
    watch.audit_rows.append('{"details": {"other": "' + str(uuid.uuid4()) + '"}}')
    leaks = watch.leaks()
    assert len(leaks) == 1 and leaks[0].startswith("log line holds 1 raw session id")


def test_a_served_apps_database_and_log_are_scanned(tmp_path: Path) -> None:
    session_id = str(uuid.uuid4())
    with sqlite3.connect(tmp_path / "chat_app.db") as conn:
        conn.execute("CREATE TABLE user_sessions (uuid TEXT)")
        conn.execute("CREATE TABLE audit_log (event TEXT, session_ref TEXT, actor TEXT, "
                     "ip_hash TEXT, request_id TEXT, details TEXT)")
        conn.execute("INSERT INTO user_sessions VALUES (?)", (session_id,))
        conn.execute("INSERT INTO audit_log VALUES ('session.created', 'ref', 'browser', "
                     "NULL, NULL, ?)", (f'{{"leaked": "{session_id}"}}',))
    log = tmp_path / "server.log"
    log.write_text(f"ok line\nERROR state: sid={session_id}\n")
    watch = LeakWatch()
    watch.scan_served_app(tmp_path, log)
    assert watch.served_apps_scanned == 1
    assert len(watch.findings) == 2
    assert "audit row" in watch.findings[0] and "log line" in watch.findings[1]
